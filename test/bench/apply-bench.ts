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
import { round, timeOnce } from './stats.js';
import { busyMsBetween, cpuTimes } from './machine.js';


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
   * A no-op plan (every host refreshed over SSH) and without the refresh, beside `parallel-ssh true` on the same
   * hosts in the same run; ratios are ci / parallel-ssh, medians of NOOP_RUNS runs each. In this process (the
   * engine's own cost, modules loaded and compiled) and as a user runs it: `ci plan` and `ci apply --auto-approve`
   * as new processes, Node's start and module loading included.
   */
  noopPlan: {
    refreshedMs: number;
    unrefreshedMs: number;
    cliPlanMs: number;
    cliApplyMs: number;
    parallelSshTrueMs?: number;
    ratioRefreshed?: number;
    ratioUnrefreshed?: number;
    ratioApply?: number;
    ratioCliPlan?: number;
    ratioCliApply?: number;
    /**
     * Where the CPU of one refreshed plan went: the whole machine's busy CPU time (every core; the hosts' sshd and
     * programs run here too), this process's share, and the rest per host. Beside it, the same for parallel-ssh.
     */
    cpu: { machineMs: number; ciMs: number; restPerHostMs: number; parallelSshMachineMs?: number };
  };
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
    const refreshed = await medianOf(() => planCluster({ clusterfile, home: c.home, env: c.env }));
    const unrefreshed = await medianOf(() => planCluster({ clusterfile, home: c.home, env: c.env, refresh: 'off' }));
    const cli = (args: string[]) => medianOf(() => run(process.execPath, [CI_BIN, ...args, '-f', clusterfile], { env: c.env }));
    const cliPlan = await cli(['plan']);
    const cliApply = await cli(['apply', '--auto-approve']);
    const pssh = await parallelSshTrue(labDirFor(c.home, name));
    const ratio = (ms: number) => (pssh ? Math.round((ms / pssh.ms) * 1000) / 1000 : undefined);
    const noopPlan: ApplyCase['noopPlan'] = {
      refreshedMs: refreshed.ms,
      unrefreshedMs: unrefreshed.ms,
      cliPlanMs: cliPlan.ms,
      cliApplyMs: cliApply.ms,
      ...(pssh
        ? {
            parallelSshTrueMs: pssh.ms,
            ratioRefreshed: ratio(refreshed.ms),
            ratioUnrefreshed: ratio(unrefreshed.ms),
            ratioApply: ratio(noop.ms),
            ratioCliPlan: ratio(cliPlan.ms),
            ratioCliApply: ratio(cliApply.ms),
          }
        : {}),
      cpu: {
        machineMs: refreshed.machineMs,
        ciMs: refreshed.ownMs,
        restPerHostMs: round((refreshed.machineMs - refreshed.ownMs) / n),
        ...(pssh ? { parallelSshMachineMs: pssh.machineMs } : {}),
      },
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

const NOOP_RUNS = 3;

/**
 * The median wall time of NOOP_RUNS runs, with the machine's busy CPU time and this process's own CPU time during
 * the median run (the hosts' sshd and the programs they run are the rest: they run on this machine too).
 */
async function medianOf(fn: () => Promise<unknown>): Promise<{ ms: number; machineMs: number; ownMs: number }> {
  const runs: { ms: number; machineMs: number; ownMs: number }[] = [];
  for (let i = 0; i < NOOP_RUNS; i++) {
    const c0 = cpuTimes();
    const u0 = process.cpuUsage();
    const t = await timeOnce(fn);
    const u = process.cpuUsage(u0);
    runs.push({ ms: t.ms, machineMs: busyMsBetween(c0, cpuTimes()), ownMs: round((u.user + u.system) / 1000, 0) });
  }
  return runs.sort((a, b) => a.ms - b.ms)[Math.floor(runs.length / 2)];
}

/** `parallel-ssh true` (pssh) on the lab's hosts with the lab's key, one connection per host at once; undefined without pssh. */
async function parallelSshTrue(labDir: string): Promise<{ ms: number; machineMs: number } | undefined> {
  const lab = await LocalLab.open(labDir);
  const args = ['-p', '64', '-t', '60', '-l', 'root', '-x', `-i ${lab.privateKeyPath} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`];
  for (const h of lab.hosts()) args.push('-H', h.ip);
  args.push('true');
  try {
    return await medianOf(() => run('parallel-ssh', args, {}));
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
