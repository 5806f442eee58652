import { afterAll, describe, expect, test } from 'vitest';
import { list } from 'tar';
import { ImageStore } from '../engine/image/store.js';
import { writeLayer, type LayerEntry } from '../engine/image/layer-writer.js';
import { checkStoredLayers } from '../engine/image/layer-check.js';
import { buildConfigLayer, type ConfigLayerInput } from '../engine/config/layer.js';
import { toConfigSpec } from '../engine/clusterfile/config-spec.js';
import { ClusterfileError, TemplateError } from '../engine/kernel/errors.js';
import { tempDir, removeDir } from './helpers/tmp.js';

const home = tempDir('ci-config-layer-');
afterAll(() => removeDir(home));
const store = new ImageStore(home);

async function image(files: Record<string, string | { symlink: string }>) {
  await store.init();
  const contents = new Map<string, Buffer>();
  const entries: LayerEntry[] = [];
  const dirs = new Set<string>();
  for (const [p, v] of Object.entries(files)) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    if (typeof v === 'string') {
      contents.set(p, Buffer.from(v));
      entries.push({ type: 'file', path: p, mode: 0o640, size: Buffer.byteLength(v) });
    } else entries.push({ type: 'symlink', path: p, linkname: v.symlink });
  }
  for (const d of dirs) entries.push({ type: 'dir', path: d, mode: 0o755 });
  entries.sort((a, b) => (a.path < b.path ? -1 : 1));
  const l = await writeLayer(store, entries, contents);
  const layers = [l.digest];
  return { ref: 'cfg:test', layers, checked: await checkStoredLayers(store, { ref: 'cfg:test', layers }) };
}

const cfg = (name: string, spec: Record<string, unknown>, line = 12) => toConfigSpec(name, spec, { file: 'Clusterfile', line });

async function layerText(digest: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  await list({
    file: store.blobPath(digest as `sha256:${string}`),
    onReadEntry: (e) => {
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () => (out[e.path] = e.type === 'Directory' ? '(dir)' : Buffer.concat(chunks).toString()));
    },
  });
  return out;
}

const base = {
  'etc/app/values.yaml': 'replicas: 1\ndb:\n  host: db\n  password: old-pass-123\n',
  'etc/app/conf.json': '{"a": 1}',
  'etc/site.conf.tmpl': 'site={{ .SITE }}\nlevel={{ .LEVEL | default "info" }}\n',
  'etc/secret.yaml': 'apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {}\n',
  'conf': { symlink: 'etc/app' },
  'escape': { symlink: '/etc' },
};

describe('the config layer', () => {
  test('Configs and templates make one checked layer, unpacked after the image', async () => {
    const img = await image(base);
    const input: ConfigLayerInput = {
      store,
      image: img,
      checked: img.checked,
      env: { SITE: 'eu-1' },
      configs: [
        cfg('values', { path: 'conf/values.yaml', strategy: 'merge', data: 'replicas: 3\ndb: {password: new-pass-456}\n' }),
        cfg('json', { path: 'etc/app/conf.json', strategy: 'merge', data: { b: [1, 2] } }),
        cfg('creds', { path: 'etc/secret.yaml', process: 'value|toSecret', data: { token: 'tok-abcdef' } }),
        cfg('new', { path: 'opt/new/file.txt', data: 'hello\n' }),
      ],
    };
    const built = (await buildConfigLayer(input))!;
    expect(built.checked.steps.map((s) => s.digest)).toEqual([...img.layers, built.info.digest]);
    const files = await layerText(built.info.digest);
    expect(Object.keys(files).sort()).toEqual(['etc/app/conf.json', 'etc/app/values.yaml', 'etc/secret.yaml', 'etc/site.conf', 'opt/', 'opt/new/', 'opt/new/file.txt']);
    expect(files['etc/site.conf']).toBe('site=eu-1\nlevel=info\n');
    expect(files['etc/app/values.yaml']).toBe('replicas: 3\ndb:\n  host: db\n  password: new-pass-456\n');
    expect(JSON.parse(files['etc/app/conf.json'])).toEqual({ a: 1, b: [1, 2] });
    expect(files['etc/secret.yaml']).toContain(`token: ${Buffer.from('tok-abcdef').toString('base64')}`);
    // The diffs against the image: masked.
    const diffs = built.info.changes.map((c) => c.diff).join('\n');
    expect(built.info.changes.map((c) => [c.path, c.by])).toContainEqual(['etc/app/values.yaml', ['Config values']]);
    expect(diffs).toContain('+replicas: 3');
    for (const s of ['old-pass-123', 'new-pass-456', Buffer.from('tok-abcdef').toString('base64')]) expect(diffs).not.toContain(s);
    // Same input, same layer; an unchanged plan shows no change against it.
    const again = (await buildConfigLayer({ ...input, previous: built.info.digest }))!;
    expect(again.info.digest).toBe(built.info.digest);
    expect(again.info.changes).toEqual([]);
    // A change shows only what changed since the previous layer.
    const changed = (await buildConfigLayer({ ...input, env: { SITE: 'us-2' }, previous: built.info.digest }))!;
    expect(changed.info.digest).not.toBe(built.info.digest);
    expect(changed.info.changes.map((c) => c.path)).toEqual(['etc/site.conf']);
    expect(changed.info.changes[0].diff).toContain('-site=eu-1\n+site=us-2');
  });

  test('no Config and no template: no layer', async () => {
    const img = await image({ 'etc/a.conf': 'x\n' });
    expect(await buildConfigLayer({ store, image: img, checked: img.checked, env: {}, configs: [] })).toBeUndefined();
  });

  test('errors name the Config and its place in the Clusterfile', async () => {
    const img = await image(base);
    const run = (spec: Record<string, unknown>, env: Record<string, string> = { SITE: 'x' }) =>
      buildConfigLayer({ store, image: img, checked: img.checked, env, configs: [cfg('bad', spec, 21)] });
    await expect(run({ path: 'etc/missing.yaml', strategy: 'merge', data: 'a: 1' })).rejects.toThrow(/^Clusterfile:21: Config bad: spec\.path etc\/missing\.yaml: strategy merge needs the file in the image/);
    await expect(run({ path: 'etc/site.conf.tmpl', strategy: 'merge', data: 'a: 1' })).rejects.toThrow(ClusterfileError);
    await expect(run({ path: 'escape/passwd', data: 'x' })).rejects.toThrow(/Clusterfile:21: Config bad: .*escape -> \/etc, which leaves the rootfs/);
    await expect(run({ path: 'etc/app/values.yaml', process: 'value|toSecret', data: { a: 'b' } })).rejects.toThrow(/kind: Secret/);
    await expect(run({ path: 'etc/a', data: 'x' }, {})).rejects.toThrow(TemplateError);
    await expect(run({ path: 'etc/a', data: 'x' }, {})).rejects.toThrow(/^etc\/site\.conf\.tmpl:1: in image cfg:test: \{\{ \.SITE \}\} names SITE/);
  });
});
