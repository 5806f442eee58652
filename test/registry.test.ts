import { describe, it, expect, beforeAll } from 'vitest';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { buildImage } from '../engine/image/build.js';
import { PROBE_BYTES } from '../engine/image/layer-writer.js';
import { ImageStore } from '../engine/image/store.js';
import { pushImage } from '../engine/registry/push.js';
import { pullImage, ensureImage } from '../engine/registry/pull.js';
import { login } from '../engine/registry/login.js';
import { authFilePath, lookupLogin } from '../engine/registry/credentials.js';
import { CiError, DigestMismatchError, RegistryError } from '../engine/kernel/errors.js';
import { reportError } from '../engine/cli/main.js';
import { register as registerLogin } from '../engine/cli/commands/login.js';
import { redact } from '../engine/kernel/redact.js';
import {
  makeImage,
  requireTools,
  skopeo,
  startCountingProxy,
  startRegistry,
  tempDir,
  type CountingProxy,
  type RunningRegistry,
  storeScope,
} from './helpers/registry.js';

const noWait = { attempts: 2, baseMs: 1, capMs: 5 };
const { defer, freshStore } = storeScope();

describe('plain HTTP registry', () => {
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let store: ImageStore;

  beforeAll(async () => {
    requireTools();
    reg = await startRegistry();
    defer(() => reg.stop());
    proxy = await startCountingProxy(reg.port);
    defer(() => proxy.stop());
    store = await freshStore();
  });

  it('pushes, pulls back the same digests, and a second push sends no blob', async () => {
    const ref = `${proxy.host}/team/app:v1`;
    const made = await makeImage(store, ref, {
      layers: [{ 'etc/app.conf': 'a=1\n' }, { 'bin/run.sh': '#!/bin/sh\necho hi\n' }],
      cmds: ['kubectl apply -f app.yaml'],
    });
    const first = await pushImage(store, ref, { insecure: true, home: store.home, retry: noWait });
    expect(first.digest).toBe(made.digest);
    expect(first.uploaded).toHaveLength(3);

    const other = await freshStore();
    const pulled = await pullImage(other, ref, { insecure: true, home: other.home, retry: noWait });
    expect(pulled.digest).toBe(made.digest);
    expect(pulled.manifest.layers.map((l) => l.digest)).toEqual(made.layers);
    expect(pulled.config.cloudimage?.cmds[0].cmd).toBe('kubectl apply -f app.yaml');
    for (const d of made.layers) expect(await other.readBlob(d)).toEqual(await store.readBlob(d));

    const mark = proxy.requests.length;
    const second = await pushImage(store, ref, { insecure: true, home: store.home, retry: noWait });
    expect(second.uploaded).toEqual([]);
    expect(second.skipped).toHaveLength(3);
    const sent = proxy.requests.slice(mark).filter((r) => r.path.includes('/blobs/uploads'));
    expect(sent).toEqual([]);
    expect(proxy.requests.slice(mark).filter((r) => r.method === 'HEAD')).toHaveLength(3);
  });

  it('uploads large blobs in chunks and mounts blobs across repositories', async () => {
    const ref = `${proxy.host}/team/big:v1`;
    const made = await makeImage(store, ref, { layers: [{ 'data.bin': randomBytes(200_000) }] });
    const mark = proxy.requests.length;
    const r = await pushImage(store, ref, { insecure: true, home: store.home, chunkSize: 64 * 1024, retry: noWait });
    expect(r.uploaded).toContain(made.layers[0]);
    const patches = proxy.requests.slice(mark).filter((q) => q.method === 'PATCH');
    expect(patches.length).toBeGreaterThanOrEqual(3);

    const other = await freshStore();
    const pulled = await pullImage(other, ref, { insecure: true, home: other.home, retry: noWait });
    expect(pulled.digest).toBe(made.digest);

    const mark2 = proxy.requests.length;
    const moved = await pushImage(store, ref, { destination: `${proxy.host}/elsewhere/big:v2`, insecure: true, home: store.home, retry: noWait });
    expect(moved.uploaded).toEqual([]);
    expect(moved.mounted.sort()).toEqual([made.layers[0], pulled.manifest.config.digest].sort());
    const mounts = proxy.requests.slice(mark2).filter((q) => q.method === 'POST');
    expect(mounts.every((q) => q.path.includes('mount=') && q.path.includes('from=team%2Fbig'))).toBe(true);
    expect(proxy.requests.slice(mark2).filter((q) => q.method === 'PUT' && q.path.includes('/blobs/'))).toEqual([]);
  });

  it('is read by skopeo, and pulls what skopeo pushed', async () => {
    const ref = `${reg.host}/interop/app:v1`;
    const made = await makeImage(store, ref, { layers: [{ 'a.txt': 'interop\n' }] });
    await pushImage(store, ref, { insecure: true, home: store.home, retry: noWait });
    const info = JSON.parse(skopeo(['inspect', '--tls-verify=false', `docker://${ref}`]));
    expect(info.Digest).toBe(made.digest);
    expect(info.Layers).toEqual(made.layers);
    const raw = JSON.parse(skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]));
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const layout = await tempDir('ci-skopeo');
    defer(() => fs.rm(layout, { recursive: true, force: true }));
    skopeo(['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:copied`]);
    const index = JSON.parse(await fs.readFile(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(made.digest);

    // The other way: skopeo pushes from our store's OCI layout, we pull.
    const src = await freshStore();
    const local = await makeImage(src, 'skopeo-src:v1', { layers: [{ 'b.txt': 'from skopeo\n' }], cmds: ['echo hi'] });
    skopeo(['copy', '--dest-tls-verify=false', `oci:${src.root}:skopeo-src:v1`, `docker://${reg.host}/by/skopeo:v1`]);
    const dst = await freshStore();
    const pulled = await pullImage(dst, `${reg.host}/by/skopeo:v1`, { insecure: true, home: dst.home, retry: noWait });
    expect(pulled.manifest.layers.map((l) => l.digest)).toEqual(local.layers);
    expect(pulled.config.cloudimage?.cmds.map((c) => c.cmd)).toEqual(['echo hi']);
  });

  it('stores a layer gzip cannot shrink as a plain tar, the same every build, and skopeo reads and copies it', async () => {
    const ctx = await tempDir('ci-plain-layer');
    defer(() => fs.rm(ctx, { recursive: true, force: true }));
    // Random bytes past the probe: gzip would save nothing. The text layer compresses well and stays gzipped.
    await fs.writeFile(join(ctx, 'blob.bin'), randomBytes(PROBE_BYTES + 300_000));
    await fs.writeFile(join(ctx, 'notes.txt'), 'the same line again\n'.repeat(5000));
    await fs.writeFile(join(ctx, 'Kubefile'), 'FROM scratch\nCOPY blob.bin /data/blob.bin\nCOPY notes.txt /data/notes.txt\n');
    const ref = `${reg.host}/plain/app:v1`;
    const built = await buildImage(store, { kubefile: join(ctx, 'Kubefile'), context: ctx, tag: ref });
    const manifest = JSON.parse((await store.readBlob(built.digest)).toString('utf8'));
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar',
      'application/vnd.oci.image.layer.v1.tar+gzip',
    ]);
    const [plain, zipped] = built.layers.map((l) => l.digest);
    const head = (await store.readBlob(plain)).subarray(0, 2);
    expect([head[0], head[1]]).not.toEqual([0x1f, 0x8b]);
    expect((await store.readBlob(zipped)).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    // A plain tar's diff ID is its own digest.
    const config = JSON.parse((await store.readBlob(manifest.config.digest)).toString('utf8'));
    expect(config.rootfs.diff_ids[0]).toBe(plain);
    expect(config.rootfs.diff_ids[1]).not.toBe(zipped);

    // Built again from nothing: the same layers.
    const again = await freshStore();
    const rebuilt = await buildImage(again, { kubefile: join(ctx, 'Kubefile'), context: ctx, tag: 'plain:again', noCache: true });
    expect(rebuilt.layers.map((l) => l.digest)).toEqual([plain, zipped]);

    await pushImage(store, ref, { insecure: true, home: store.home, retry: noWait });
    const info = JSON.parse(skopeo(['inspect', '--tls-verify=false', `docker://${ref}`]));
    expect(info.Layers).toEqual([plain, zipped]);
    const layout = await tempDir('ci-skopeo-plain');
    defer(() => fs.rm(layout, { recursive: true, force: true }));
    skopeo(['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:copied`]);
    // skopeo gzips a plain layer on its way into a layout; the content it read is still ours (its diff ID).
    const blob = async (d: string) => JSON.parse(await fs.readFile(join(layout, 'blobs', 'sha256', d.slice(7)), 'utf8'));
    const copiedIndex = JSON.parse(await fs.readFile(join(layout, 'index.json'), 'utf8'));
    const copied = await blob(copiedIndex.manifests[0].digest);
    expect((await blob(copied.config.digest)).rootfs.diff_ids).toEqual(config.rootfs.diff_ids);
    const other = await freshStore();
    const pulled = await pullImage(other, ref, { insecure: true, home: other.home, retry: noWait });
    expect(pulled.manifest.layers.map((l) => l.digest)).toEqual([plain, zipped]);
  });

  it('detects a corrupted blob and leaves no half image or temp file in the store', async () => {
    const ref = `${reg.host}/team/corrupt:v1`;
    const made = await makeImage(store, ref, { layers: [{ 'x.txt': 'good bytes\n' }, { 'y.txt': 'more good bytes\n' }] });
    await pushImage(store, ref, { insecure: true, home: store.home, retry: noWait });
    const victim = made.layers[1];
    const data = await fs.readFile(reg.blobDataPath(victim));
    data[data.length - 5] ^= 0xff;
    await fs.writeFile(reg.blobDataPath(victim), data);

    const dst = await freshStore();
    const err = await pullImage(dst, ref, { insecure: true, home: dst.home, retry: noWait }).catch((e) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(await dst.find(ref)).toBeUndefined();
    expect(await dst.hasBlob(victim)).toBe(false);
    expect(await fs.readdir(dst.tmpDir)).toEqual([]);
    await expect(ensureImage(dst, ref, { insecure: true, home: dst.home, retry: noWait })).rejects.toBeInstanceOf(DigestMismatchError);
  });

  it('retries transient registry failures with backoff', async () => {
    const flaky = await startCountingProxy(reg.port, { match: (m, p) => m === 'PUT' && p.includes('/blobs/uploads/'), times: 2 });
    defer(() => flaky.stop());
    const ref = `${flaky.host}/team/flaky:v1`;
    const made = await makeImage(store, ref, { layers: [{ 'f.txt': 'flaky' }] });
    const retries: string[] = [];
    const r = await pushImage(store, ref, {
      insecure: true,
      home: store.home,
      concurrency: 1,
      retry: { attempts: 4, baseMs: 1, capMs: 5, onRetry: (err: any) => retries.push(err.code) },
    });
    expect(r.digest).toBe(made.digest);
    expect(retries).toEqual(['REGISTRY_UNAVAILABLE', 'REGISTRY_UNAVAILABLE']);
    const dst = await freshStore();
    expect((await pullImage(dst, ref, { insecure: true, home: dst.home, retry: noWait })).digest).toBe(made.digest);
  });

  it('refuses to push a local-only name and reports a missing image clearly', async () => {
    await makeImage(store, 'localonly:v1', { layers: [{ 'z.txt': 'z' }] });
    const err = await pushImage(store, 'localonly:v1', { insecure: true }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.code).toBe('REGISTRY_LOCAL_REFERENCE');
    expect(err.message).toContain('localonly:v1');
    const missing = await pullImage(store, `${reg.host}/nope/nothing:v1`, { insecure: true, home: store.home, retry: noWait }).catch((e) => e);
    expect(missing.code).toBe('REGISTRY_NOT_FOUND');
    expect(missing.message).toContain(reg.host);
  });

  it('ensureImage pulls only when the image is missing', async () => {
    const ref = `${proxy.host}/team/ensure:v1`;
    const made = await makeImage(store, ref, { layers: [{ 'e.txt': 'ensure' }] });
    await pushImage(store, ref, { insecure: true, home: store.home, retry: noWait });
    const dst = await freshStore();
    const a = await ensureImage(dst, ref, { insecure: true, home: dst.home, retry: noWait });
    expect(a.digest).toBe(made.digest);
    const mark = proxy.requests.length;
    const b = await ensureImage(dst, ref, { insecure: true, home: dst.home, retry: noWait });
    expect(b.digest).toBe(made.digest);
    expect(proxy.requests.length).toBe(mark);
  });
});

describe('TLS registry with htpasswd', () => {
  let reg: RunningRegistry;
  let store: ImageStore;
  const password = 'S3cret-' + randomBytes(6).toString('hex');

  beforeAll(async () => {
    requireTools();
    reg = await startRegistry({ tls: true, htpasswd: { alice: password } });
    defer(() => reg.stop());
    store = await freshStore();
  });

  it('rejects a wrong password with an error naming the registry, through the CLI too', async () => {
    const err = await login(reg.host, { username: 'alice', password: 'wrong-password' }, { caFile: reg.caFile }, store.home).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.code).toBe('REGISTRY_UNAUTHORIZED');
    expect(err.message).toContain(reg.host);
    expect(err.message).not.toContain('wrong-password');
    await expect(fs.access(authFilePath(store.home))).rejects.toThrow();

    const program = new Command('ci').exitOverride();
    registerLogin(program);
    const prev = process.env.CI_HOME;
    process.env.CI_HOME = store.home;
    const writes: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    (process.stderr as any).write = (s: string) => (writes.push(String(s)), true);
    let code: number;
    try {
      await program.parseAsync(['login', reg.host, '-u', 'alice', '-p', 'bad-' + password, '--ca-file', reg.caFile!], { from: 'user' });
      code = 0;
    } catch (e) {
      code = reportError(e, false);
    } finally {
      (process.stderr as any).write = orig;
      if (prev === undefined) delete process.env.CI_HOME;
      else process.env.CI_HOME = prev;
    }
    expect(code).not.toBe(0);
    const text = writes.join('');
    expect(text).toContain(`registry ${reg.host} rejected the credentials of user "alice"`);
    expect(text).not.toContain('bad-' + password);
  });

  it('logs in (file mode 0600), pushes and pulls with --ca-file, and fails clearly without it', async () => {
    const path = await login(reg.host, { username: 'alice', password }, { caFile: reg.caFile }, store.home);
    expect((await fs.stat(path)).mode & 0o777).toBe(0o600);
    expect(redact(`pw ${password}`)).not.toContain(password);
    const stored = await lookupLogin(reg.host, { home: store.home });
    expect(stored.credentials?.username).toBe('alice');
    expect(stored.tls.caFile).toBe(reg.caFile);

    const ref = `${reg.host}/secure/app:v1`;
    const made = await makeImage(store, ref, { layers: [{ 's.txt': 'secure' }] });
    // The CA file remembered at login is used.
    const pushed = await pushImage(store, ref, { home: store.home, retry: noWait });
    expect(pushed.uploaded).toHaveLength(2);

    const dst = await freshStore();
    const noCa = await pullImage(dst, ref, { home: dst.home, credentials: { username: 'alice', password }, retry: noWait }).catch((e) => e);
    expect(noCa).toBeInstanceOf(CiError);
    expect(noCa.code).toBe('REGISTRY_TLS');
    expect(noCa.hint).toContain('--ca-file');

    const anon = await pullImage(dst, ref, { home: dst.home, caFile: reg.caFile, retry: noWait }).catch((e) => e);
    expect(anon.code).toBe('REGISTRY_UNAUTHORIZED');
    expect(anon.message).toContain(reg.host);

    const pulled = await pullImage(dst, ref, { home: dst.home, caFile: reg.caFile, credentials: { username: 'alice', password }, retry: noWait });
    expect(pulled.digest).toBe(made.digest);

    const certDir = await tempDir('ci-certs');
    defer(() => fs.rm(certDir, { recursive: true, force: true }));
    await fs.copyFile(reg.caFile!, join(certDir, 'ca.crt'));
    const info = JSON.parse(skopeo(['inspect', '--cert-dir', certDir, '--creds', `alice:${password}`, `docker://${ref}`]));
    expect(info.Digest).toBe(made.digest);
  });

  it("falls back to docker's config.json for credentials", async () => {
    const dockerDir = await tempDir('ci-docker');
    defer(() => fs.rm(dockerDir, { recursive: true, force: true }));
    const auth = Buffer.from(`alice:${password}`).toString('base64');
    await fs.writeFile(join(dockerDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));
    const prev = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = dockerDir;
    try {
      const dst = await freshStore();
      const ref = `${reg.host}/secure/app:v1`;
      const pulled = await pullImage(dst, ref, { home: dst.home, caFile: reg.caFile, retry: noWait });
      expect(pulled.ref).toBe(ref);
    } finally {
      if (prev === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = prev;
    }
  });
});
