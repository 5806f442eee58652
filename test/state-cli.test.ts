import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register as registerPlan } from '../engine/cli/commands/plan.js';
import { register as registerState } from '../engine/cli/commands/state.js';
import { ImageStore } from '../engine/image/store.js';
import { MEDIA, type ImageConfig } from '../engine/image/oci.js';
import { LocalStateBackend, createState, statePathFor } from '../state/index.js';
import { preparePlan } from '../plans/prepare.js';
import { loadPlanFile } from '../plans/planfile.js';
import { ImageNotFoundError } from '../engine/errors.js';

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
  const layer = await store.putBlob('layer-bytes');
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
    layers: [{ mediaType: MEDIA.layerTar, digest: layer.digest, size: layer.size }],
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
