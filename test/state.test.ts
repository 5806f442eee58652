import { afterAll, beforeEach, describe, expect, test } from 'vitest';
import { existsSync, mkdtempSync, promises as fs, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStateBackend, createState, parseDuration, statePathFor, takeoverMessage, withStateLock } from '../state/index.js';
import { StateError, StateIdentityError, StateLockError } from '../engine/kernel/errors.js';
import { writeFilesAtomic } from '../engine/kernel/fsutil.js';

const root = mkdtempSync(join(tmpdir(), 'ci-state-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
let path: string;
beforeEach(() => {
  path = join(root, `c${n++}`, 'state.json');
});

describe('state writer', () => {
  test('default path is per cluster under CI_HOME', () => {
    expect(statePathFor('demo', '/h')).toBe('/h/clusters/demo/state.json');
  });

  test('read of a missing state is undefined; writes increment serial, keep a complete backup, mode 0600', async () => {
    const b = new LocalStateBackend(path);
    expect(await b.read()).toBeUndefined();
    const s = createState('demo', 'BAREMETAL');
    expect(s.lineage).toMatch(/^[0-9a-f-]{36}$/);
    const w1 = await b.write(s);
    expect(w1.serial).toBe(1);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // The backup is a copy of the latest write, from the first one on.
    expect(await fs.readFile(`${path}.backup`, 'utf8')).toBe(await fs.readFile(path, 'utf8'));
    const w2 = await b.write({ ...w1, master0: '10.0.0.2' });
    expect(w2.serial).toBe(2);
    expect((await b.read())!.master0).toBe('10.0.0.2');
    const backup = JSON.parse(await fs.readFile(`${path}.backup`, 'utf8'));
    expect(backup).toMatchObject({ serial: 2, master0: '10.0.0.2' });
    expect(statSync(`${path}.backup`).mode & 0o777).toBe(0o600);
    // A stale in-memory copy still moves the serial forward.
    expect((await b.write(w1)).serial).toBe(3);
    // No temp files left behind.
    expect((await fs.readdir(join(path, '..'))).sort()).toEqual(['state.json', 'state.json.backup']);
  });

  test('a state of another lineage is refused', async () => {
    const b = new LocalStateBackend(path);
    await b.write(createState('demo', 'BAREMETAL'));
    const other = createState('demo', 'BAREMETAL');
    await expect(b.write(other)).rejects.toThrow(StateError);
    await expect(b.write(other)).rejects.toThrow(/refusing to write state with lineage .* which holds lineage/);
  });

  test('a writer that skips re-reading its own last write still sees any other write, atomic or in place', async () => {
    const a = new LocalStateBackend(path);
    const w1 = await a.write(createState('demo', 'BAREMETAL'));
    // Another writer moves the serial on (its own file, renamed into place): a's next write goes past it.
    const w5 = await new LocalStateBackend(path).write({ ...w1, serial: 5 }, { keepSerial: true });
    expect((await a.write(w1)).serial).toBe(w5.serial + 1);
    // Another lineage written over it in place (same inode): refused, as if a had read it.
    const other = { ...createState('demo', 'BAREMETAL'), serial: 9 };
    const text = (await fs.readFile(path, 'utf8')).replace(w1.lineage, other.lineage);
    writeFileSync(path, text);
    await expect(a.write(w1)).rejects.toThrow(/refusing to write state with lineage .* which holds lineage/);
  });

  test('the state and its backup are written together: renamed in order, and a failed write changes neither', async () => {
    const dir = join(path, '..');
    await fs.mkdir(dir, { recursive: true });
    writeFileSync(join(dir, 'a'), 'old a');
    writeFileSync(join(dir, 'b'), 'old b');
    // The second file's temp cannot be made (its directory is a file): the first file is not put in place either.
    writeFileSync(join(dir, 'nodir'), '');
    await expect(writeFilesAtomic([{ path: join(dir, 'a'), data: 'new a' }, { path: join(dir, 'nodir', 'b'), data: 'new b' }])).rejects.toThrow();
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('old a');
    // The second rename fails (a directory is in the way): the first file is new, the second old, no temp is left.
    await fs.mkdir(join(dir, 'c'));
    writeFileSync(join(dir, 'c', 'x'), '');
    await expect(writeFilesAtomic([{ path: join(dir, 'b'), data: 'new b', mode: 0o600 }, { path: join(dir, 'c'), data: 'new c' }])).rejects.toThrow();
    expect(readFileSync(join(dir, 'b'), 'utf8')).toBe('new b');
    expect(statSync(join(dir, 'b')).mode & 0o777).toBe(0o600);
    expect((await fs.readdir(dir)).sort()).toEqual(['a', 'b', 'c', 'nodir']);
    await writeFilesAtomic([{ path: join(dir, 'a'), data: 'new a' }, { path: join(dir, 'b'), data: 'newer b' }]);
    expect([readFileSync(join(dir, 'a'), 'utf8'), readFileSync(join(dir, 'b'), 'utf8')]).toEqual(['new a', 'newer b']);
  });

  test('a damaged state file is reported, pointing at the backup', async () => {
    await fs.mkdir(join(path, '..'), { recursive: true });
    writeFileSync(path, '{"half":');
    const err = await new LocalStateBackend(path).read().catch((e) => e);
    expect(err.message).toMatch(/is not valid JSON/);
    expect(err.hint).toContain(`ci state restore --state ${path}`);
  });
});

describe('state lock', () => {
  test('a second holder fails at once, naming the holder and the force-unlock command', async () => {
    const a = new LocalStateBackend(path);
    const lock = await a.lock({ operation: 'apply' });
    const lockInfo = JSON.parse(await fs.readFile(`${path}.lock`, 'utf8'));
    expect(lockInfo).toMatchObject({ id: lock.info.id, pid: process.pid, host: hostname(), operation: 'apply' });
    const started = Date.now();
    const err = await new LocalStateBackend(path).lock({ operation: 'plan' }).catch((e) => e);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(StateLockError);
    expect(err.message).toContain(`is locked by ${lockInfo.user}@${hostname()} (pid ${process.pid}, apply) since ${lockInfo.time}`);
    expect(err.message).not.toContain('stale');
    expect(err.hint).toContain(`ci force-unlock ${lock.info.id} --state ${path}`);
    await lock.release();
    await lock.release();
    const again = await a.lock({ operation: 'apply' });
    await again.release();
  });

  test('--lock-timeout waits for the holder to release', async () => {
    const b = new LocalStateBackend(path, { pollMinMs: 20, pollMaxMs: 50 });
    const lock = await b.lock({ operation: 'apply' });
    setTimeout(() => void lock.release(), 300);
    const second = await b.lock({ operation: 'apply' }, 5000);
    expect(second.info.id).not.toBe(lock.info.id);
    await second.release();
  });

  test('--lock-timeout gives up with the lock error', async () => {
    const b = new LocalStateBackend(path, { pollMinMs: 20, pollMaxMs: 50 });
    const lock = await b.lock({ operation: 'apply' });
    const started = Date.now();
    await expect(b.lock({ operation: 'apply' }, 300)).rejects.toThrow(StateLockError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await lock.release();
  });

  const deadPid = async () => {
    const child = spawn(process.execPath, ['-e', '0']);
    const pid = child.pid!;
    await new Promise((r) => child.on('exit', r));
    return pid;
  };
  const machine = () => {
    try {
      return readFileSync('/etc/machine-id', 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  };
  const leaveLock = async (info: Record<string, unknown>) => {
    await fs.mkdir(join(path, '..'), { recursive: true });
    writeFileSync(`${path}.lock`, JSON.stringify(info));
  };

  test('a lock left by a dead process of this machine is taken over, and the new lock says whose it replaced', async () => {
    const info = { id: 'dead-lock-id', user: 'op', host: hostname(), pid: await deadPid(), operation: 'apply', time: '2024-01-01T00:00:00.000Z', ...(machine() ? { machine: machine() } : {}) };
    await leaveLock(info);
    const lock = await new LocalStateBackend(path).lock({ operation: 'apply' });
    expect(lock.tookOver).toEqual(info);
    expect(JSON.parse(await fs.readFile(`${path}.lock`, 'utf8')).id).toBe(lock.info.id);
    expect(takeoverMessage(lock.tookOver!, path)).toBe(
      `took over the lock on ${path} of op@${hostname()} (pid ${info.pid}, apply since 2024-01-01T00:00:00.000Z): that process is no longer running`,
    );
    await lock.release();
    await expect(fs.stat(`${path}.lock`)).rejects.toThrow();
  });

  test('of two commands taking over the same dead lock, exactly one gets it', async () => {
    await leaveLock({ id: 'dead-lock-id', user: 'op', host: hostname(), pid: await deadPid(), operation: 'apply', time: '2024-01-01T00:00:00.000Z' });
    const tries = await Promise.allSettled([0, 1, 2, 3].map(() => new LocalStateBackend(path).lock({ operation: 'apply' })));
    const won = tries.filter((t): t is PromiseFulfilledResult<Awaited<ReturnType<LocalStateBackend['lock']>>> => t.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const t of tries) if (t.status === 'rejected') expect(t.reason).toBeInstanceOf(StateLockError);
    expect(JSON.parse(await fs.readFile(`${path}.lock`, 'utf8')).id).toBe(won[0].value.info.id);
    await won[0].value.release();
  });

  test('a lock of another machine, or of a live process, is never broken; force-unlock removes it', async () => {
    const pid = await deadPid();
    const b = new LocalStateBackend(path);
    for (const holder of [
      { host: 'elsewhere', pid },
      ...(machine() ? [{ host: hostname(), pid, machine: 'another-machine-id' }] : []),
      { host: hostname(), pid: process.ppid },
    ]) {
      await leaveLock({ id: 'kept-lock-id', user: 'op', operation: 'apply', time: '2024-01-01T00:00:00.000Z', ...holder });
      const err = await b.lock({ operation: 'plan' }).catch((e) => e);
      expect(err).toBeInstanceOf(StateLockError);
      expect(err.message).toContain(`is locked by op@${holder.host} (pid ${holder.pid}, apply)`);
      expect(JSON.parse(await fs.readFile(`${path}.lock`, 'utf8')).id).toBe('kept-lock-id');
    }
    await expect(b.forceUnlock('wrong-id')).rejects.toThrow(/has id kept-lock-id, not wrong-id/);
    await b.forceUnlock('kept-lock-id');
    await expect(fs.stat(`${path}.lock`)).rejects.toThrow();
    await expect(b.forceUnlock('kept-lock-id')).rejects.toThrow(/is not locked/);
  });

  test('withStateLock releases on failure', async () => {
    const b = new LocalStateBackend(path);
    await expect(withStateLock(b, 'apply', 0, async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    await expect(fs.stat(`${path}.lock`)).rejects.toThrow();
  });

  test('a process that exits without releasing does not leave the lock behind', async () => {
    // Compile just the backend and what it imports, so the child runs the current source.
    const out = join(root, 'build');
    const tsc = spawnSync(
      join(process.cwd(), 'node_modules/.bin/tsc'),
      ['--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck', '--types', 'node',
        '--rootDir', process.cwd(), '--outDir', out, join(process.cwd(), 'state/local.ts')],
      { encoding: 'utf8' },
    );
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
    await fs.writeFile(join(out, 'package.json'), '{"type":"module"}');
    const script = `
      import { LocalStateBackend } from ${JSON.stringify(join(out, 'state/local.js'))};
      await new LocalStateBackend(${JSON.stringify(path)}).lock({ operation: 'apply' });
      process.exit(3);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(3);
    await expect(fs.stat(`${path}.lock`)).rejects.toThrow();
  }, 60_000);

  test('durations', () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('0')).toBe(0);
    expect(() => parseDuration('soon')).toThrow(/invalid duration "soon"/);
  });
});

describe('state identity: the backup witnesses whose state this is', () => {
  const withHost = (s: ReturnType<typeof createState>) => {
    s.hosts['10.0.0.2'] = { key: '10.0.0.2', ip: '10.0.0.2', roles: ['master'], ssh: { user: 'root', port: 22 }, layers: [], hooks: {}, status: 'active' };
    return s;
  };
  /** A state.json with a backup: two writes of one lineage. */
  async function twoWrites(): Promise<{ b: LocalStateBackend; lineage: string; backupText: string }> {
    const b = new LocalStateBackend(path);
    const w1 = await b.write(withHost(createState('demo', 'BAREMETAL')));
    await b.write(w1);
    return { b, lineage: w1.lineage, backupText: await fs.readFile(`${path}.backup`, 'utf8') };
  }

  test('no state but a backup: read refuses instead of reporting a cluster never applied', async () => {
    const { backupText } = await twoWrites();
    await fs.rm(path);
    const err = await new LocalStateBackend(path).read().catch((e) => e);
    expect(err).toBeInstanceOf(StateIdentityError);
    expect(err.code).toBe('STATE_IDENTITY');
    expect(err.message).toContain(`there is no state at ${path}, but its backup exists (cluster demo, lineage `);
    expect(err.message).toContain('1 host)');
    expect(err.hint).toContain(`ci state restore --state ${path}`);
    expect(await fs.readFile(`${path}.backup`, 'utf8')).toBe(backupText);
  });

  test('a state of another lineage than its backup is refused on read', async () => {
    await twoWrites();
    writeFileSync(path, JSON.stringify({ ...createState('demo', 'BAREMETAL'), serial: 1 }));
    const err = await new LocalStateBackend(path).read().catch((e) => e);
    expect(err).toBeInstanceOf(StateIdentityError);
    expect(err.message).toMatch(/and its backup \(cluster demo, lineage .*\) have different lineages/);
    expect(err.hint).toContain('ci state restore');
  });

  test('a damaged backup does not hide a good state', async () => {
    const { b } = await twoWrites();
    writeFileSync(`${path}.backup`, '{"half":');
    expect((await b.read())!.cluster).toBe('demo');
    // Replaced by the next write of this lineage.
    const s = (await b.read())!;
    await b.write(s);
    expect(JSON.parse(await fs.readFile(`${path}.backup`, 'utf8')).lineage).toBe(s.lineage);
  });

  test('write never creates a state next to a backup of another lineage', async () => {
    const { backupText } = await twoWrites();
    await fs.rm(path);
    const err = await new LocalStateBackend(path).write(createState('demo', 'BAREMETAL')).catch((e) => e);
    expect(err).toBeInstanceOf(StateIdentityError);
    expect(err.message).toMatch(/refusing to write state with lineage .* next to .*state\.json\.backup, which holds lineage/);
    expect(existsSync(path)).toBe(false);
    expect(await fs.readFile(`${path}.backup`, 'utf8')).toBe(backupText);
  });

  test('write never overwrites a backup of another lineage, even behind a state of its own lineage', async () => {
    const { backupText } = await twoWrites();
    // A foreign state.json whose own lineage matches what is written, next to the original backup.
    const foreign = { ...createState('demo', 'BAREMETAL'), serial: 4 };
    writeFileSync(path, JSON.stringify(foreign));
    const err = await new LocalStateBackend(path).write(foreign).catch((e) => e);
    expect(err).toBeInstanceOf(StateIdentityError);
    expect(await fs.readFile(`${path}.backup`, 'utf8')).toBe(backupText);
    expect(JSON.parse(await fs.readFile(path, 'utf8')).serial).toBe(4);
  });

  test('a state of the backup\'s lineage may be written where state.json is missing', async () => {
    const { lineage } = await twoWrites();
    const before = JSON.parse(await fs.readFile(`${path}.backup`, 'utf8'));
    await fs.rm(path);
    const w = await new LocalStateBackend(path).write({ ...before });
    expect(w.lineage).toBe(lineage);
    expect(w.serial).toBe(before.serial + 1);
  });

  test('a damaged backup with no state blocks creating one', async () => {
    await fs.mkdir(join(path, '..'), { recursive: true });
    writeFileSync(`${path}.backup`, 'not json');
    await expect(new LocalStateBackend(path).write(createState('demo', 'BAREMETAL'))).rejects.toThrow(/its backup .* is damaged/);
    expect(existsSync(path)).toBe(false);
  });
});

describe('restoring the backup', () => {
  async function withBackup(): Promise<{ b: LocalStateBackend; backupText: string; lineage: string }> {
    const b = new LocalStateBackend(path);
    const w1 = await b.write(createState('demo', 'LOCAL'));
    await b.write({ ...w1, master0: 'demo-master-1' });
    return { b, backupText: await fs.readFile(`${path}.backup`, 'utf8'), lineage: w1.lineage };
  }

  test('puts the backup back byte for byte, moving the state that was there aside', async () => {
    const { b, backupText, lineage } = await withBackup();
    const foreign = JSON.stringify({ ...createState('other', 'LOCAL'), serial: 9 });
    writeFileSync(path, foreign);
    const r = await b.restoreBackup({ cluster: 'demo' });
    expect(r.unchanged).toBe(false);
    expect(r.state).toMatchObject({ cluster: 'demo', lineage, serial: 2, master0: 'demo-master-1' });
    expect(await fs.readFile(path, 'utf8')).toBe(backupText);
    expect(await fs.readFile(`${path}.backup`, 'utf8')).toBe(backupText);
    expect(r.movedAside).toMatch(/state\.json\.aside-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/);
    expect(await fs.readFile(r.movedAside!, 'utf8')).toBe(foreign);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // The restored state reads and writes as the cluster's own again.
    expect((await b.read())!.lineage).toBe(lineage);
    expect((await b.write((await b.read())!)).serial).toBe(3);
  });

  test('a lost state.json is restored with nothing moved; restoring twice changes nothing', async () => {
    const { b, backupText } = await withBackup();
    await fs.rm(path);
    const r = await b.restoreBackup();
    expect(r.movedAside).toBeUndefined();
    expect(await fs.readFile(path, 'utf8')).toBe(backupText);
    const again = await b.restoreBackup();
    expect(again.unchanged).toBe(true);
    expect((await fs.readdir(join(path, '..'))).sort()).toEqual(['state.json', 'state.json.backup']);
  });

  test('refuses a backup of another cluster, and a missing backup, changing nothing', async () => {
    const { b, backupText } = await withBackup();
    const current = await fs.readFile(path, 'utf8');
    const err = await b.restoreBackup({ cluster: 'prod' }).catch((e) => e);
    expect(err).toBeInstanceOf(StateIdentityError);
    expect(err.message).toContain('is the state of cluster demo, not of prod');
    expect(await fs.readFile(path, 'utf8')).toBe(current);
    expect(await fs.readFile(`${path}.backup`, 'utf8')).toBe(backupText);
    const none = new LocalStateBackend(join(root, 'nothing-here', 'state.json'));
    await expect(none.restoreBackup()).rejects.toThrow(/there is no backup at .*state\.json\.backup to restore/);
  });
});
