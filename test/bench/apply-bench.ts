/**
 * `ci apply` wall time on light local hosts: first apply, no-op re-apply, one-layer upgrade, and destroy, for
 * several cluster sizes. Every cluster is destroyed afterwards, also when a step fails or the run is interrupted.
 */
import { existsSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyCluster, destroyCluster, planCluster, type ConvergeResult } from '../../engine/executor/converge.js';
import type { Reporter } from '../../engine/executor/events.js';
import { labDirFor } from '../../providers/local/provider.js';
import { LocalLab } from '../../providers/local/lab.js';
import { CI_BIN, localClusterfile, run, writeImageContext } from './fixture.js';
import { timeOnce } from './stats.js';


export interface ApplyStep {
  ms: number;
  actions: number;
  bytesSent: number;
}

export interface ApplyCase {
  hosts: number;
  create: ApplyStep;
  noop: { ms: number; actions: number };
  /**
   * A no-op plan as users run it (every host refreshed over SSH) and without the refresh, beside `parallel-ssh true`
   * on the same hosts in the same run; ratios are ci / parallel-ssh.
   */
  noopPlan: { refreshedMs: number; unrefreshedMs: number; parallelSshTrueMs?: number; ratioRefreshed?: number; ratioUnrefreshed?: number; ratioApply?: number };
  upgradeOneLayer: ApplyStep;
  destroy: { ms: number; actions: number };
}

export interface ApplyFigures {
  image: { bigLayerBytes: number; layers: number; buildMs: number };
  cases: ApplyCase[];
  /** Set when a size failed; the run stops there (its cluster is destroyed). */
  error?: { hosts: number; message: string };
}

/** Keeps the last lines of hook output so a failing step can say why. */
function quietReporter(tail: string[]): Reporter {
  return {
    event(e) {
      if (e.type === 'output') {
        tail.push(`[${e.host}] ${e.line}`);
        if (tail.length > 20) tail.shift();
      }
    },
  };
}

function check(what: string, r: ConvergeResult | undefined, tail: string[]): ConvergeResult {
  if (!r) throw new Error(`${what}: no state to act on`);
  const res = r.result;
  if (res && (res.failed.length > 0 || res.interrupted)) {
    const errs = res.failed.map((f) => `${f.action.id}: ${f.error.message}`).join('; ');
    throw new Error(`${what} failed: ${res.interrupted ? 'interrupted; ' : ''}${errs}\n${tail.join('\n')}`);
  }
  return r;
}

const sentBytes = (r: ConvergeResult) => [...(r.result?.bytesSent.values() ?? [])].reduce((a, b) => a + b, 0);

export async function benchApply(opts: { hostCounts: number[]; bigLayerBytes: number; log: (line: string) => void; signal: AbortSignal }): Promise<ApplyFigures> {
  const work = await fs.mkdtemp(join(tmpdir(), 'ci-bench-'));
  const home = join(work, 'home');
  const env = { ...process.env, CI_HOME: home };
  try {
    const ctx = join(work, 'context');
    await writeImageContext(ctx, opts.bigLayerBytes);
    opts.log('building the bench images');
    const build = await timeOnce(() => run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'bench-app:v1', ctx], { env }));
    await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'bench-app:v2', '--build-arg', 'CONFIG=v2', ctx], { env });

    const image = { bigLayerBytes: opts.bigLayerBytes, layers: 3, buildMs: build.ms };
    const cases: ApplyCase[] = [];
    for (const n of opts.hostCounts) {
      if (opts.signal.aborted) break;
      try {
        cases.push(await benchCluster(n, { work, home, env, log: opts.log, signal: opts.signal }));
      } catch (err) {
        // Figures of the sizes already measured stay useful; the failing size says what went wrong.
        return { image, cases, error: { hosts: n, message: (err as Error).message } };
      }
    }
    return { image, cases };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

interface CaseContext {
  work: string;
  home: string;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  signal: AbortSignal;
}

async function benchCluster(n: number, c: CaseContext): Promise<ApplyCase> {
  const name = `bench-n${n}`;
  const clusterfile = join(c.work, `${name}.yaml`);
  const tail: string[] = [];
  const base = {
    clusterfile,
    home: c.home,
    env: c.env,
    confirm: async () => true,
    reporter: () => quietReporter(tail),
    signal: c.signal,
  };
  let destroyed: ApplyCase['destroy'] | undefined;
  try {
    await fs.writeFile(clusterfile, localClusterfile(name, 'bench-app:v1', n));
    c.log(`${name}: apply`);
    const create = await timeOnce(() => applyCluster(base));
    check('first apply', create.result, tail);
    c.log(`${name}: no-op apply`);
    const noop = await timeOnce(() => applyCluster(base));
    check('no-op apply', noop.result, tail);
    c.log(`${name}: no-op plans and parallel-ssh true`);
    const refreshed = await timeOnce(() => planCluster({ clusterfile, home: c.home, env: c.env }));
    const unrefreshed = await timeOnce(() => planCluster({ clusterfile, home: c.home, env: c.env, refresh: 'off' }));
    const pssh = await parallelSshTrue(labDirFor(c.home, name));
    const ratio = (ms: number) => (pssh ? Math.round((ms / pssh) * 1000) / 1000 : undefined);
    const noopPlan = {
      refreshedMs: refreshed.ms,
      unrefreshedMs: unrefreshed.ms,
      ...(pssh ? { parallelSshTrueMs: pssh, ratioRefreshed: ratio(refreshed.ms), ratioUnrefreshed: ratio(unrefreshed.ms), ratioApply: ratio(noop.ms) } : {}),
    };
    await fs.writeFile(clusterfile, localClusterfile(name, 'bench-app:v2', n));
    c.log(`${name}: upgrade`);
    const upgrade = await timeOnce(() => applyCluster(base));
    check('upgrade', upgrade.result, tail);
    c.log(`${name}: destroy`);
    const destroy = await timeOnce(() => destroyCluster(base));
    check('destroy', destroy.result, tail);
    destroyed = { ms: destroy.ms, actions: destroy.result?.plan.actions.length ?? 0 };
    return {
      hosts: n,
      create: { ms: create.ms, actions: create.result.plan.actions.length, bytesSent: sentBytes(create.result) },
      noop: { ms: noop.ms, actions: noop.result.plan.actions.length },
      noopPlan,
      upgradeOneLayer: { ms: upgrade.ms, actions: upgrade.result.plan.actions.length, bytesSent: sentBytes(upgrade.result) },
      destroy: destroyed,
    };
  } finally {
    if (!destroyed) await forceDestroy(name, base, c);
  }
}

/** `parallel-ssh true` (pssh) on the lab's hosts with the lab's key, one connection per host at once; undefined without pssh. */
async function parallelSshTrue(labDir: string): Promise<number | undefined> {
  const lab = await LocalLab.open(labDir);
  const args = ['-p', '64', '-t', '60', '-l', 'root', '-x', `-i ${lab.privateKeyPath} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`];
  for (const h of lab.hosts()) args.push('-H', h.ip);
  args.push('true');
  try {
    return (await timeOnce(() => run('parallel-ssh', args, {}))).ms;
  } catch {
    return undefined;
  }
}

/** After a failure: `ci destroy` first; whatever it could not remove goes with the lab itself. */
async function forceDestroy(name: string, base: Parameters<typeof destroyCluster>[0], c: CaseContext): Promise<void> {
  c.log(`${name}: cleaning up after a failure`);
  try {
    await destroyCluster({ ...base, signal: undefined });
  } catch (err) {
    c.log(`${name}: destroy failed (${(err as Error).message}); removing the lab`);
  }
  const dir = labDirFor(c.home, name);
  if (existsSync(join(dir, 'lab.json'))) await (await LocalLab.open(dir)).destroy();
}
