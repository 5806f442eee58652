/**
 * An upgrade that changes one layer (`--upgrade-layer-mb`, 10 MB by default) on N light local hosts: the new rootfs
 * is staged on every host before the roll, so the roll only swaps and runs hooks. Prints the transfer time (the
 * send-layers steps, first start to last end), one host's upgrade hook time (median), the staging time, the
 * total, the ratio total / (transfer + hook) and the bytes each host received. Never asserted.
 */
import { existsSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyCluster, destroyCluster, type ConvergeResult } from '../../engine/executor/converge.js';
import type { ExecEvent, Reporter } from '../../engine/executor/events.js';
import { labDirFor } from '../../providers/local/provider.js';
import { LocalLab } from '../../providers/local/lab.js';
import { CI_BIN, localClusterfile, run, writeImageContext } from './fixture.js';
import { summarize } from './stats.js';

export interface UpgradeFigures {
  hosts: number;
  changedLayerBytes: number;
  baseLayerBytes: number;
  transferMs: number;
  hookMs: number;
  prepareMs: number;
  totalMs: number;
  /** totalMs / (transferMs + hookMs); the target is <= 2. */
  ratio: number;
  bytesPerHost: number;
  /** How each host's rootfs was made (`incrementally`, `in full`). */
  unpacked: Record<string, number>;
  error?: string;
}

interface Span {
  start: number;
  end?: number;
}

function recorder(spans: Map<string, Span & { kind: string; hook?: string }>, unpacked: Record<string, number>, tail: string[]): Reporter {
  return {
    event(e: ExecEvent) {
      if (e.type === 'action-start') spans.set(e.action.id, { start: performance.now(), kind: e.action.kind, ...(e.action.kind === 'hook' ? { hook: e.action.hook } : {}) });
      else if (e.type === 'action-done') {
        const s = spans.get(e.action.id);
        if (s) s.end = performance.now();
      } else if (e.type === 'output') {
        const m = /^cloudimage: rootfs unpacked (.*)$/.exec(e.line);
        if (m) unpacked[m[1]] = (unpacked[m[1]] ?? 0) + 1;
        tail.push(`[${e.host}] ${e.line}`);
        if (tail.length > 20) tail.shift();
      }
    },
  };
}

function failed(what: string, r: ConvergeResult | undefined, tail: string[]): void {
  const res = r?.result;
  if (!r) throw new Error(`${what}: no state to act on`);
  if (res && (res.failed.length > 0 || res.interrupted)) {
    throw new Error(`${what} failed: ${res.failed.map((f) => `${f.action.id}: ${f.error.message}`).join('; ')}\n${tail.join('\n')}`);
  }
}

const wall = (spans: Span[]) => (spans.length ? Math.max(...spans.map((s) => s.end ?? s.start)) - Math.min(...spans.map((s) => s.start)) : 0);

export async function benchUpgrade(opts: { hosts: number; baseLayerBytes: number; changedLayerBytes: number; log: (line: string) => void; signal: AbortSignal }): Promise<UpgradeFigures> {
  const work = await fs.mkdtemp(join(tmpdir(), 'ci-bench-upgrade-'));
  const home = join(work, 'home');
  const env = { ...process.env, CI_HOME: home };
  const name = `bench-up${opts.hosts}`;
  const clusterfile = join(work, `${name}.yaml`);
  const tail: string[] = [];
  const spans = new Map<string, Span & { kind: string; hook?: string }>();
  const unpacked: Record<string, number> = {};
  const base = { clusterfile, home, env, confirm: async () => true, reporter: () => recorder(spans, unpacked, tail), signal: opts.signal };
  const figures: UpgradeFigures = {
    hosts: opts.hosts, changedLayerBytes: opts.changedLayerBytes, baseLayerBytes: opts.baseLayerBytes,
    transferMs: 0, hookMs: 0, prepareMs: 0, totalMs: 0, ratio: 0, bytesPerHost: 0, unpacked,
  };
  let destroyed = false;
  try {
    const ctx = join(work, 'context');
    await writeImageContext(ctx, opts.baseLayerBytes, opts.changedLayerBytes);
    opts.log('upgrade bench: building v1 and v2 (one layer differs)');
    await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'bench-up:v1', ctx], { env });
    await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'bench-up:v2', '--build-arg', 'APP=v2', ctx], { env });
    await fs.writeFile(clusterfile, localClusterfile(name, 'bench-up:v1', opts.hosts));
    opts.log(`upgrade bench: first apply on ${opts.hosts} hosts`);
    failed('first apply', await applyCluster(base), tail);
    await fs.writeFile(clusterfile, localClusterfile(name, 'bench-up:v2', opts.hosts));
    spans.clear();
    for (const k of Object.keys(unpacked)) delete unpacked[k];
    opts.log('upgrade bench: upgrade');
    const t0 = performance.now();
    const up = await applyCluster(base);
    figures.totalMs = Math.round(performance.now() - t0);
    failed('upgrade', up, tail);
    const all = [...spans.values()];
    figures.transferMs = Math.round(wall(all.filter((s) => s.kind === 'send-layers')));
    figures.prepareMs = Math.round(wall(all.filter((s) => s.kind === 'prepare-rootfs')));
    figures.hookMs = Math.round(summarize(all.filter((s) => s.kind === 'hook' && s.hook === 'upgrade' && s.end).map((s) => s.end! - s.start)).medianMs || 0);
    figures.ratio = Number((figures.totalMs / Math.max(1, figures.transferMs + figures.hookMs)).toFixed(2));
    const sent = [...(up!.result?.bytesSent.values() ?? [])];
    figures.bytesPerHost = sent.length ? Math.round(sent.reduce((a, b) => a + b, 0) / opts.hosts) : 0;
    opts.log('upgrade bench: destroy');
    await destroyCluster({ ...base, signal: undefined });
    destroyed = true;
  } catch (err) {
    figures.error = (err as Error).message;
  } finally {
    if (!destroyed) {
      await destroyCluster({ ...base, signal: undefined }).catch(() => undefined);
      const dir = labDirFor(home, name);
      if (existsSync(join(dir, 'lab.json'))) await (await LocalLab.open(dir)).destroy().catch(() => undefined);
    }
    await fs.rm(work, { recursive: true, force: true });
  }
  return figures;
}
