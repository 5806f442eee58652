/**
 * The etcd state backend against a real 3-member etcd cluster on loopback: compare-and-swap writes, kept versions
 * without gaps, lease locks that expire with a killed holder, force-unlock, the team passphrase, migrations both
 * ways, push, and a leader stopped in the middle of a stream of writes.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdDel, etcdGet, startEtcdCluster, type EtcdCluster } from './helpers/etcd.js';
import { openStateBackend } from '../state/open.js';
import { createState, LocalStateBackend } from '../state/local.js';
import { migrateState, pushState } from '../state/transfer.js';
import type { ClusterState } from '../state/model.js';
import type { StateBackend } from '../state/backend.js';
import { StateConflictError, StateError, StateIdentityError, StateLockError } from '../engine/kernel/errors.js';

const PASS = 'correct horse battery staple';
const TOKEN = 'join-token-5f1e9a7c3b';
let etcd: EtcdCluster;
let home: string;
const opened: StateBackend[] = [];

function backend(cluster: string, extra: { env?: NodeJS.ProcessEnv; ttl?: number; history?: number; prefix?: string } = {}): StateBackend {
  const b = openStateBackend({
    cluster,
    home,
    spec: { type: 'etcd', endpoints: etcd.endpoints, prefix: extra.prefix ?? '/t', lockTtlSeconds: extra.ttl ?? 30, history: extra.history },
    env: extra.env ?? { CI_STATE_PASSPHRASE: PASS },
  });
  opened.push(b);
  return b;
}

beforeAll(async () => {
  etcd = await startEtcdCluster(3);
  home = mkdtempSync(join(tmpdir(), 'ci-etcd-home-'));
}, 60_000);

afterAll(async () => {
  for (const b of opened) await b.close().catch(() => undefined);
  await etcd?.destroy();
  if (home) rmSync(home, { recursive: true, force: true });
});

const withToken = (s: ClusterState): ClusterState => ({ ...s, outputs: { TOKEN } });

describe('etcd backend: writes', () => {
  test('a fresh cluster reads as never applied; writes count serials and keep hook outputs sealed', async () => {
    const b = backend('fresh');
    expect(await b.read()).toBeUndefined();
    const w1 = await b.write(withToken(createState('fresh', 'LOCAL')));
    const w2 = await b.write(w1);
    expect([w1.serial, w2.serial]).toEqual([1, 2]);
    const again = await backend('fresh').read();
    expect(again?.outputs).toEqual({ TOKEN });
    expect(again?.lineage).toBe(w1.lineage);
    // Nothing in etcd holds the token in clear: not the state, not its versions.
    const raw = etcdGet(etcd.endpoints, '/t/clusters/fresh/state') + etcdGet(etcd.endpoints, '/t/clusters/fresh/history/000000000001');
    expect(raw).toContain('sealedOutputs');
    expect(raw).not.toContain(TOKEN);
  });

  test('CAS: two writers on one revision, one wins and the other gets a clear error; nothing is overwritten', async () => {
    const seed = await backend('race').write(createState('race', 'LOCAL'));
    const a = backend('race');
    const b = backend('race');
    const sa = (await a.read())!;
    const sb = (await b.read())!;
    const results = await Promise.allSettled([a.write({ ...sa, master0: 'from-a' }), b.write({ ...sb, master0: 'from-b' })]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0].reason).toBeInstanceOf(StateConflictError);
    expect(String(lost[0].reason.message)).toMatch(/changed since this ci read it \(it is now serial 2, written by .+@.+\).*nothing was written/);
    const stored = (await backend('race').read())!;
    expect(stored.serial).toBe(seed.serial + 1);
    expect(stored.master0).toBe((won[0] as PromiseFulfilledResult<ClusterState>).value.master0);
  });

  test('another lineage is refused', async () => {
    await backend('lineage').write(createState('lineage', 'LOCAL'));
    const other = backend('lineage');
    await other.read();
    await expect(other.write(createState('lineage', 'LOCAL'))).rejects.toThrow(/refusing to write state with lineage .* which holds lineage/);
  });

  test('the last N versions are kept with no gap, each readable; older ones are dropped', async () => {
    const b = backend('hist', { history: 3 });
    let s = await b.write(createState('hist', 'LOCAL'));
    for (let i = 0; i < 5; i++) s = await b.write({ ...s, master0: `m${i}` });
    const h = await b.history();
    expect(h.map((v) => v.serial)).toEqual([4, 5, 6]);
    expect(h.every((v) => /@/.test(v.by) && v.operation === 'write')).toBe(true);
    expect(JSON.parse((await b.pull(5))!).master0).toBe('m3');
    expect(await b.pull(2)).toBeUndefined();
    expect(JSON.parse((await b.pull())!).serial).toBe(6);
  });

  test('a state key deleted behind its back, with versions kept, is never read as "never applied"', async () => {
    const b = backend('lost');
    await b.write(createState('lost', 'LOCAL'));
    etcdDel(etcd.endpoints, '/t/clusters/lost/state');
    await expect(backend('lost').read()).rejects.toThrow(StateIdentityError);
    await expect(backend('lost').read()).rejects.toThrow(/earlier version\(s\) of it are kept there/);
  });
});

describe('etcd backend: the team passphrase', () => {
  test('without CI_STATE_PASSPHRASE the backend is refused with what to set', () => {
    expect(() => backend('nopass', { env: {} })).toThrow(/CI_STATE_PASSPHRASE is not set/);
  });

  test('a wrong passphrase is refused before anything is written, even before any output was sealed', async () => {
    const b = backend('wrongpass');
    await b.write(createState('wrongpass', 'LOCAL'));
    const before = etcdGet(etcd.endpoints, '/t/clusters/wrongpass/state');
    const wrong = backend('wrongpass', { env: { CI_STATE_PASSPHRASE: 'not it' } });
    await expect(wrong.read()).rejects.toThrow(/it is not the passphrase this state was written with/);
    expect(etcdGet(etcd.endpoints, '/t/clusters/wrongpass/state')).toBe(before);
  });
});

/** A separate process that takes the lock and waits to be killed. */
function holdLockInChild(cluster: string, ttl: number): Promise<{ pid: number; kill: () => void }> {
  const dist = fileURLToPath(new URL('../dist/state/open.js', import.meta.url));
  const script = `
    const { openStateBackend } = await import(${JSON.stringify(dist)});
    const b = openStateBackend({ cluster: ${JSON.stringify(cluster)}, home: ${JSON.stringify(home)},
      spec: { type: 'etcd', endpoints: ${JSON.stringify(etcd.endpoints)}, prefix: '/t', lockTtlSeconds: ${ttl} },
      env: { CI_STATE_PASSPHRASE: ${JSON.stringify(PASS)} } });
    await b.lock({ operation: 'apply' });
    process.stdout.write('locked\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      if (String(d).includes('locked')) resolve({ pid: child.pid!, kill: () => child.kill('SIGKILL') });
    });
    child.once('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
}

describe('etcd backend: lease locks', () => {
  test('a held lock refuses at once with its holder; a killed holder\'s lock expires with its lease, no force-unlock needed', async () => {
    const holder = await holdLockInChild('lease', 5);
    try {
      const b = backend('lease', { ttl: 5 });
      const err = (await b.lock({ operation: 'apply' }).catch((e) => e)) as StateLockError;
      expect(err).toBeInstanceOf(StateLockError);
      expect(err.message).toMatch(new RegExp(`locked by .+@.+ \\(pid ${holder.pid}, apply\\) since \\d{4}-`));
      expect(err.hint).toMatch(/expires by itself within 5s.*ci force-unlock [0-9a-f-]{36}/);
      holder.kill();
      const started = Date.now();
      const lock = await b.lock({ operation: 'apply' }, 20_000);
      const waited = Date.now() - started;
      expect(waited).toBeLessThan(15_000);
      await lock.release();
    } finally {
      holder.kill();
    }
  }, 40_000);

  test('--lock-timeout waits for a release; force-unlock by id breaks a lock, and its holder then writes nothing', async () => {
    const a = backend('force');
    const seed = await a.write(createState('force', 'LOCAL'));
    const la = await a.lock({ operation: 'apply' });
    const b = backend('force');
    const waiting = b.lock({ operation: 'apply' }, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    await la.release();
    const lb = await waiting;
    // b is "gone"; c breaks its lock by id, as the message says.
    const c = backend('force');
    await expect(c.forceUnlock('not-the-id')).rejects.toThrow(/has id .*, not not-the-id/);
    await c.forceUnlock(lb.info.id);
    await expect(b.write(seed)).rejects.toThrow(/lost its lock/);
    expect((await c.read())!.serial).toBe(seed.serial);
    await lb.release();
  }, 30_000);
});

describe('etcd backend: moving states', () => {
  test('migrate local -> etcd -> local keeps lineage and serial; the place left says where the state went', async () => {
    const path = join(home, 'clusters', 'mig', 'state.json');
    const local = new LocalStateBackend(path);
    let s = await local.write(withToken(createState('mig', 'LOCAL')));
    s = await local.write(s);
    const etcdB = backend('mig');
    const r = await migrateState(new LocalStateBackend(path), etcdB);
    expect(r.state).toMatchObject({ lineage: s.lineage, serial: s.serial });
    expect(existsSync(path)).toBe(false);
    expect(JSON.parse(readFileSync(`${path}.moved`, 'utf8'))).toMatchObject({ lineage: s.lineage, serial: s.serial, movedTo: etcdB.location });
    const moved = (await new LocalStateBackend(path).read().catch((e) => e)) as StateIdentityError;
    expect(moved).toBeInstanceOf(StateIdentityError);
    expect(moved.message).toMatch(/no longer in .*state\.json: it was moved to etcd /);
    expect(moved.hint).toMatch(/spec\.backend .*--backend etcd/);
    expect((await backend('mig').read())?.outputs).toEqual({ TOKEN });

    // An apply there, then back.
    const there = backend('mig');
    const w = await there.write((await there.read())!);
    const back = await migrateState(backend('mig'), new LocalStateBackend(path));
    expect(back.state).toMatchObject({ lineage: s.lineage, serial: w.serial });
    expect(await new LocalStateBackend(path).read()).toMatchObject({ serial: w.serial, outputs: { TOKEN } });
    expect(existsSync(`${path}.moved`)).toBe(false);
    await expect(backend('mig').read()).rejects.toThrow(/no longer in etcd .* moved to \/.*state\.json/);
    // And straight back again, with no write in between: the version etcd saw leave comes back.
    const again = await migrateState(new LocalStateBackend(path), backend('mig'));
    expect(again.state).toMatchObject({ lineage: s.lineage, serial: w.serial });
    expect((await backend('mig').read())?.outputs).toEqual({ TOKEN });
  });

  test('a migration onto a newer or foreign state there is refused and changes nothing', async () => {
    const path = join(home, 'clusters', 'mig2', 'state.json');
    await new LocalStateBackend(path).write(createState('mig2', 'LOCAL'));
    await backend('mig2').write(createState('mig2', 'LOCAL'));
    await expect(migrateState(new LocalStateBackend(path), backend('mig2'))).rejects.toThrow(/already holds another state of this cluster/);
    expect(existsSync(path)).toBe(true);
  });

  test('push: the same lineage and not older; pull, edit, push works', async () => {
    const b = backend('push');
    let s = await b.write(createState('push', 'LOCAL'));
    const old = (await b.pull())!;
    s = await b.write(s);
    const file = join(home, 'old.json');
    writeFileSync(file, old);
    await expect(pushState(backend('push'), old, file)).rejects.toThrow(/older than serial 2 .* add --force|older than serial 2/);
    const edited = JSON.parse((await b.pull())!);
    edited.master0 = 'edited';
    const written = await pushState(backend('push'), JSON.stringify(edited), file);
    expect(written).toMatchObject({ serial: 3, master0: 'edited' });
    const foreign = JSON.stringify({ ...edited, lineage: 'another' });
    await expect(pushState(backend('push'), foreign, file)).rejects.toThrow(StateIdentityError);
    expect((await backend('push').read())!.serial).toBe(3);
    await expect(pushState(backend('push'), old, file, { force: true })).resolves.toMatchObject({ serial: 4 });
  });
});

describe('etcd backend: a leader stopped during a stream of writes', () => {
  test('every write lands once, serials strictly increase, the kept versions have no gap', async () => {
    const b = backend('leader', { history: 100 });
    const lock = await b.lock({ operation: 'apply' });
    let s = await b.write(createState('leader', 'LOCAL'));
    const serials = [s.serial];
    const failures: unknown[] = [];
    let stopped = -1;
    for (let i = 0; i < 40; i++) {
      if (i === 10) {
        stopped = etcd.leader();
        expect(stopped).toBeGreaterThanOrEqual(0);
        await etcd.stop(stopped, true);
      }
      try {
        s = await b.write({ ...s, master0: `w${i}` });
        serials.push(s.serial);
      } catch (err) {
        // A write may fail only with a clear error; the state read again then continues from what was stored.
        failures.push(err);
        expect(err).toBeInstanceOf(StateError);
        s = (await backend('leader').read())!;
      }
    }
    await lock.release();
    await etcd.start(stopped);
    expect(failures.length).toBeLessThanOrEqual(1);
    for (let i = 1; i < serials.length; i++) expect(serials[i]).toBe(serials[i - 1] + 1);
    const kept = (await backend('leader', { history: 100 }).history()).map((v) => v.serial);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => kept[0] + i));
    expect(kept[kept.length - 1]).toBe((await backend('leader').read())!.serial);
  }, 90_000);
});
