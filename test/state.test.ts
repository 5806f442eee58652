import { afterAll, beforeEach, describe, expect, test } from 'vitest';
import { mkdtempSync, promises as fs, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStateBackend, createState, parseDuration, statePathFor, withStateLock } from '../state/index.js';
import { StateError, StateLockError } from '../engine/errors.js';

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

  test('read of a missing state is undefined; writes increment serial, keep a backup, mode 0600', async () => {
    const b = new LocalStateBackend(path);
    expect(await b.read()).toBeUndefined();
    const s = createState('demo', 'BAREMETAL');
    expect(s.lineage).toMatch(/^[0-9a-f-]{36}$/);
    const w1 = await b.write(s);
    expect(w1.serial).toBe(1);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    await expect(fs.stat(`${path}.backup`)).rejects.toThrow();
    const w2 = await b.write({ ...w1, master0: '10.0.0.2' });
    expect(w2.serial).toBe(2);
    expect((await b.read())!.master0).toBe('10.0.0.2');
    const backup = JSON.parse(await fs.readFile(`${path}.backup`, 'utf8'));
    expect(backup.serial).toBe(1);
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

  test('a damaged state file is reported, pointing at the backup', async () => {
    await fs.mkdir(join(path, '..'), { recursive: true });
    writeFileSync(path, '{"half":');
    await expect(new LocalStateBackend(path).read()).rejects.toThrow(/is not valid JSON/);
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

  test('a lock of a dead process is reported as stale but not broken; force-unlock removes it', async () => {
    const child = spawn(process.execPath, ['-e', '0']);
    const deadPid = child.pid!;
    await new Promise((r) => child.on('exit', r));
    await fs.mkdir(join(path, '..'), { recursive: true });
    const info = { id: 'dead-lock-id', user: 'op', host: hostname(), pid: deadPid, operation: 'apply', time: '2024-01-01T00:00:00.000Z' };
    writeFileSync(`${path}.lock`, JSON.stringify(info));
    const b = new LocalStateBackend(path);
    const err = await b.lock({ operation: 'plan' }).catch((e) => e);
    expect(err.message).toContain('no longer running, so the lock looks stale');
    await expect(fs.stat(`${path}.lock`)).resolves.toBeTruthy();
    await expect(b.forceUnlock('wrong-id')).rejects.toThrow(/has id dead-lock-id, not wrong-id/);
    await b.forceUnlock('dead-lock-id');
    await expect(fs.stat(`${path}.lock`)).rejects.toThrow();
    await expect(b.forceUnlock('dead-lock-id')).rejects.toThrow(/is not locked/);
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
