import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ImageStore } from '../engine/image/store.js';
import { MEDIA, type ImageConfig } from '../engine/image/oci.js';
import { StoreError } from '../engine/kernel/errors.js';
import type { Digest } from '../engine/kernel/digest.js';
import { removeDir, tempDir } from './helpers/tmp.js';

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) removeDir(dirs.pop()!);
});

async function storeImage(store: ImageStore, name: string, layers: string[]) {
  const blobs = [];
  for (const l of layers) blobs.push(await store.putBlob(l));
  const config: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: blobs.map((b) => b.digest) },
    history: layers.map((l) => ({ created_by: `COPY ${l}` })),
  };
  const cfg = await store.putBlob(JSON.stringify(config));
  const desc = await store.putManifest({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: cfg.digest, size: cfg.size },
    layers: blobs.map((b) => ({ mediaType: MEDIA.layerTar, digest: b.digest, size: b.size })),
  });
  await store.tag(name, desc);
  return { manifest: desc.digest, config: cfg.digest, layers: blobs.map((b) => b.digest) };
}

/** Two images sharing their first layer. */
async function twoImages() {
  const store = new ImageStore(tempDir('ci-store-'));
  dirs.push(store.home);
  await store.init();
  const v1 = await storeImage(store, 'app:v1', ['shared layer', 'v1 layer']);
  const v2 = await storeImage(store, 'app:v2', ['shared layer', 'v2 layer']);
  return { store, v1, v2 };
}

const blobsIn = (store: ImageStore) => readdirSync(join(store.root, 'blobs/sha256')).sort();

describe('image store garbage collection', () => {
  it('frees exactly the blobs no remaining name reaches', async () => {
    const { store, v1, v2 } = await twoImages();
    const r = await store.untag('app:v1');
    expect(r.removed).toEqual(['app:v1']);
    expect(r.freed.sort()).toEqual([v1.manifest, v1.config, v1.layers[1]].sort());
    expect(r.gcFailure).toBeUndefined();
    expect(blobsIn(store)).toEqual([v2.manifest, v2.config, ...v2.layers].map((d) => d.slice(7)).sort());
  });

  // Each is a real way a manifest becomes unreadable, also for root (who reads files whatever their mode).
  const damage: [string, (path: string) => void, RegExp][] = [
    ['corrupt JSON', (p) => writeFileSync(p, '{"schemaVersion": 2, "layers": [{"dig'), /cannot be read: blob sha256:[0-9a-f]{64} in the store at .* is not valid JSON$/],
    ['a directory in its place', (p) => (rmSync(p), mkdirSync(p)), /cannot be read: cannot read blob sha256:[0-9a-f]{64} in the store at .*: EISDIR: /],
    ['a missing blob', (p) => rmSync(p), /cannot be read: blob sha256:[0-9a-f]{64} is missing from the store/],
    ['JSON that is neither a manifest nor an index', (p) => writeFileSync(p, '{"hello": "world"}'), /is neither an image manifest nor an index$/],
    ['a layer without a digest', (p) => writeFileSync(p, JSON.stringify({ schemaVersion: 2, config: { digest: `sha256:${'a'.repeat(64)}` }, layers: [{ size: 1 }] })), /is neither/],
  ];
  it.each(damage)('frees nothing when a remaining manifest is unreadable (%s), and says which', async (_name, spoil, why) => {
    const { store, v2 } = await twoImages();
    spoil(store.blobPath(v2.manifest));
    const before = blobsIn(store);
    const r = await store.untag('app:v1');
    expect(r.removed).toEqual(['app:v1']); // the untag itself happened
    expect(r.freed).toEqual([]);
    expect(blobsIn(store)).toEqual(before);
    expect(r.gcFailure).toBeInstanceOf(StoreError);
    expect(r.gcFailure!.code).toBe('STORE_GC_BLOCKED');
    expect(r.gcFailure!.message).toMatch(/^no blob was freed, because the manifest (sha256:[0-9a-f]{64} )?of app:v2 /);
    expect(r.gcFailure!.message).toMatch(why);
    expect(r.gcFailure!.hint).toContain('`ci rmi`');
    expect((await store.list()).map((i) => i.ref)).toEqual(['app:v2']);
  });

  it('collects again once the damaged image is removed', async () => {
    const { store, v2 } = await twoImages();
    writeFileSync(store.blobPath(v2.manifest), 'not json');
    expect((await store.untag('app:v1')).freed).toEqual([]);
    const r = await store.untag('app:v2');
    expect(r.gcFailure).toBeUndefined();
    expect(blobsIn(store)).toEqual([]);
  });

  it('follows nested indexes: what an index names stays alive', async () => {
    const { store, v1, v2 } = await twoImages();
    const index = await store.putBlob(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [{ mediaType: MEDIA.manifest, digest: v2.manifest, size: 1 }] }));
    await store.tag('multi:v1', { mediaType: MEDIA.index, digest: index.digest, size: index.size });
    await store.untag('app:v2');
    const r = await store.untag('app:v1');
    expect(r.gcFailure).toBeUndefined();
    expect(r.freed.sort()).toEqual([v1.manifest, v1.config, v1.layers[1]].sort());
    expect(blobsIn(store)).toEqual([index.digest, v2.manifest, v2.config, ...v2.layers].map((d) => d.slice(7)).sort());
  });
});

describe('image store read errors', () => {
  it('tells "missing" from "cannot read" from "damaged"', async () => {
    const { store, v1, v2 } = await twoImages();
    rmSync(store.blobPath(v1.layers[1]));
    await expect(store.readBlob(v1.layers[1])).rejects.toMatchObject({ code: 'STORE_BLOB_MISSING', message: expect.stringContaining('is missing') });
    rmSync(store.blobPath(v1.config));
    mkdirSync(store.blobPath(v1.config));
    const unreadable = await store.readBlob(v1.config).catch((e) => e);
    expect(unreadable).toMatchObject({ code: 'STORE_UNREADABLE', message: expect.stringMatching(/^cannot read blob .*EISDIR/) });
    expect(unreadable.message).not.toContain('missing');
    // resolve reads the config through the same path.
    await expect(store.resolve('app:v1')).rejects.toMatchObject({ code: 'STORE_UNREADABLE' });
    writeFileSync(store.blobPath(v2.manifest), '{');
    await expect(store.resolve('app:v2')).rejects.toMatchObject({ code: 'STORE_DAMAGED', message: expect.stringMatching(/^manifest sha256:\w+ of app:v2 is not valid JSON$/) });
  });

  it('a path that cannot be looked up is an error, not an absent blob', async () => {
    const { store, v1 } = await twoImages();
    // blobs/sha256 made a symlink to itself: every lookup under it fails with ELOOP, for root too.
    const dir = join(store.root, 'blobs', 'sha256');
    rmSync(dir, { recursive: true });
    symlinkSync('sha256', dir);
    await expect(store.hasBlob(v1.layers[0])).rejects.toMatchObject({ code: 'STORE_UNREADABLE', message: expect.stringContaining('ELOOP') });
    await expect(store.readBlob(v1.layers[0] as Digest)).rejects.toMatchObject({ code: 'STORE_UNREADABLE' });
    await expect(store.resolve('app:v1')).rejects.toMatchObject({ code: 'STORE_UNREADABLE' });
  });

  it('a damaged index.json is reported, never taken as an empty store', async () => {
    const { store } = await twoImages();
    const path = join(store.root, 'index.json');
    writeFileSync(path, '{"manifests": [');
    await expect(store.list()).rejects.toMatchObject({ code: 'STORE_DAMAGED', message: `${path} is not valid JSON` });
    rmSync(path);
    mkdirSync(path);
    await expect(store.list()).rejects.toMatchObject({ code: 'STORE_UNREADABLE', message: expect.stringContaining('EISDIR') });
    rmSync(path, { recursive: true });
    expect(existsSync(path)).toBe(false);
    expect(await store.list()).toEqual([]); // absent is the one case that means empty
  });
});
