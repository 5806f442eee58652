/**
 * A real etcd cluster for tests: `etcd` members (Debian's etcd-server) on loopback ports of their own, data in a
 * throwaway folder, stopped by PID and removed when the test ends. Elections are made fast (50 ms heartbeats) so a
 * stopped leader is replaced within a second or two.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc?: ChildProcess;
}

export interface EtcdCluster {
  members: EtcdMember[];
  endpoints: string[];
  /** Stops a member (SIGKILL when `hard`); its data stays, so `start` brings it back. */
  stop(i: number, hard?: boolean): Promise<void>;
  start(i: number): Promise<void>;
  /** Index of the current leader, as the members report it. */
  leader(): number;
  /** Everything stopped and removed. */
  destroy(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function etcdctl(endpoints: string[], args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('etcdctl', [`--endpoints=${endpoints.join(',')}`, '--command-timeout=2s', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout: 10_000,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

async function until(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`etcd test cluster: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const root = mkdtempSync(join(tmpdir(), 'ci-etcd-'));
  const token = `ci-test-${randomUUID()}`;
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    members.push({
      name: `m${i}`,
      clientUrl: `http://127.0.0.1:${await freePort()}`,
      peerUrl: `http://127.0.0.1:${await freePort()}`,
      dataDir: join(root, `m${i}`),
    });
  }
  const initial = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const launch = (m: EtcdMember) => {
    m.proc = spawn(
      'etcd',
      [
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=${m.clientUrl}`,
        `--advertise-client-urls=${m.clientUrl}`,
        `--listen-peer-urls=${m.peerUrl}`,
        `--initial-advertise-peer-urls=${m.peerUrl}`,
        `--initial-cluster=${initial}`,
        `--initial-cluster-token=${token}`,
        '--initial-cluster-state=new',
        '--heartbeat-interval=50',
        '--election-timeout=500',
        '--log-level=error',
      ],
      { stdio: 'ignore' },
    );
  };
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    async stop(i, hard = false) {
      const p = members[i].proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const gone = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill(hard ? 'SIGKILL' : 'SIGTERM');
      await gone;
      members[i].proc = undefined;
    },
    async start(i) {
      launch(members[i]);
      await until(`${members[i].name} to answer`, () => etcdctl([members[i].clientUrl], ['endpoint', 'health']).status === 0);
    },
    leader() {
      for (let i = 0; i < members.length; i++) {
        if (!members[i].proc) continue;
        const r = etcdctl([members[i].clientUrl], ['endpoint', 'status', '--write-out=json']);
        if (r.status !== 0) continue;
        const s = JSON.parse(r.stdout)[0]?.Status;
        if (s && String(s.leader) === String(s.header?.member_id)) return i;
      }
      return -1;
    },
    async destroy() {
      for (let i = 0; i < members.length; i++) await cluster.stop(i, true).catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    members.forEach(launch);
    await until('all members to be healthy', () => etcdctl(cluster.endpoints, ['endpoint', 'health']).status === 0);
    await until('a leader', () => cluster.leader() >= 0);
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

/** etcdctl against the test cluster, for looking behind the backend's back. */
export function etcdGet(endpoints: string[], key: string, prefix = false): string {
  const r = etcdctl(endpoints, ['get', key, ...(prefix ? ['--prefix', '--keys-only'] : ['--print-value-only'])]);
  if (r.status !== 0) throw new Error(`etcdctl get ${key}: ${r.stderr}`);
  return r.stdout;
}

/** Every key under `prefix` with its value, as etcdctl prints them. */
export function etcdDump(endpoints: string[], prefix: string): string {
  const r = etcdctl(endpoints, ['get', prefix, '--prefix']);
  if (r.status !== 0) throw new Error(`etcdctl get ${prefix}: ${r.stderr}`);
  return r.stdout;
}

export function etcdPut(endpoints: string[], key: string, value: string): void {
  const r = spawnSync('etcdctl', [`--endpoints=${endpoints.join(',')}`, 'put', key], { input: value, encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  if (r.status !== 0) throw new Error(`etcdctl put ${key}: ${r.stderr}`);
}

export function etcdDel(endpoints: string[], key: string, prefix = false): void {
  const r = etcdctl(endpoints, ['del', key, ...(prefix ? ['--prefix'] : [])]);
  if (r.status !== 0) throw new Error(`etcdctl del ${key}: ${r.stderr}`);
}
