import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register as registerPlan } from '../engine/cli/commands/plan.js';
import { formatStateList, register as registerState } from '../engine/cli/commands/state.js';
import { ImageStore } from '../engine/image/store.js';
import { MEDIA, type ImageConfig } from '../engine/image/oci.js';
import { rawLayer } from './helpers/raw-layers.js';
import { LocalStateBackend, createState, statePathFor } from '../state/index.js';
import { preparePlan } from '../plans/prepare.js';
import { planCluster } from '../engine/executor/converge.js';
import { loadPlanFile } from '../plans/planfile.js';
import { HostKeyMismatchError, ImageNotFoundError, StateIdentityError, StateLockError } from '../engine/kernel/errors.js';

const home = mkdtempSync(join(tmpdir(), 'ci-cli-'));
const oldHome = process.env.CI_HOME;
process.env.CI_HOME = home;
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
  if (oldHome === undefined) delete process.env.CI_HOME;
  else process.env.CI_HOME = oldHome;
});
afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

const clusterfile = join(home, 'Clusterfile');
writeFileSync(
  clusterfile,
  `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  hosts:
  - {ips: [10.0.0.2], roles: [master]}
`,
);

async function storeImage() {
  const store = new ImageStore(home);
  await store.init();
  const layer = await store.putBlob(rawLayer([{ path: 'etc/app.conf', content: 'a=1\n' }]));
  const config: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
    history: [{ created_by: 'COPY . .' }],
    cloudimage: { version: 1, layers: [{ createdBy: 'COPY . .' }], cmds: [{ cmd: 'echo hi', identity: layer.digest }] },
  };
  const cfg = await store.putBlob(JSON.stringify(config));
  const desc = await store.putManifest({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: cfg.digest, size: cfg.size },
    layers: [{ mediaType: MEDIA.layerGzip, digest: layer.digest, size: layer.size }],
  });
  await store.tag('etcd-example:v1', desc);
}

async function run(...args: string[]): Promise<string> {
  const out: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    out.push(String(s));
    return true;
  });
  const program = new Command('ci').exitOverride();
  registerPlan(program);
  registerState(program);
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    vi.restoreAllMocks();
  }
  return out.join('');
}

describe('ci plan and ci state', () => {
  test('a missing image is reported clearly', async () => {
    const err = await preparePlan({ clusterfile, home }).catch((e) => e);
    expect(err).toBeInstanceOf(ImageNotFoundError);
    expect(err.message).toBe('image etcd-example:v1 is not in the local store');
    expect(err.hint).toContain('ci pull etcd-example:v1');
  });

  test('plan renders, saves, and --detailed-exitcode reports changes', async () => {
    await storeImage();
    const out = await run('plan', '-f', clusterfile, '--out', join(home, 'p.plan'), '--detailed-exitcode');
    expect(out).toContain('+ host 10.0.0.2 (master)');
    expect(out).toContain('Plan: 1 to add, 0 to change, 0 to destroy.');
    expect(process.exitCode).toBe(2);
    const saved = await loadPlanFile(join(home, 'p.plan'));
    expect(saved.lineage).toBeNull();
    expect(saved.actions.map((a) => a.id)).toContain('hook:init-master0:10.0.0.2');
    const json = JSON.parse(await run('plan', '-f', clusterfile, '--json'));
    expect(json.summary).toEqual({ add: 1, change: 0, destroy: 0 });
  });

  test('state list / show / force-unlock', async () => {
    const path = statePathFor('demo', home);
    const b = new LocalStateBackend(path);
    const s = createState('demo', 'BAREMETAL');
    s.master0 = '10.0.0.2';
    s.outputs = { token: 'do-not-print-me' };
    s.hosts['10.0.0.2'] = { key: '10.0.0.2', ip: '10.0.0.2', roles: ['master'], ssh: { user: 'root', port: 22 }, layers: [], hooks: {}, status: 'active' };
    await b.write(s);
    const list = await run('state', 'list', '-f', clusterfile);
    expect(list).toMatch(/10\.0\.0\.2 \*\s+10\.0\.0\.2\s+master\s+active\s+0\s+-/);
    const show = await run('state', 'show', '10.0.0.2', '--state', path);
    expect(JSON.parse(show)).toMatchObject({ key: '10.0.0.2', status: 'active' });
    expect(list + show).not.toContain('do-not-print-me');
    // Without the key that seals the outputs, the hosts can still be looked at; planning needs the outputs.
    renameSync(join(home, 'keys'), join(home, 'keys.away'));
    try {
      expect(await run('state', 'list', '-f', clusterfile)).toBe(list);
      expect(await run('state', 'show', '10.0.0.2', '-f', clusterfile)).toBe(show);
      await expect(run('plan', '-f', clusterfile)).rejects.toThrow(`state ${path} has hook outputs sealed with key`);
    } finally {
      renameSync(join(home, 'keys.away'), join(home, 'keys'));
    }
    const lock = await b.lock({ operation: 'apply' });
    const msg = await run('force-unlock', lock.info.id, '-f', clusterfile);
    expect(msg).toContain(`Removed lock ${lock.info.id}`);
    const again = await b.lock({ operation: 'apply' });
    await again.release();
    await lock.release();
  });
});

describe('ci state restore, ci state rm-host-key, and plan refusing a foreign state', () => {
  const path = statePathFor('demo', home);
  const hostEntry = (ip: string) => ({ key: ip, ip, roles: ['master'], ssh: { user: 'root', port: 22 }, layers: [], hooks: {}, status: 'active' as const });

  /** A fresh demo state written twice (so it has a backup); returns the backup's bytes. */
  async function demoWithBackup(): Promise<string> {
    rmSync(join(path, '..'), { recursive: true, force: true });
    const b = new LocalStateBackend(path);
    const s = createState('demo', 'BAREMETAL');
    s.hosts['10.0.0.2'] = { ...hostEntry('10.0.0.2'), hostKey: 'SHA256:pinned-old-key', hooks: { 'init-host': 'sha256:aa' as never } };
    s.master0 = '10.0.0.2';
    await b.write(await b.write(s));
    return readFileSync(`${path}.backup`, 'utf8');
  }

  test('plan refuses a state of another cluster, naming both and a way out', async () => {
    await storeImage();
    await demoWithBackup();
    const other = createState('other', 'BAREMETAL');
    other.hosts['10.9.9.9'] = hostEntry('10.9.9.9');
    writeFileSync(path, JSON.stringify({ ...other, serial: 3 }));
    const err = await run('plan', '-f', clusterfile).catch((e) => e);
    expect(err).toBeInstanceOf(StateIdentityError);
    // The backup tells first: its lineage is not the state's.
    expect(err.message).toContain('have different lineages');
    // Without a backup the cluster name tells.
    rmSync(`${path}.backup`);
    const err2 = await run('plan', '-f', clusterfile).catch((e) => e);
    expect(err2).toBeInstanceOf(StateIdentityError);
    expect(err2.message).toBe(`the state ${path} is the state of cluster other, but the Clusterfile is for cluster demo`);
    expect(err2.hint).toContain(`ci state restore --state ${path}`);
  });

  test('restore puts the backup back, moving the foreign state aside, and prints what it restored', async () => {
    const backupText = await demoWithBackup();
    const foreign = JSON.stringify({ ...createState('other', 'BAREMETAL'), serial: 3 });
    writeFileSync(path, foreign);
    const out = await run('state', 'restore', '-f', clusterfile);
    const aside = /Moved the state file that was there to (\S+)\.\n/.exec(out)?.[1];
    expect(aside, out).toBeDefined();
    expect(readFileSync(aside!, 'utf8')).toBe(foreign);
    const backup = JSON.parse(backupText);
    expect(out).toContain(`Restored ${path} from ${path}.backup: cluster demo, lineage ${backup.lineage}, serial ${backup.serial}, 1 host, no image applied.`);
    expect(readFileSync(path, 'utf8')).toBe(backupText);
    expect(readFileSync(`${path}.backup`, 'utf8')).toBe(backupText);
    // Plans again: the one host is known, nothing is refused.
    expect(await run('plan', '-f', clusterfile)).toContain('10.0.0.2');
  });

  test('restore refuses a backup of another cluster than the Clusterfile names, and works by --state alone', async () => {
    const otherPath = statePathFor('other', home);
    const b = new LocalStateBackend(otherPath);
    const s = await b.write(createState('other', 'BAREMETAL'));
    await b.write(s);
    rmSync(otherPath);
    const err = await run('state', 'restore', '-f', clusterfile, '--state', otherPath).catch((e) => e);
    expect(err).toBeInstanceOf(StateIdentityError);
    expect(err.message).toContain('is the state of cluster other, not of demo');
    expect(existsSync(otherPath)).toBe(false);
    const out = await run('state', 'restore', '--state', otherPath);
    expect(out).toContain(`Restored ${otherPath}`);
    expect(out).not.toContain('Moved');
  });

  test('rm-host-key removes the pinned key of a host by key, IP or name, under the lock', async () => {
    await demoWithBackup();
    const b = new LocalStateBackend(path);
    const serial = (await b.read())!.serial;
    const out = await run('state', 'rm-host-key', '10.0.0.2', '-f', clusterfile);
    expect(out).toBe(`Removed the pinned SSH host key SHA256:pinned-old-key of 10.0.0.2 from ${path}; the next apply trusts the key the host offers then and pins it.\n`);
    const after = (await b.read())!;
    expect(after.hosts['10.0.0.2'].hostKey).toBeUndefined();
    expect(after.hosts['10.0.0.2'].hooks).toEqual({ 'init-host': 'sha256:aa' });
    expect(after.serial).toBe(serial + 1);
    expect(await run('state', 'rm-host-key', '10.0.0.2', '--state', path)).toContain('No SSH host key is pinned for 10.0.0.2');
    await expect(run('state', 'rm-host-key', '10.0.0.99', '-f', clusterfile)).rejects.toThrow(/host 10\.0\.0\.99 is not in the state/);
    const lock = await b.lock({ operation: 'apply' });
    try {
      await expect(run('state', 'rm-host-key', '10.0.0.2', '-f', clusterfile)).rejects.toThrow(StateLockError);
    } finally {
      await lock.release();
    }
  });

  test('a new host that cannot be reached is a warning at plan time, not a refusal', async () => {
    rmSync(join(path, '..'), { recursive: true, force: true });
    const cf = join(home, 'Clusterfile.unreachable');
    // Nothing listens on port 1 here: the probe's one connection attempt is refused at once.
    writeFileSync(cf, `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  ssh: {passwd: not-used, port: 1}
  hosts:
  - {ips: [127.0.0.1], roles: [master]}
`);
    const prepared = await planCluster({ clusterfile: cf, home });
    expect(prepared.plan.actions.map((a) => a.id)).toContain('hook:init-master0:127.0.0.1');
    expect(prepared.warnings).toHaveLength(1);
    expect(prepared.warnings[0].host).toBe('127.0.0.1');
    expect(prepared.warnings[0].message).toMatch(/^could not check 127\.0\.0\.1 for files of another state of cluster demo \(.*ECONNREFUSED.*\); apply checks it again/);
    expect(prepared.warnings[0].message).not.toContain('not-used');
  });

  test('state list of an emptied state says there are no hosts', async () => {
    const s = { ...createState('demo', 'LOCAL'), serial: 9 };
    expect(formatStateList(s)).toBe('cluster demo (LOCAL), image (none applied), serial 9\nno hosts: the state holds none (the cluster was destroyed, or no host was made yet)\n');
  });

  test('the host-key-changed hint names a command that exists and does what it says', async () => {
    await demoWithBackup();
    const err = new HostKeyMismatchError('root@10.0.0.2:22', 'SHA256:pinned-old-key', 'SHA256:new-key', '10.0.0.2');
    const cmd = /`ci (state rm-host-key [^`]+)`/.exec(err.hint!)?.[1];
    expect(cmd).toBe('state rm-host-key 10.0.0.2 -f Clusterfile');
    // Run exactly the hinted command from the Clusterfile's directory.
    const cwd = process.cwd();
    process.chdir(home);
    try {
      expect(await run(...cmd!.split(' '))).toContain('Removed the pinned SSH host key SHA256:pinned-old-key of 10.0.0.2');
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('ci state rm', () => {
  const path = statePathFor('demo', home);
  const entry = (ip: string, roles: string[]) => ({ key: ip, ip, roles, ssh: { user: 'root', port: 22 }, layers: [], hooks: { 'init-host': 'sha256:aa' as never }, status: 'active' as const });

  async function threeHosts() {
    rmSync(join(path, '..'), { recursive: true, force: true });
    const b = new LocalStateBackend(path);
    const s = createState('demo', 'BAREMETAL');
    s.master0 = '10.0.0.2';
    s.outputs = { TOKEN: 'rm-test-t0ken-value' };
    s.hosts['10.0.0.2'] = entry('10.0.0.2', ['master']);
    s.hosts['10.0.0.5'] = { ...entry('10.0.0.5', ['node']), name: 'worker-1' };
    s.hosts['10.0.0.6'] = entry('10.0.0.6', ['node']);
    return { b, written: await b.write(s) };
  }

  test('forgets hosts by IP or name under the lock, says what it means, keeps the outputs sealed and unprinted', async () => {
    const { b, written } = await threeHosts();
    const out = await run('state', 'rm', 'worker-1', '10.0.0.6', '-f', clusterfile);
    expect(out).toBe(
      `Removed 2 hosts from the state ${path} (serial ${written.serial} -> ${written.serial + 1}):\n` +
        '  10.0.0.5 (node)\n  10.0.0.6 (node)\n' +
        'Nothing was done on the hosts: their files stay there, and ci does not clean or remove them now.\n' +
        'A forgotten host that is still in the Clusterfile is a new host to the next `ci plan` and `ci apply` (layers, init-host and its join run again).\n' +
        'One taken out of the Clusterfile is left alone, and the hosts that stay are reconfigured without it.\n',
    );
    const after = (await b.read())!;
    expect(Object.keys(after.hosts)).toEqual(['10.0.0.2']);
    expect(after.outputs).toEqual({ TOKEN: 'rm-test-t0ken-value' });
    expect(after.lineage).toBe(written.lineage);
    expect(readFileSync(path, 'utf8')).not.toContain('rm-test-t0ken-value');
    expect(out).not.toContain('rm-test-t0ken-value');
  });

  test('--dry-run changes nothing; unknown hosts and master0 alone are refused and change nothing', async () => {
    const { written } = await threeHosts();
    const bytes = readFileSync(path, 'utf8');
    const dry = await run('state', 'rm', '10.0.0.5', '--dry-run', '--state', path);
    expect(dry).toMatch(new RegExp(`^Would remove 1 host from the state ${path} \\(--dry-run: nothing changed\\):\\n  10\\.0\\.0\\.5 \\(node\\)\\n`));
    await expect(run('state', 'rm', '10.0.0.5', '10.0.0.9', '-f', clusterfile)).rejects.toThrow(`host 10.0.0.9 is not in the state ${path}`);
    await expect(run('state', 'rm', '10.0.0.2', '-f', clusterfile)).rejects.toThrow('10.0.0.2 is master0 of cluster demo: with it forgotten and 2 other hosts kept');
    expect(readFileSync(path, 'utf8')).toBe(bytes);
    expect(JSON.parse(bytes).serial).toBe(written.serial);
    // Held by another command: refused, nothing changed.
    const lock = await new LocalStateBackend(path).lock({ operation: 'apply' });
    try {
      await expect(run('state', 'rm', '10.0.0.5', '-f', clusterfile)).rejects.toThrow(StateLockError);
    } finally {
      await lock.release();
    }
    expect(readFileSync(path, 'utf8')).toBe(bytes);
  });

  test('every host at once: master0 too, and what ran on the cluster goes with them', async () => {
    const { b, written } = await threeHosts();
    const out = await run('state', 'rm', '10.0.0.2', '10.0.0.5', '10.0.0.6', '-f', clusterfile);
    expect(out).toContain('No host is left: master0, the image applied, the CMDs and apps run, and the hook outputs are forgotten too; the next apply makes the cluster anew.\n');
    const after = (await b.read())!;
    expect(after).toMatchObject({ lineage: written.lineage, serial: written.serial + 1, hosts: {}, outputs: {}, cmdsRun: [] });
    expect(after.master0).toBeUndefined();
    expect(readFileSync(path, 'utf8')).not.toContain('sealedOutputs');
  });

  test('no state: an error saying so', async () => {
    rmSync(join(path, '..'), { recursive: true, force: true });
    await expect(run('state', 'rm', '10.0.0.5', '-f', clusterfile)).rejects.toThrow(`no state in ${path}: the cluster was never applied`);
    expect(existsSync(join(path, '..'))).toBe(false);
  });
});
