/**
 * COPY and ADD, built by `ci build` and by `buildah bud` from the same Kubefiles and contexts: every case's root
 * filesystem (paths, types, modes, owners, symlink targets, contents) and config (Env, Labels) must be the same.
 * Times are not compared. The one documented difference in the trees: the mount points buildah's own RUN leaves
 * in the base image (/dev, /proc, /sys, /run, /etc/hosts, /etc/hostname, /etc/resolv.conf), which a RUN of
 * `ci build`, running on the build machine, never makes. In the config, buildah adds its io.buildah.version label
 * and a default PATH to the Env of an image that sets none (`ci build` leaves PATH to the hosts' commands). Cases
 * may list further documented differences (`known`), which must then be exactly what differs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { buildImage } from '../engine/image/build.js';
import { ImageStore } from '../engine/image/store.js';
import { KubefileError } from '../engine/kernel/errors.js';
import { BASE, CASES, type CopyCase } from './copy-cases.js';
import { writeFixture } from './helpers/context-fixture.js';
import { isRoot } from './helpers/lab.js';
import { diffModels, modelFromDir, modelFromLayers, type RootfsModel } from './helpers/rootfs-model.js';

const run = promisify(execFile);

function buildahAvailable(): boolean {
  const present = existsSync('/usr/bin/buildah');
  if (isRoot && present) return true;
  if (process.env.CI === 'true') throw new Error('the COPY/ADD comparison needs root and buildah (scripts/setup.sh installs it); CI=true forbids skipping it');
  return false;
}

const BUILDAH_RUN_MOUNTS = new Set(['dev', 'proc', 'sys', 'run', 'etc/hosts', 'etc/hostname', 'etc/resolv.conf']);
const BASE_REF = 'localhost/copy-base:v1';
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Side {
  model?: RootfsModel;
  env?: string[];
  labels?: Record<string, string>;
  error?: string;
}

interface Outcome {
  ours: Side;
  buildah?: Side;
}

describe.skipIf(!buildahAvailable())('COPY and ADD match buildah', () => {
  let dir: string;
  let store: ImageStore;
  let results: Promise<Outcome>[] = [];
  let buildahArgs: string[];
  let buildahEnv: NodeJS.ProcessEnv;
  let policy: string;

  const buildah = async (...args: string[]) => (await run('buildah', [...buildahArgs, ...args], { env: buildahEnv, maxBuffer: 64 << 20 })).stdout;

  async function buildahSide(ctx: string, tag: string, ignorefile?: string): Promise<Side> {
    try {
      await buildah('bud', '--isolation', 'chroot', '--pull=never', '--signature-policy', policy, '-q', ...(ignorefile ? ['--ignorefile', ignorefile] : []), '-f', join(ctx, 'Kubefile'), '-t', tag, ctx);
    } catch (err) {
      return { error: String((err as { stderr?: string }).stderr ?? err) };
    }
    const ctr = (await buildah('from', '--pull=never', '--signature-policy', policy, tag)).trim();
    try {
      const mnt = (await buildah('mount', ctr)).trim();
      const model = await modelFromDir(mnt);
      const config = JSON.parse(await buildah('inspect', '--type', 'image', tag)).OCIv1?.config ?? {};
      const labels = { ...(config.Labels ?? {}) };
      delete labels['io.buildah.version'];
      const env = ((config.Env ?? []) as string[]).filter((e) => e !== DEFAULT_PATH);
      return { model, env, labels };
    } finally {
      await buildah('umount', ctr).catch(() => {});
      await buildah('rm', ctr).catch(() => {});
    }
  }

  async function oursSide(ctx: string, tag: string, c: CopyCase): Promise<Side> {
    try {
      const built = await buildImage(store, { kubefile: join(ctx, 'Kubefile'), context: ctx, tag, allowSetid: c.allowSetid });
      const img = await store.resolve(built.ref);
      const model = await modelFromLayers(img.manifest.layers.map((l) => store.blobPath(l.digest)));
      return { model, env: img.config.config.Env ?? [], labels: img.config.config.Labels ?? {} };
    } catch (err) {
      if (err instanceof KubefileError) return { error: err.message };
      throw err;
    }
  }

  async function runCase(c: CopyCase, i: number): Promise<Outcome> {
    const ctx = join(dir, 'cases', String(i));
    writeFixture(ctx, c.context);
    writeFileSync(join(ctx, 'Kubefile'), c.kubefile.replace('{{BASE}}', BASE_REF));
    const tag = `localhost/copy-case-${i}:v1`;
    const ours = await oursSide(ctx, tag, c);
    if (c.refused && c.buildah !== 'refuses') return { ours };
    const ignorefile = existsSync(join(ctx, '.kubefileignore')) ? join(ctx, '.kubefileignore') : undefined;
    return { ours, buildah: await buildahSide(ctx, tag, ignorefile) };
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ci-copy-diff-'));
    store = new ImageStore(join(dir, 'home'));
    policy = join(dir, 'policy.json');
    writeFileSync(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const registries = join(dir, 'registries.conf');
    writeFileSync(registries, 'unqualified-search-registries = []\n');
    buildahArgs = ['--root', join(dir, 'buildah', 'root'), '--runroot', join(dir, 'buildah', 'run'), '--storage-driver', 'vfs'];
    buildahEnv = { ...process.env, CONTAINERS_REGISTRIES_CONF: registries, BUILDAH_ISOLATION: 'chroot', BUILDAH_LAYERS: 'false' };
    const baseCtx = join(dir, 'base');
    writeFixture(baseCtx, BASE.context);
    mkdirSync(baseCtx, { recursive: true });
    writeFileSync(join(baseCtx, 'Kubefile'), BASE.kubefile);
    await buildImage(store, { kubefile: join(baseCtx, 'Kubefile'), context: baseCtx, tag: BASE_REF });
    await buildah('bud', '--isolation', 'chroot', '--pull=never', '--signature-policy', policy, '-q', '-f', join(baseCtx, 'Kubefile'), '-t', BASE_REF, baseCtx);
    const limit = pLimit(3);
    results = CASES.map((c, i) => limit(() => runCase(c, i)));
    // Failures are reported by each case's test; none may go unhandled meanwhile.
    for (const r of results) r.catch(() => {});
  });

  afterAll(async () => {
    if (!dir) return;
    await Promise.allSettled(results);
    if (buildahArgs) {
      await buildah('rm', '--all').catch(() => {});
      await buildah('rmi', '--all', '--force').catch(() => {});
      await run('umount', ['-R', join(dir, 'buildah')]).catch(() => {});
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('the base image is the same, except for the mount points of buildah RUN', async () => {
    const ours = await store.resolve(BASE_REF);
    const a = await modelFromLayers(ours.manifest.layers.map((l) => store.blobPath(l.digest)));
    const ctr = (await buildah('from', '--pull=never', '--signature-policy', policy, BASE_REF)).trim();
    try {
      const b = await modelFromDir((await buildah('mount', ctr)).trim());
      expect(diffModels(a, b, ['ci build', 'buildah'], BUILDAH_RUN_MOUNTS)).toEqual([]);
      expect(a.has('opt/gone')).toBe(false);
      expect(a.has('etc/old.conf')).toBe(false);
    } finally {
      await buildah('umount', ctr).catch(() => {});
      await buildah('rm', ctr).catch(() => {});
    }
  });

  it.each(CASES.map((c, i) => [c.name, i] as const))('%s', async (_name, i) => {
    const c = CASES[i];
    const { ours, buildah: theirs } = await results[i];
    if (c.refused) {
      expect(ours.error, 'ci build must refuse this Kubefile').toMatch(c.refused);
      if (c.buildah === 'refuses') expect(theirs?.error, 'buildah refuses it too').toBeTruthy();
      return;
    }
    expect(ours.error, 'ci build').toBeUndefined();
    expect(theirs?.error, 'buildah').toBeUndefined();
    const diff = diffModels(ours.model!, theirs!.model!, ['ci build', 'buildah'], c.kubefile.includes('{{BASE}}') ? BUILDAH_RUN_MOUNTS : new Set());
    expect(diff, `root filesystems differ:\n${diff.join('\n')}`).toEqual(c.known ?? []);
    expect(ours.env).toEqual(theirs!.env);
    expect(ours.labels).toEqual(theirs!.labels);
  });
});
