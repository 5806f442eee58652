/**
 * `ci build` with a FROM image that is not in the store: pulled from a real registry (Debian's docker-registry on
 * loopback; plain HTTP, and TLS with htpasswd), stored once and reused, refreshed by --pull, chosen by --platform
 * from a multi-platform index.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { buildImage } from '../engine/image/build.js';
import { MEDIA } from '../engine/image/oci.js';
import { ImageStore } from '../engine/image/store.js';
import { pushImage } from '../engine/registry/push.js';
import { runCli, type CliResult } from './helpers/cli.js';
import { requireTools, startCountingProxy, startRegistry, storeScope, type CountingProxy, type RunningRegistry } from './helpers/registry.js';
import { removeDir, tempDir, writeTree, type Tree } from './helpers/tmp.js';

const { defer } = storeScope();
const noWait = { attempts: 2, baseMs: 1, capMs: 5 };
const ok = (r: CliResult, what: string) => expect(r.code, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);

function dir(prefix: string, tree: Tree = {}): string {
  const d = writeTree(tempDir(prefix), tree);
  defer(async () => removeDir(d));
  return d;
}

const ci = (home: string, args: string[], input?: string) => runCli(args, { env: { CI_HOME: home }, input });
const indexOf = (home: string) => (existsSync(join(home, 'images/index.json')) ? readFileSync(join(home, 'images/index.json'), 'utf8') : '');

const BASE: Tree = { Kubefile: 'FROM scratch\nENV BASE_NAME=one\nCOPY base.txt /base.txt\n', 'base.txt': 'from the base\n' };
/** The COPY source is named by the base's ENV: the check before the build must read the base's config. */
const child = (from: string): Tree => ({ Kubefile: `FROM ${from}\nCOPY app-\${BASE_NAME}.txt /app.txt\n`, 'app-one.txt': 'app\n' });

describe('FROM an image of a plain-HTTP registry', () => {
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let baseLayer: string;
  const author = dir('ci-home-author-');

  beforeAll(async () => {
    requireTools();
    reg = await startRegistry();
    defer(() => reg.stop());
    proxy = await startCountingProxy(reg.port);
    defer(() => proxy.stop());
    const base = `${proxy.host}/team/base:v1`;
    ok(await ci(author, ['build', '-q', '-t', base, dir('ci-ctx-base-', BASE)]), 'build base');
    ok(await ci(author, ['push', '--insecure', base]), 'push base');
    baseLayer = (await ci(author, ['inspect', '--format', 'layers', base])).stdout.trim();
    ok(await ci(author, ['rmi', base]), 'rmi base');
    expect((await ci(author, ['images', '-q'])).stdout).toBe('');
  });

  it('pulls it once, uses the cached copy with the registry gone, and --pull then fails naming the line', async () => {
    const home = dir('ci-home-');
    const from = `${proxy.host}/team/base:v1`;
    const ctx = dir('ci-ctx-', child(from));
    const mark = proxy.requests.length;
    const first = await ci(home, ['build', '--insecure', '-t', 'app:v1', ctx]);
    ok(first, 'first build');
    const layers = (await ci(home, ['inspect', '--format', 'layers', 'app:v1'])).stdout.trim().split('\n');
    expect(layers).toHaveLength(2);
    expect(layers[0]).toBe(baseLayer);
    expect(proxy.requests.slice(mark).filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${baseLayer}`))).toHaveLength(1);
    const images = await ci(home, ['images']);
    expect(images.stdout).toMatch(new RegExp(`\\n${proxy.host.replace(/\./g, '\\.')}/team/base\\s+v1\\s`));

    // The registry is unreachable from now on: the stored base serves the next build.
    await proxy.stop();
    ok(await ci(home, ['build', '--insecure', '-t', 'app:v2', ctx]), 'second build, registry gone');
    const before = indexOf(home);
    const refreshed = await ci(home, ['build', '--pull', '--insecure', '-t', 'app:v3', ctx]);
    expect(refreshed.code).toBe(1);
    expect(refreshed.stderr).toMatch(new RegExp(`^error: \\S*Kubefile:1: FROM ${from}: cannot pull it: cannot reach registry ${proxy.host}: ECONNREFUSED\\n`));
    expect(indexOf(home)).toBe(before);
  });

  it('a build with the base in the store sends no request; --pull asks for the manifest again, not the blobs it has', async () => {
    const counted = await startCountingProxy(reg.port);
    defer(() => counted.stop());
    const home = dir('ci-home-');
    const ctx = dir('ci-ctx-', child(`${counted.host}/team/base:v1`));
    ok(await ci(home, ['build', '--insecure', '-t', 'app:v1', ctx]), 'first build');
    const mark = counted.requests.length;
    expect(mark).toBeGreaterThan(0);
    ok(await ci(home, ['build', '--insecure', '-t', 'app:v2', ctx]), 'cached build');
    expect(counted.requests.slice(mark)).toEqual([]);
    ok(await ci(home, ['build', '--pull', '--insecure', '-t', 'app:v3', ctx]), 'build with --pull');
    const seen = counted.requests.slice(mark);
    expect(seen.some((r) => r.method === 'GET' && r.path === '/v2/team/base/manifests/v1')).toBe(true);
    expect(seen.filter((r) => r.path.endsWith(`/blobs/${baseLayer}`))).toEqual([]);
    expect((await new ImageStore(home).resolve('app:v3')).manifest.layers[0].digest).toBe(baseLayer);
  });

  it('an unknown image and missing COPY sources: every error on its own line, exit 1, nothing stored', async () => {
    const home = dir('ci-home-');
    const from = `${reg.host}/team/nothere:v1`;
    const ctx = dir('ci-ctx-', { Kubefile: `FROM ${from}\nCOPY missing /x\nRUN true\nCOPY also-missing /y\n` });
    const r = await ci(home, ['build', '--insecure', '-t', 'app:v1', ctx]);
    expect(r.code).toBe(1);
    const file = join(ctx, 'Kubefile');
    const lines = r.stderr.split('\n');
    expect(lines).toHaveLength(8);
    expect(lines[0]).toBe(`error: ${file}:1: FROM ${from}: cannot pull it: ${from} was not found in registry ${reg.host}`);
    expect(lines[1]).toBe('hint: check the repository name and tag');
    expect(lines[2]).toMatch(new RegExp(`^error: ${file}:2: COPY source "missing" does not exist`));
    expect(lines[3]).toMatch(/^hint: sources are paths relative to the build context/);
    expect(lines[4]).toMatch(new RegExp(`^error: ${file}:4: COPY source "also-missing" does not exist`));
    expect(lines[5]).toMatch(/^hint: sources are paths relative to the build context/);
    expect(lines.slice(6)).toEqual([`error: 3 errors in ${file}; nothing was built`, '']);
    expect(r.stdout).toBe('');
    expect(indexOf(home)).toBe('');
  });

  it('without --insecure, the plain-HTTP registry is refused with the flag to use', async () => {
    const home = dir('ci-home-');
    const ctx = dir('ci-ctx-', child(`${reg.host}/team/base:v1`));
    const r = await ci(home, ['build', '-t', 'app:v1', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^error: \\S*Kubefile:1: FROM ${reg.host}/team/base:v1: cannot pull it: ${reg.host} did not answer in TLS.*\\nhint: pass --insecure `));
    expect(indexOf(home)).toBe('');
  });
});

describe('FROM an image of a TLS registry with a login', () => {
  const USER = 'builder';
  const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;
  let reg: RunningRegistry;
  let from: string;

  beforeAll(async () => {
    requireTools();
    reg = await startRegistry({ tls: true, htpasswd: { [USER]: PASSWORD } });
    defer(() => reg.stop());
    from = `${reg.host}/team/base:v1`;
    const author = dir('ci-home-author-');
    const store = new ImageStore(author);
    const ctx = dir('ci-ctx-base-', BASE);
    await buildImage(store, { kubefile: join(ctx, 'Kubefile'), context: ctx, tag: from });
    await pushImage(store, from, { caFile: reg.caFile, credentials: { username: USER, password: PASSWORD }, home: author, retry: noWait });
  });

  it('--ca-file reaches it, a login from `ci login` opens it', async () => {
    const home = dir('ci-home-');
    const ctx = dir('ci-ctx-', child(from));
    const noCa = await ci(home, ['build', '-t', 'app:v1', ctx]);
    expect(noCa.code).toBe(1);
    expect(noCa.stderr).toMatch(new RegExp(`^error: \\S*Kubefile:1: FROM ${from}: cannot pull it: TLS handshake with ${reg.host} failed: .*\\nhint: pass --ca-file `));
    const noLogin = await ci(home, ['build', '--ca-file', reg.caFile!, '-t', 'app:v1', ctx]);
    expect(noLogin.code).toBe(1);
    expect(noLogin.stderr).toMatch(new RegExp(`^error: \\S*Kubefile:1: FROM ${from}: cannot pull it: registry ${reg.host} requires a login\\nhint: run \`ci login ${reg.host} -u USER --password-stdin\``));
    expect(indexOf(home)).toBe('');
    ok(await ci(home, ['login', reg.host, '-u', USER, '--password-stdin', '--ca-file', reg.caFile!], PASSWORD), 'login');
    const built = await ci(home, ['build', '-t', 'app:v1', ctx]);
    ok(built, 'build after login');
    expect(built.stderr).not.toContain(PASSWORD);
    expect((await new ImageStore(home).resolve(from)).config.config.Env).toEqual(['BASE_NAME=one']);
  });
});

describe('FROM a multi-platform image', () => {
  let reg: RunningRegistry;
  const platforms: Record<string, string> = {};
  let multi: string;

  beforeAll(async () => {
    requireTools();
    reg = await startRegistry();
    defer(() => reg.stop());
    const author = dir('ci-home-author-');
    const store = new ImageStore(author);
    const ctx = dir('ci-ctx-base-', { Kubefile: 'FROM scratch\nCOPY ${ARCH}.txt /arch.txt\n', 'amd64.txt': 'amd64\n', 'arm64.txt': 'arm64\n' });
    const manifests = [];
    for (const architecture of ['amd64', 'arm64']) {
      const ref = `${reg.host}/team/multi:${architecture}`;
      const built = await buildImage(store, { kubefile: join(ctx, 'Kubefile'), context: ctx, tag: ref, platform: { os: 'linux', architecture } });
      await pushImage(store, ref, { insecure: true, home: author, retry: noWait });
      platforms[architecture] = built.layers[0].digest;
      const img = await store.resolve(ref);
      manifests.push({ mediaType: MEDIA.manifest, digest: img.digest, size: img.manifestSize, platform: { os: 'linux', architecture } });
    }
    // The index goes in through the distribution API, as `docker manifest push` or buildx would send it.
    const res = await fetch(`http://${reg.host}/v2/team/multi/manifests/v1`, {
      method: 'PUT',
      headers: { 'Content-Type': MEDIA.index },
      body: JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests }),
    });
    expect(res.status).toBe(201);
    multi = `${reg.host}/team/multi:v1`;
  });

  it('--platform chooses the matching image of the index; a platform it lacks is listed against what it offers', async () => {
    expect(platforms.amd64).not.toBe(platforms.arm64);
    const home = dir('ci-home-');
    const ctx = dir('ci-ctx-', { Kubefile: `FROM ${multi}\nRUN echo "$TARGETARCH" > built-for\n` });
    ok(await ci(home, ['build', '--insecure', '--platform', 'linux/arm64', '-t', 'app:arm', ctx]), 'arm64 build');
    const store = new ImageStore(home);
    const img = await store.resolve('app:arm');
    expect(img.manifest.layers[0].digest).toBe(platforms.arm64);
    expect([img.config.os, img.config.architecture]).toEqual(['linux', 'arm64']);
    expect((await store.resolve(multi)).config.architecture).toBe('arm64');

    const other = dir('ci-home-');
    const before = indexOf(other);
    const r = await ci(other, ['build', '--insecure', '--platform', 'linux/riscv64', '-t', 'app:riscv', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^error: \\S*Kubefile:1: FROM ${multi}: cannot pull it: ${multi} has no image for linux/riscv64 \\(it offers: linux/amd64, linux/arm64\\)\\nhint: choose one of those with --platform\\n$`),
    );
    expect(indexOf(other)).toBe(before);

    // The stored base is arm64: an amd64 build says so and how to get the other one.
    const mismatch = await ci(home, ['build', '--insecure', '--platform', 'linux/amd64', '-t', 'app:amd', ctx]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/FROM \S+: the image in the store is for linux\/arm64, but the build is for linux\/amd64\nhint: build with --platform linux\/arm64, or add --pull to fetch linux\/amd64 from /);
    ok(await ci(home, ['build', '--pull', '--insecure', '--platform', 'linux/amd64', '-t', 'app:amd', ctx]), 'amd64 build with --pull');
    expect((await store.resolve('app:amd')).manifest.layers[0].digest).toBe(platforms.amd64);
  });
});
