/**
 * End-to-end helpers: a throwaway CI_HOME, the `ci` CLI run against it, Clusterfiles written as YAML, the state
 * file read back, and a record of every kernel object and process a LOCAL cluster's lab owns, so a test can prove
 * that `ci destroy` left nothing behind. Cleanup never throws: it runs in afterAll after a test that may have failed.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { it } from 'vitest';
import { LocalLab } from '../../providers/local/lab.js';
import { CLAIM_DIR } from '../../providers/local/subnet.js';
import { connectSsh } from '../../providers/ssh/session.js';
import type { ClusterState } from '../../state/model.js';
import { runCli, type CliResult } from './cli.js';

export interface E2eHome {
  dir: string;
  env: NodeJS.ProcessEnv;
  /** Runs `ci` with this home; returns whatever it did. */
  ci(args: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string }): Promise<CliResult>;
  /** Runs `ci` and fails with its whole output unless it exits 0. */
  ciOk(args: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string }): Promise<CliResult>;
  statePath(cluster: string): string;
  readState(cluster: string): ClusterState | undefined;
  labDir(cluster: string): string;
  /** Every file under `$CI_HOME/clusters/<cluster>/logs`, concatenated. */
  logs(cluster: string): string;
}

/**
 * Steps of one story, run in order: after one fails the rest are reported as not run rather than failing
 * confusingly on what the failed one should have left.
 */
export function serialSteps(timeoutMs: number): (name: string, fn: () => Promise<void>) => void {
  let broken = false;
  return (name, fn) =>
    it(name, async (ctx) => {
      if (broken) ctx.skip();
      try {
        await fn();
      } catch (err) {
        broken = true;
        throw err;
      }
    }, timeoutMs);
}

export function describeRun(args: string[], r: CliResult): string {
  return `ci ${args.join(' ')} exited ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

/** A throwaway CI_HOME, in the temp directory unless `parent` says where. */
export function makeHome(prefix = 'ci-e2e-', parent = tmpdir()): E2eHome {
  const dir = mkdtempSync(join(parent, prefix));
  const env = { CI_HOME: dir };
  const home: E2eHome = {
    dir,
    env,
    ci: (args, opts = {}) => runCli(args, { env: { ...env, ...opts.env }, cwd: opts.cwd ?? dir }),
    async ciOk(args, opts = {}) {
      const r = await home.ci(args, opts);
      if (r.code !== 0) throw new Error(describeRun(args, r));
      return r;
    },
    statePath: (cluster) => join(dir, 'clusters', cluster, 'state.json'),
    readState(cluster) {
      const p = home.statePath(cluster);
      return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as ClusterState) : undefined;
    },
    labDir: (cluster) => join(dir, 'local', cluster),
    logs(cluster) {
      const logDir = join(dir, 'clusters', cluster, 'logs');
      if (!existsSync(logDir)) return '';
      return readdirSync(logDir)
        .map((f) => readFileSync(join(logDir, f), 'utf8'))
        .join('\n');
    },
  };
  return home;
}

export function writeClusterfile(path: string, doc: Record<string, unknown>): string {
  writeFileSync(path, stringify(doc));
  return path;
}

/** A Cluster document in cloudimage's own apiVersion. */
export function clusterDoc(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'cloudimage.io/v1', kind: 'Cluster', metadata: { name }, spec };
}

/** Runs etcdctl against one endpoint with short timeouts; returns stdout and stderr (health goes to stderr). */
export function etcdctl(endpoint: string, args: string[]): string {
  const r = spawnSync('etcdctl', ['--dial-timeout=3s', '--command-timeout=10s', `--endpoints=${endpoint}`, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  return r.stdout + r.stderr;
}

/** Member client URLs from `etcdctl member list` (name, peer and client URLs per line). */
export function etcdMembers(endpoint: string): { name: string; peer: string; client: string }[] {
  return etcdctl(endpoint, ['member', 'list', '-w', 'simple'])
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [, , name, peer, client] = line.split(', ');
      return { name, peer, client };
    });
}

/** Runs a command on this machine and returns stdout, or undefined when it fails. */
export function tryRun(cmd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
}

interface ProcRef {
  pid: number;
  startTime: string;
}

function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[0] === 'Z' || rest[0] === 'X' ? undefined : rest[19];
  } catch {
    return undefined;
  }
}

export interface LabFootprint {
  id: string;
  bridge: string;
  netns: string[];
  veths: string[];
  /** Host processes the lab recorded plus everything running inside the hosts' network namespaces. */
  procs: ProcRef[];
  dir: string;
}

/** What a LOCAL cluster's lab owns right now, read from its lab.json and the kernel. */
export async function labFootprint(labDir: string): Promise<LabFootprint> {
  const lab = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8')) as RecordedLab;
  const procs: ProcRef[] = [];
  const netns: string[] = [];
  const veths: string[] = [];
  for (const h of Object.values(lab.hosts)) {
    netns.push(h.netns);
    veths.push(h.veth);
    if (h.proc) procs.push(h.proc);
    const pids = (await tryRun('ip', ['netns', 'pids', h.netns])) ?? '';
    for (const p of pids.split(/\s+/).filter(Boolean)) {
      const st = startTime(Number(p));
      if (st) procs.push({ pid: Number(p), startTime: st });
    }
  }
  return { id: lab.id, bridge: lab.bridge, netns, veths, procs, dir: labDir };
}

interface RecordedLab {
  id: string;
  bridge: string;
  hosts: Record<string, { netns: string; veth: string; proc?: ProcRef }>;
}

/**
 * Reads a lab's lab.json over and over while something else (an apply) works in it, and keeps everything it saw:
 * the footprint of hosts that are created and removed again before the run ends, when labFootprint comes too late.
 */
export function watchLab(labDir: string, everyMs = 20): { stop(): LabFootprint | undefined } {
  let fp: LabFootprint | undefined;
  const look = () => {
    let lab: RecordedLab;
    try {
      lab = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8')) as RecordedLab;
    } catch {
      return; // not there yet, gone already, or caught mid-rename
    }
    fp ??= { id: lab.id, bridge: lab.bridge, netns: [], veths: [], procs: [], dir: labDir };
    for (const h of Object.values(lab.hosts)) {
      if (!fp.netns.includes(h.netns)) fp.netns.push(h.netns);
      if (!fp.veths.includes(h.veth)) fp.veths.push(h.veth);
      if (h.proc && !fp.procs.some((p) => p.pid === h.proc!.pid && p.startTime === h.proc!.startTime)) fp.procs.push(h.proc);
    }
  };
  const timer = setInterval(look, everyMs);
  look();
  return {
    stop() {
      clearInterval(timer);
      look();
      return fp;
    },
  };
}

/** Lines of this process's mount table that mention `dir`: none once a lab under `dir` is gone. */
export function mountsMentioning(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir));
}

/** Live processes whose command line mentions `dir` (host processes carry their host directory as an argument). */
export function procsMentioning(dir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(dir) && startTime(Number(name))) out.push(Number(name));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

/** Subnet claims on this machine held for the lab in `dir`. */
export function claimsFor(dir: string): string[] {
  if (!existsSync(CLAIM_DIR)) return [];
  return readdirSync(CLAIM_DIR).filter((f) => {
    try {
      return (JSON.parse(readFileSync(join(CLAIM_DIR, f), 'utf8')) as { dir?: string }).dir === dir;
    } catch {
      return false;
    }
  });
}

/** What of a recorded footprint still exists; all empty after a clean destroy. */
export async function leftovers(fp: LabFootprint): Promise<{ netns: string[]; links: string[]; procs: number[]; dir: boolean }> {
  const list = (await tryRun('ip', ['netns', 'list'])) ?? '';
  const names = list.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
  return {
    netns: names.filter((n) => n.startsWith(`ci-${fp.id}-`)),
    links: [fp.bridge, ...fp.veths].filter((l) => existsSync(`/sys/class/net/${l}`)),
    procs: fp.procs.filter((p) => startTime(p.pid) === p.startTime).map((p) => p.pid),
    dir: existsSync(fp.dir),
  };
}

/**
 * Tears down whatever a test left: `ci destroy` for each Clusterfile given (best effort), then every lab under
 * `$CI_HOME/local`, then the home itself. Never throws.
 */
export async function cleanupHome(home: E2eHome, clusterfiles: string[] = []): Promise<void> {
  for (const f of clusterfiles) {
    if (!existsSync(f)) continue;
    await home.ci(['destroy', '-f', f, '--auto-approve']).catch(() => undefined);
  }
  const local = join(home.dir, 'local');
  if (existsSync(local)) {
    for (const name of readdirSync(local)) {
      try {
        await LocalLab.remove(join(local, name));
      } catch (err) {
        process.stderr.write(`cleanup: could not destroy lab ${join(local, name)}: ${(err as Error).message}\n`);
      }
    }
  }
  rmSync(home.dir, { recursive: true, force: true });
}

/** Polls (every `everyMs`) until fn returns a truthy value or the time is up. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 30_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** Runs one command as root on a lab host over SSH (the lab's own key, host key pinned); returns stdout. */
export async function labExec(labDir: string, host: string, command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const lab = await LocalLab.open(labDir);
  const session = await connectSsh(lab.sshTarget(host), { pinnedHostKey: lab.host(host)?.hostKey, attempts: 2, timeoutMs: 10_000 });
  try {
    const r = await session.exec(command, { timeoutMs: 30_000 });
    return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
  } finally {
    await session.close();
  }
}
