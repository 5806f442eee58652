import { describe, it, expect } from 'vitest';
import { mergeImages, MergeError, MERGED_FROM } from '../engine/image/merge.js';
import { makeImage, skopeo, storeScope } from './helpers/registry.js';

const { freshStore } = storeScope();

describe('ci merge', () => {
  it("puts A's layers then B's (shared ones once) and A's CMDs then B's", async () => {
    const store = await freshStore();
    const base = { 'base.txt': 'common base' };
    const a = await makeImage(store, 'a:v1', { layers: [base, { 'a.txt': 'a' }], cmds: ['install a'], env: ['X=1', 'A=1'] });
    const b = await makeImage(store, 'b:v1', { layers: [base, { 'b.txt': 'b' }], cmds: ['install b', 'check b'], env: ['X=2'] });
    expect(a.layers[0]).toBe(b.layers[0]);

    const r = await mergeImages(store, ['a:v1', 'b:v1'], 'c:v1');
    expect(r.ref).toBe('c:v1');
    const c = await store.resolve('c:v1');
    expect(c.manifest.layers.map((l) => l.digest)).toEqual([a.layers[0], a.layers[1], b.layers[1]]);
    const ia = await store.resolve('a:v1');
    const ib = await store.resolve('b:v1');
    expect(c.config.rootfs.diff_ids).toEqual([...ia.config.rootfs.diff_ids, ib.config.rootfs.diff_ids[1]]);
    expect(c.config.cloudimage?.cmds).toEqual([...ia.config.cloudimage!.cmds, ...ib.config.cloudimage!.cmds]);
    expect(c.config.cloudimage?.layers.map((l) => l.createdBy)).toEqual(['COPY base.txt', 'COPY a.txt', 'COPY b.txt']);
    expect(c.config.history).toHaveLength(3);
    expect(c.config.config.Env).toEqual(['X=2', 'A=1']);
    expect(c.manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(c.manifest.annotations?.[MERGED_FROM]).toBe(`a:v1@${a.digest},b:v1@${b.digest}`);

    // Same inputs, same image.
    const again = await mergeImages(store, ['a:v1', 'b:v1'], 'c:v2');
    expect(again.digest).toBe(r.digest);

    // A CMD reached twice runs once.
    const twice = await mergeImages(store, ['a:v1', 'c:v1'], 'd:v1');
    const d = await store.resolve('d:v1');
    expect(d.config.cloudimage?.cmds.map((x) => x.cmd)).toEqual(['install a', 'install b', 'check b']);
    expect(twice.layers).toBe(3);

    // Standard OCI: skopeo reads the merged image from the store's layout.
    const info = JSON.parse(skopeo(['inspect', `oci:${store.root}:c:v1`]));
    expect(info.Digest).toBe(r.digest);
    expect(info.Layers).toHaveLength(3);
  });

  it('refuses fewer than two images, missing images and mixed platforms', async () => {
    const store = await freshStore();
    await makeImage(store, 'one:v1', { layers: [{ 'o.txt': 'o' }] });
    await expect(mergeImages(store, ['one:v1'], 'x:v1')).rejects.toBeInstanceOf(MergeError);
    await expect(mergeImages(store, ['one:v1', 'absent:v1'], 'x:v1')).rejects.toThrow(/absent:v1 is not in the local store/);

    const arm = await makeImage(store, 'arm:v1', { layers: [{ 'r.txt': 'r' }] });
    const img = await store.resolve('arm:v1');
    const cfg = await store.putBlob(JSON.stringify({ ...img.config, architecture: 'arm64' }));
    const desc = await store.putManifest({ ...img.manifest, config: { ...img.manifest.config, digest: cfg.digest, size: cfg.size } });
    await store.tag('arm:v1', desc);
    expect(arm.digest).not.toBe(desc.digest);
    await expect(mergeImages(store, ['one:v1', 'arm:v1'], 'x:v1')).rejects.toThrow(/linux\/amd64.*linux\/arm64/);
    expect(await store.find('x:v1')).toBeUndefined();
  });
});
