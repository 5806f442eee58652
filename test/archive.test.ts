import { describe, it, expect, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { ImageStore } from '../engine/image/store.js';
import { saveImages, loadImages, ArchiveError } from '../engine/image/archive.js';
import { DigestMismatchError } from '../engine/kernel/errors.js';
import { makeImage, skopeo, tempDir } from './helpers/registry.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

async function scratch(prefix: string): Promise<string> {
  const d = await tempDir(prefix);
  cleanups.push(() => fs.rm(d, { recursive: true, force: true }));
  return d;
}

async function freshStore(): Promise<ImageStore> {
  const store = new ImageStore(await scratch('ci-home'));
  await store.init();
  return store;
}

async function listTar(file: string): Promise<string[]> {
  const names: string[] = [];
  await tar.t({ file, onReadEntry: (e) => names.push(e.path) });
  return names;
}

describe('OCI archives', () => {
  it('saves several images with shared layers once, which skopeo reads and load restores', async () => {
    const store = await freshStore();
    const shared = { 'base/os.txt': 'shared base layer\n' };
    const a = await makeImage(store, 'registry.example.com:5000/team/a:v1', { layers: [shared, { 'a.txt': 'a' }], cmds: ['echo a'] });
    const b = await makeImage(store, 'team/b:v2', { layers: [shared, { 'b.txt': 'b' }] });
    expect(a.layers[0]).toBe(b.layers[0]);

    const out = join(await scratch('ci-out'), 'images.tar');
    const saved = await saveImages(store, ['registry.example.com:5000/team/a:v1', 'team/b:v2'], out);
    expect(saved.images.map((i) => i.digest)).toEqual([a.digest, b.digest]);
    const names = await listTar(out);
    const blobs = names.filter((n) => /^blobs\/sha256\/[a-f0-9]{64}$/.test(n));
    // 2 manifests + 2 configs + 3 distinct layers.
    expect(blobs).toHaveLength(7);
    expect(new Set(blobs).size).toBe(blobs.length);
    expect(names).toContain('oci-layout');
    expect(names).toContain('index.json');

    const info = JSON.parse(skopeo(['inspect', `oci-archive:${out}:team/b:v2`]));
    expect(info.Digest).toBe(b.digest);
    expect(info.Layers).toEqual(b.layers);

    const dst = await freshStore();
    const loaded = await loadImages(dst, out);
    expect(loaded.images).toEqual([
      { ref: 'registry.example.com:5000/team/a:v1', digest: a.digest },
      { ref: 'team/b:v2', digest: b.digest },
    ]);
    const img = await dst.resolve('registry.example.com:5000/team/a:v1');
    expect(img.config.cloudimage?.cmds.map((c) => c.cmd)).toEqual(['echo a']);
    for (const d of a.layers) expect(await dst.readBlob(d)).toEqual(await store.readBlob(d));
    expect(await fs.readdir(dst.tmpDir)).toEqual([]);
  });

  it('rejects an archive with a corrupted blob and names nothing', async () => {
    const store = await freshStore();
    const made = await makeImage(store, 'team/c:v1', { layers: [{ 'c.txt': 'content that will be damaged' }] });
    const work = await scratch('ci-corrupt');
    const good = join(work, 'good.tar');
    await saveImages(store, ['team/c:v1'], good);
    const unpacked = join(work, 'x');
    await fs.mkdir(unpacked);
    await tar.x({ file: good, cwd: unpacked });
    const victim = join(unpacked, 'blobs', 'sha256', made.layers[0].slice(7));
    const bytes = await fs.readFile(victim);
    bytes[10] ^= 0xff;
    await fs.writeFile(victim, bytes);
    const bad = join(work, 'bad.tar');
    await tar.c({ file: bad, cwd: unpacked }, ['oci-layout', 'index.json', 'blobs']);

    const dst = await freshStore();
    await expect(loadImages(dst, bad)).rejects.toBeInstanceOf(DigestMismatchError);
    expect(await dst.list()).toEqual([]);
    expect(await dst.hasBlob(made.layers[0])).toBe(false);
    expect(await fs.readdir(dst.tmpDir)).toEqual([]);

    await fs.writeFile(join(work, 'junk.tar'), 'not a tar at all');
    await expect(loadImages(dst, join(work, 'junk.tar'))).rejects.toBeInstanceOf(ArchiveError);
    await expect(loadImages(dst, join(work, 'missing.tar'))).rejects.toThrow(/cannot read the archive/);
  });

  it('loads an archive written by skopeo', async () => {
    const store = await freshStore();
    const made = await makeImage(store, 'team/d:v1', { layers: [{ 'd.txt': 'd' }] });
    const out = join(await scratch('ci-out'), 'skopeo.tar');
    skopeo(['copy', `oci:${store.root}:team/d:v1`, `oci-archive:${out}:team/d:v1`]);
    const dst = await freshStore();
    const loaded = await loadImages(dst, out);
    expect(loaded.images).toEqual([{ ref: 'team/d:v1', digest: made.digest }]);
  });
});
