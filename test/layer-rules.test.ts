/**
 * The layer rules on their own: hostile layers are refused with the layer and entry named; legitimate layers give
 * the exact removals OCI semantics call for (whiteouts, opaque directories, replaced entries), whatever the order of
 * entries in the archive.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256, type Digest } from '../engine/kernel/digest.js';
import { checkLayers } from '../engine/image/layer-check.js';
import { LayerTree, UnsafeLayerError, canonicalName, type ScannedLayer } from '../engine/image/layer-tree.js';
import { HOSTILE } from './helpers/hostile-cases.js';
import { rawLayer, rawTar, type RawEntry } from './helpers/raw-layers.js';
import { removeDir, tempDir } from './helpers/tmp.js';

let dir: string;
beforeAll(() => {
  dir = tempDir('ci-layer-rules-');
});
afterAll(() => removeDir(dir));

/** Writes the layers as blobs and checks them in order, as the store would. */
async function check(layers: Buffer[], opts: { allowSetid?: boolean } = {}) {
  const digests: Digest[] = layers.map((l) => sha256(l));
  layers.forEach((l, i) => writeFileSync(join(dir, digests[i].slice(7)), l));
  return checkLayers((d) => join(dir, d.slice(7)), digests, opts);
}

const refusal = async (layers: Buffer[]): Promise<UnsafeLayerError> => {
  try {
    await check(layers);
  } catch (err) {
    if (err instanceof UnsafeLayerError) return err;
    throw err;
  }
  throw new Error('the layers were accepted');
};

describe('hostile layers are refused before anything is written', () => {
  it('has at least fifteen cases', () => expect(HOSTILE.length).toBeGreaterThanOrEqual(15));
  for (const c of HOSTILE) {
    it(c.name, async () => {
      const err = await refusal(c.layers.map((l) => rawLayer(l, { globalPax: c.globalPax })));
      expect(err.code).toBe('IMAGE_LAYER_UNSAFE');
      expect(err.where.layer).toBe(c.layer);
      if (c.entry !== undefined) expect(err.where.entry).toBe(c.entry);
      expect(err.message).toMatch(c.reason);
      expect(err.message).toContain(`layer ${c.layer} (`);
      expect(err.hint).toBeTruthy();
    });
  }

  it('refuses a truncated archive and one with a bad header checksum', async () => {
    const whole = rawTar([{ path: 'a', content: 'x'.repeat(2000) }]);
    expect((await refusal([whole.subarray(0, 1024)])).message).toMatch(/not a valid tar archive/);
    const bad = Buffer.from(whole);
    bad[10] ^= 0x20;
    expect((await refusal([bad])).message).toMatch(/not a valid tar archive|checksum/);
  });

  it('refuses layers compressed with anything but gzip', async () => {
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(64)]);
    expect((await refusal([zstd])).message).toMatch(/compressed with zstd/);
  });
});

describe('legitimate layers', () => {
  const layer = (entries: RawEntry[]) => rawLayer(entries);

  it('reads gzip and uncompressed layers, accepting "./" prefixes and trailing slashes', async () => {
    const c = await check([layer([{ path: './', type: 'Directory' }, { path: './etc/', type: 'Directory' }, { path: './etc/hosts', content: 'h' }]), rawTar([{ path: 'usr/bin/x', content: 'x', mode: 0o755 }])]);
    expect(c.steps.map((s) => s.compression)).toEqual(['gzip', 'none']);
    expect(c.steps.map((s) => s.entries)).toEqual([2, 1]);
  });

  it('turns whiteouts, opaque directories and replacements into removals of lower content only', async () => {
    const c = await check([
      layer([{ path: 'etc/', type: 'Directory' }, { path: 'etc/a', content: '1' }, { path: 'etc/b', content: '2' }, { path: 'opt/x/y', content: 'y' }, { path: 'link', type: 'SymbolicLink', linkpath: 'etc' }, { path: 'd/keep', content: 'k' }]),
      layer([
        // Entries of the same layer survive an opaque marker that comes after them in the archive.
        { path: 'opt/x/new', content: 'n' },
        { path: 'opt/x/.wh..wh..opq', content: '' },
        { path: 'etc/.wh.a', content: '' },
        { path: 'link', type: 'Directory' },
        { path: 'd', content: 'now a file' },
        { path: 'etc/.wh.never-existed', content: '' },
      ]),
    ]);
    expect(c.steps[0].remove).toEqual([]);
    expect(c.steps[1].remove).toEqual(['d', 'etc/a', 'link', 'opt/x/y']);
  });

  it('allows hard links to files of lower layers and of the same layer', async () => {
    await expect(check([layer([{ path: 'bin/busybox', content: 'b', mode: 0o755 }]), layer([{ path: 'bin/sh', type: 'Link', linkpath: 'bin/busybox' }, { path: 'x', content: 'x' }, { path: 'y', type: 'Link', linkpath: 'x' }])])).resolves.toBeDefined();
  });

  it('allows symlinks pointing anywhere, as long as nothing is written through them', async () => {
    const c = await check([layer([{ path: 'etc/resolv.conf', type: 'SymbolicLink', linkpath: '/run/systemd/resolve/resolv.conf' }, { path: 'up', type: 'SymbolicLink', linkpath: '../../..' }])]);
    expect(c.steps[0].remove).toEqual([]);
  });

  it('a symlink replaced by a directory earlier in the layer can then hold files', async () => {
    const c = await check([layer([{ path: 'lib', type: 'SymbolicLink', linkpath: '/usr/lib' }]), layer([{ path: 'lib', type: 'Directory' }, { path: 'lib/x', content: 'x' }])]);
    expect(c.steps[1].remove).toEqual(['lib']);
  });

  it('records set-ID files to strip, unless the image allows them', async () => {
    const layers = [layer([{ path: 'bin/su', content: 's', mode: 0o4755 }, { path: 'bin/wall', content: 'w', mode: 0o2755 }, { path: 'tmp', type: 'Directory', mode: 0o1777 }])];
    expect((await check(layers)).steps[0].setid).toEqual(['bin/su', 'bin/wall']);
    const allowed = await check(layers, { allowSetid: true });
    expect(allowed.steps[0].setid).toEqual([]);
    expect(allowed.allowSetid).toBe(true);
  });

  it('skips aufs bookkeeping entries', async () => {
    const c = await check([layer([{ path: '.wh..wh.plnk', type: 'Directory' }, { path: '.wh..wh.plnk/1.2', content: 'x' }, { path: 'a', content: 'a' }])]);
    expect(c.steps[0].entries).toBe(1);
  });
});

describe('the tree model with plain data', () => {
  const scanned = (digest: string, members: ScannedLayer['members'], extra: Partial<ScannedLayer> = {}): ScannedLayer => ({
    digest: sha256(digest),
    compression: 'gzip',
    members,
    whiteouts: [],
    opaques: [],
    ...extra,
  });

  it('an opaque directory drops every lower child, and a whiteout of a directory its whole subtree', () => {
    const t = new LayerTree();
    t.apply(scanned('1', [{ path: 'a/b/c', kind: 'file', mode: 0o644 }, { path: 'a/d', kind: 'file', mode: 0o644 }, { path: 'e/f', kind: 'file', mode: 0o644 }]));
    const step = t.apply(scanned('2', [{ path: 'a/b/c', kind: 'file', mode: 0o644 }], { opaques: ['a'], whiteouts: ['e'] }));
    expect(step.remove).toEqual(['a/b', 'a/d', 'e']);
    // After the whiteout, e is gone: writing e/f again is a new file, not a replacement.
    expect(t.apply(scanned('3', [{ path: 'e/f', kind: 'file', mode: 0o644 }])).remove).toEqual([]);
  });

  it('canonical names', () => {
    expect(canonicalName('./a/b/')).toBe('a/b');
    expect(canonicalName('./')).toBe('');
    expect(() => canonicalName('a//b')).toThrow(/not canonical/);
    expect(() => canonicalName('a/./b')).toThrow(/not canonical/);
    expect(() => canonicalName('a/\ufffd')).toThrow(/UTF-8/);
  });
});
