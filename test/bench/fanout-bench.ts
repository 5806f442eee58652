/**
 * Fan-out with every link shaped: each host's link both ways (tbf inside its namespace for its uplink, tbf on the
 * bridge side of its veth for its downlink), the operator's uplink (tbf on the lab bridge) and its downlink (the
 * bridge's ingress redirected to an ifb device with tbf). Hosts are shaped the moment the lab records them, before
 * any layer byte flows (checked: `unshapedAtTransfer` counts hosts whose transfer began before their shaping).
 * For each host count, one fresh `ci apply` (layer relay on), then parallel scp of the same big layer from this
 * machine to the same hosts, in the same run. Figures: time against S/B (S the layer bytes each host needs, B the
 * link rate), and copies of S that left the operator. Printed, never asserted.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { applyCluster, destroyCluster } from '../../engine/executor/converge.js';
import type { Reporter } from '../../engine/executor/events.js';
import { labDirFor } from '../../providers/local/provider.js';
import { LocalLab } from '../../providers/local/lab.js';
import { bridgeName } from '../../providers/local/names.js';
import { linkExists, netnsExists, shapeLink } from '../../providers/local/network.js';
import { CI_BIN, localClusterfile, run, writeImageContext } from './fixture.js';
import { busyBetween, cpuTimes } from './machine.js';

export interface FanoutCase {
  hosts: number;
  /** Whole apply: hosts made, layers distributed, hooks run. */
  applyMs: number;
  /** First layer transfer started to last one done. */
  distributeMs: number;
  /** Apply start to the first transfer (plan, hosts made), and last transfer to the end (unpack, hooks). */
  beforeMs: number;
  afterMs: number;
  /** S/B: the layer bytes each host needs over one link's rate. */
  limitMs: number;
  applyOverLimit: number;
  distributeOverLimit: number;
  operatorCopies: number;
  uplinkBytes: number;
  receivedBytes: number;
  unshapedAtTransfer: number;
  /** Share of this machine's CPU time busy while layers moved (every host runs on it). */
  cpuBusy: number;
  /** Transfers that failed and were fetched again from another source (their first lines). */
  relayRetries: string[];
  /** When each host's layers were all in place, from the first transfer's start (sorted). */
  hostDoneMs: number[];
  /** Each host's start and end of its layer transfer, from the first transfer's start, in the order they started. */
  hostTransfers: { host: string; startMs: number; doneMs: number }[];
  /** Steps that finished after the last layer arrived, by kind (hooks by name): how many, and the longest. */
  stepsAfter: Record<string, { count: number; maxMs: number }>;
  parallelScp?: { ms: number; overLimit: number; operatorCopies: number };
}

export interface FanoutFigures {
  linkMbit: number;
  bigLayerBytes: number;
  shaped: string;
  cases: FanoutCase[];
  rss?: { imageBytes: number; hosts: number; peakRssBytes: number; ms: number } | { skipped: string };
  /**
   * How the time beyond S/B grows with the host count: per case the apply's and the distribution's milliseconds over
   * S/B, and per doubling of the hosts how much that grew (a constant means c*log(N); doubling values mean c*N).
   */
  growth?: { hosts: number[]; applyExtraMs: number[]; distributeExtraMs: number[]; applyExtraPerDoublingMs: number[] };
  error?: string;
}

const round = (n: number, d = 2) => Number(n.toFixed(d));

/** The machine's CPU counters (user..steal) from /proc/stat. */
/** The steps that finished after the last layer arrived, by kind: how many, and the longest (what afterMs is made of). */
function stepsAfter(steps: { kind: string; end: number; ms: number }[], last: number): Record<string, { count: number; maxMs: number }> {
  const out: Record<string, { count: number; maxMs: number }> = {};
  for (const s of steps) {
    if (s.end <= last) continue;
    const k = (out[s.kind] ??= { count: 0, maxMs: 0 });
    k.count++;
    k.maxMs = Math.max(k.maxMs, Math.round(s.ms));
  }
  return out;
}

/** Shapes the operator's side of the lab: the bridge's egress, and its ingress through an ifb device. */
class OperatorShaping {
  private ifb?: string;
  constructor(private readonly bridge: string, private readonly kbit: number) {}

  async apply(): Promise<void> {
    const tbf = ['tbf', 'rate', `${this.kbit}kbit`, 'burst', `${Math.max(4, Math.ceil(this.kbit / 80))}kb`, 'latency', '400ms'];
    await run('tc', ['qdisc', 'replace', 'dev', this.bridge, 'root', ...tbf]);
    const ifb = `cifb${process.pid % 100000}`;
    await run('ip', ['link', 'add', ifb, 'type', 'ifb']);
    this.ifb = ifb;
    await run('ip', ['link', 'set', ifb, 'up']);
    await run('tc', ['qdisc', 'replace', 'dev', ifb, 'root', ...tbf]);
    await run('tc', ['qdisc', 'replace', 'dev', this.bridge, 'handle', 'ffff:', 'ingress']);
    await run('tc', ['filter', 'add', 'dev', this.bridge, 'parent', 'ffff:', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', ifb]);
  }

  async remove(): Promise<void> {
    if (linkExists(this.bridge)) {
      await run('tc', ['qdisc', 'del', 'dev', this.bridge, 'root']).catch(() => undefined);
      await run('tc', ['qdisc', 'del', 'dev', this.bridge, 'ingress']).catch(() => undefined);
    }
    if (this.ifb) await run('ip', ['link', 'del', this.ifb]).catch(() => undefined);
    this.ifb = undefined;
  }
}

/** Shapes each host of a lab as soon as lab.json records it (its namespace and veth exist). */
function shapeHostsAsTheyCome(labDir: string, kbit: number): { shaped: Set<string>; stop(): Promise<void> } {
  const shaped = new Set<string>();
  let busy: Promise<void> = Promise.resolve();
  let stopped = false;
  const look = async () => {
    let lab: { hosts: Record<string, { netns: string; veth: string }> };
    try {
      lab = JSON.parse(await fs.readFile(join(labDir, 'lab.json'), 'utf8'));
    } catch {
      return;
    }
    for (const [name, h] of Object.entries(lab.hosts)) {
      if (shaped.has(name) || !netnsExists(h.netns) || !linkExists(h.veth)) continue;
      try {
        await shapeLink(h.netns, h.veth, kbit);
        shaped.add(name);
      } catch {
        // The host's link is being made or removed; the next look tries again.
      }
    }
  };
  const timer = setInterval(() => {
    if (!stopped) busy = busy.then(look);
  }, 20);
  return {
    shaped,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await busy;
    },
  };
}

/** Copies `file` to every host at once with scp (the lab's key), timed; the copies are removed after. */
async function parallelScp(lab: LocalLab, hosts: string[], file: string): Promise<number> {
  const known = join(lab.dir, 'bench-known-hosts');
  const t0 = performance.now();
  await Promise.all(
    hosts.map(async (h) => {
      const ip = lab.host(h)!.ip;
      await run('scp', ['-q', '-i', lab.privateKeyPath, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${known}`, '-o', 'StrictHostKeyChecking=accept-new', file, `root@${ip}:/tmp/bench-scp.bin`], { maxBuffer: 1 << 20 });
    }),
  );
  const ms = performance.now() - t0;
  await Promise.all(
    hosts.map((h) =>
      run('ssh', ['-i', lab.privateKeyPath, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${known}`, `root@${lab.host(h)!.ip}`, 'rm -f /tmp/bench-scp.bin']).catch(() => undefined),
    ),
  );
  await fs.rm(known, { force: true });
  return ms;
}

/** Peak RSS of a `ci apply` child process (VmHWM read from /proc until it exits). */
async function applyRss(args: string[], env: NodeJS.ProcessEnv): Promise<{ peak: number; ms: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [CI_BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  let peak = 0;
  const sample = async () => {
    const s = await fs.readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
    const m = /VmHWM:\s+(\d+) kB/.exec(s);
    if (m) peak = Math.max(peak, Number(m[1]) * 1024);
  };
  const timer = setInterval(() => void sample(), 100);
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  clearInterval(timer);
  if (code !== 0) throw new Error(`ci ${args.join(' ')} exited with ${code}: ${stderr}`);
  return { peak, ms: performance.now() - t0 };
}

function growthOf(cases: FanoutCase[]): FanoutFigures['growth'] {
  const sorted = [...cases].sort((a, b) => a.hosts - b.hosts);
  const applyExtraMs = sorted.map((c) => Math.round(c.applyMs - c.limitMs));
  const perDoubling: number[] = [];
  for (let i = 1; i < sorted.length; i++) {
    const doublings = Math.log2(sorted[i].hosts / sorted[i - 1].hosts);
    perDoubling.push(Math.round((applyExtraMs[i] - applyExtraMs[i - 1]) / doublings));
  }
  return {
    hosts: sorted.map((c) => c.hosts),
    applyExtraMs,
    distributeExtraMs: sorted.map((c) => Math.round(c.distributeMs - c.limitMs)),
    applyExtraPerDoublingMs: perDoubling,
  };
}

export async function benchFanout(opts: {
  hostCounts: number[];
  linkMbit: number;
  bigLayerBytes: number;
  scp: boolean;
  rssImageBytes?: number;
  log: (l: string) => void;
}): Promise<FanoutFigures> {
  const work = await fs.mkdtemp(join(tmpdir(), 'ci-fanout-'));
  const home = join(work, 'home');
  const env = { ...process.env, CI_HOME: home };
  const kbit = opts.linkMbit * 1000;
  const bytesPerMs = (opts.linkMbit * 1e6) / 8 / 1000;
  const figures: FanoutFigures = {
    linkMbit: opts.linkMbit,
    bigLayerBytes: opts.bigLayerBytes,
    shaped: 'every host link both ways, the operator uplink and downlink (tbf; ifb for ingress)',
    cases: [],
  };
  try {
    const ctx = join(work, 'context');
    await writeImageContext(ctx, opts.bigLayerBytes);
    await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'fanout:v1', ctx], { env });
    for (const hosts of opts.hostCounts) {
      const name = `fanout-${hosts}`;
      const clusterfile = join(work, `${name}.yaml`);
      await fs.writeFile(clusterfile, localClusterfile(name, 'fanout:v1', hosts));
      const labDir = labDirFor(home, name);
      const lab = await LocalLab.open(labDir);
      const operator = new OperatorShaping(bridgeName(lab.id), kbit);
      const watcher = shapeHostsAsTheyCome(labDir, kbit);
      let first = Infinity;
      let last = 0;
      let unshaped = 0;
      let cpuAtFirst: number[] | undefined;
      let cpuAtLast: number[] = [];
      const started = new Map<string, number>();
      const transfers: { host: string; start: number; done: number }[] = [];
      const steps: { kind: string; end: number; ms: number }[] = [];
      const retries: string[] = [];
      const reporter = (): Reporter => ({
        event(e) {
          if (e.type === 'output' && e.line.startsWith('layer relay from')) retries.push(`${e.host}: ${e.line}`.slice(0, 240));
          if (e.type === 'action-start' && e.action.kind === 'send-layers') {
            if (first === Infinity) cpuAtFirst = cpuTimes();
            first = Math.min(first, performance.now());
            started.set(e.action.host, performance.now());
            if (!watcher.shaped.has(e.action.host.replace(`${name}-`, '')) && !watcher.shaped.has(e.action.host)) unshaped++;
          }
          if (e.type === 'action-done') steps.push({ kind: e.action.kind === 'hook' ? `hook ${e.action.hook}` : e.action.kind, end: performance.now(), ms: e.ms });
          if (e.type === 'action-done' && e.action.kind === 'send-layers') {
            last = Math.max(last, performance.now());
            cpuAtLast = cpuTimes();
            transfers.push({ host: e.action.host, start: started.get(e.action.host) ?? NaN, done: performance.now() });
          }
        },
      });
      // The defaults a user gets: relayed sends are not held to --parallelism (10), so 16 hosts receive in one chain.
      const base = { clusterfile, home, env, confirm: async () => true, reporter };
      try {
        await operator.apply();
        opts.log(`${name}: fresh apply to ${hosts} hosts, every link ${opts.linkMbit} Mbit/s both ways`);
        const t0 = performance.now();
        const r = (await applyCluster(base)).result!;
        const applyMs = performance.now() - t0;
        if (r.failed.length) throw new Error(`${name}: ${r.failed.map((f) => f.error.message).join('; ')}`);
        const perHost = Math.max(...r.bytesSent.values());
        const limitMs = perHost / bytesPerMs;
        const c: FanoutCase = {
          hosts,
          applyMs: round(applyMs, 0),
          distributeMs: round(last - first, 0),
          beforeMs: round(first - t0, 0),
          afterMs: round(t0 + applyMs - last, 0),
          limitMs: round(limitMs, 0),
          applyOverLimit: round(applyMs / limitMs),
          distributeOverLimit: round((last - first) / limitMs),
          operatorCopies: round(r.uplinkBytes / perHost),
          uplinkBytes: r.uplinkBytes,
          receivedBytes: [...r.bytesSent.values()].reduce((a, b) => a + b, 0),
          unshapedAtTransfer: unshaped,
          relayRetries: retries,
          cpuBusy: cpuAtFirst ? busyBetween(cpuAtFirst, cpuAtLast) : 0,
          hostDoneMs: transfers.map((t) => round(t.done - first, 0)).sort((a, b) => a - b),
          hostTransfers: transfers
            .sort((a, b) => a.start - b.start)
            .map((t) => ({ host: t.host, startMs: round(t.start - first, 0), doneMs: round(t.done - first, 0) })),
          stepsAfter: stepsAfter(steps, last),
        };
        if (opts.scp) {
          const lab2 = await LocalLab.open(labDir);
          const hostNames = lab2.hosts().map((h) => h.name);
          opts.log(`${name}: parallel scp of the big layer to the same ${hostNames.length} hosts`);
          const blob = join(ctx, 'big', 'blob.bin');
          const ms = await parallelScp(lab2, hostNames, blob);
          const scpLimit = opts.bigLayerBytes / bytesPerMs;
          c.parallelScp = { ms: round(ms, 0), overLimit: round(ms / scpLimit), operatorCopies: hostNames.length };
        }
        figures.cases.push(c);
        opts.log(`${name}: ${JSON.stringify(c)}`);
      } finally {
        await watcher.stop();
        await destroyCluster(base).catch(() => undefined);
        await operator.remove();
        await (await LocalLab.open(labDir)).destroy().catch(() => undefined);
      }
    }
    if (opts.rssImageBytes) {
      const hosts = 4;
      const name = 'fanout-rss';
      const rctx = join(work, 'context-rss');
      await writeImageContext(rctx, opts.rssImageBytes);
      await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'fanout-rss:v1', rctx], { env, maxBuffer: 1 << 20 });
      await fs.rm(rctx, { recursive: true, force: true });
      const clusterfile = join(work, `${name}.yaml`);
      await fs.writeFile(clusterfile, localClusterfile(name, 'fanout-rss:v1', hosts));
      try {
        opts.log(`${name}: apply of a ${Math.round(opts.rssImageBytes / 1e6)} MB image to ${hosts} hosts (links not shaped), peak RSS`);
        const { peak, ms } = await applyRss(['apply', '-f', clusterfile, '--auto-approve'], env);
        figures.rss = { imageBytes: opts.rssImageBytes, hosts, peakRssBytes: peak, ms: round(ms, 0) };
      } finally {
        await run(process.execPath, [CI_BIN, 'destroy', '-f', clusterfile, '--auto-approve'], { env }).catch(() => undefined);
        await (await LocalLab.open(labDirFor(home, name))).destroy().catch(() => undefined);
      }
    } else figures.rss = { skipped: 'no --fanout-rss-mb' };
    figures.growth = growthOf(figures.cases);
    return figures;
  } catch (err) {
    figures.error = (err as Error).message;
    return figures;
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
