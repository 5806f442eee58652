/** Building APP, APPCMDS, LAUNCH and CMDS: the app folders, one cached layer per APP, the metadata, its checks. */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { list } from 'tar';
import { buildImage } from '../engine/image/build.js';
import { mergeImages } from '../engine/image/merge.js';
import { ImageStore } from '../engine/image/store.js';
import { summarizeImage } from '../engine/image/inspect.js';
import { imageInfoFromResolved } from '../plans/image-info.js';
import { launchIdentity } from '../engine/image/apps.js';
import type { CloudImageMeta, ImageConfig } from '../engine/image/oci.js';
import { ImageMetadataError, KubefileError } from '../engine/kernel/errors.js';
import { removeDir, tempDir, writeTree, type Tree } from './helpers/tmp.js';

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) removeDir(dirs.pop()!);
});

function fresh(tree: Tree): { ctx: string; store: ImageStore } {
  const ctx = tempDir('ci-ctx-');
  const home = tempDir('ci-home-');
  dirs.push(ctx, home);
  writeTree(ctx, tree);
  return { ctx, store: new ImageStore(home) };
}

const build = (store: ImageStore, ctx: string, tag = 'apps:v1', kubefile = 'Kubefile') =>
  buildImage(store, { kubefile: join(ctx, kubefile), context: ctx, tag });

async function paths(store: ImageStore, digest: string): Promise<string[]> {
  const out: string[] = [];
  await list({ file: store.blobPath(digest as `sha256:${string}`), onReadEntry: (e) => out.push(e.path) });
  return out;
}

const meta = async (store: ImageStore, ref: string): Promise<CloudImageMeta> => (await store.resolve(ref)).config.cloudimage!;

const APPS: Tree = {
  Kubefile: [
    'FROM scratch',
    'COPY base.txt /etc/base.txt',
    'APP setup local://setup.sh',
    'APP web local://web/',
    'APP manifests local://k8s/',
    'APP chart local://charts/',
    'APP packed local://pkg/nginx-1.0.tgz',
    'APP plain local://data/',
    'APPCMDS web ["sh start.sh --port 80", "echo started"]',
    'LAUNCH ["setup", "web", "manifests", "chart", "packed"]',
  ].join('\n'),
  'base.txt': 'base\n',
  'setup.sh': { content: '#!/bin/sh\necho setup\n', mode: 0o755 },
  'web/start.sh': 'echo web\n',
  'web/index.html': '<p>hi</p>\n',
  'k8s/deploy.yaml': 'kind: Deployment\n',
  'k8s/crds/crd.yml': 'kind: CustomResourceDefinition\n',
  'k8s/svc.yaml': 'kind: Service\n',
  'charts/nginx/Chart.yaml': 'name: nginx\n',
  'charts/nginx/templates/d.yaml': 'kind: Deployment\n',
  'pkg/nginx-1.0.tgz': 'not really gzip\n',
  'data/readme.txt': 'data only\n',
};

describe('ci build: apps', () => {
  it('packs each APP in its own layer under application/apps/<name>, and records how each is launched', async () => {
    const { ctx, store } = fresh(APPS);
    const r = await build(store, ctx);
    expect(r.layers.map((l) => l.createdBy)).toEqual([
      'COPY base.txt /etc/base.txt',
      'APP setup local://setup.sh',
      'APP web local://web/',
      'APP manifests local://k8s/',
      'APP chart local://charts/',
      'APP packed local://pkg/nginx-1.0.tgz',
      'APP plain local://data/',
    ]);
    expect(await paths(store, r.layers[1].digest)).toEqual(['application/', 'application/apps/', 'application/apps/setup/', 'application/apps/setup/setup.sh']);
    expect(await paths(store, r.layers[3].digest)).toEqual(expect.arrayContaining(['application/apps/manifests/deploy.yaml', 'application/apps/manifests/crds/crd.yml']));
    const m = await meta(store, 'apps:v1');
    const byName = Object.fromEntries(m.apps!.map((a) => [a.name, a]));
    expect(m.apps!.map((a) => a.name)).toEqual(['setup', 'web', 'manifests', 'chart', 'packed', 'plain']);
    expect(byName.setup).toMatchObject({ dir: 'application/apps/setup', launch: { by: 'shell', cmds: ['sh ./setup.sh'], needs: [] } });
    expect(byName.web.launch).toEqual({ by: 'appcmds', cmds: ['sh start.sh --port 80', 'echo started'], needs: [] });
    expect(byName.manifests.launch).toEqual({
      by: 'kubectl',
      cmds: ['kubectl apply -R -f ./crds', 'kubectl apply -f ./deploy.yaml', 'kubectl apply -f ./svc.yaml'],
      needs: ['kubectl'],
    });
    expect(byName.chart.launch).toEqual({ by: 'helm', cmds: ['helm upgrade --install chart ./nginx'], needs: ['helm'] });
    expect(byName.packed.launch).toEqual({ by: 'helm', cmds: ['helm upgrade --install packed ./nginx-1.0.tgz'], needs: ['helm'] });
    expect(byName.plain.launch).toBeUndefined();
    expect(m.launch!.map((l) => l.app)).toEqual(['setup', 'web', 'manifests', 'chart', 'packed']);
    for (const l of m.launch!) expect(l.identity).toBe(launchIdentity(byName[l.app]));
    // What the planner and `ci inspect` see.
    const img = await store.resolve('apps:v1');
    expect(imageInfoFromResolved(img).launch!.map((l) => [l.app, l.dir, l.by])).toEqual([
      ['setup', 'application/apps/setup', 'shell'],
      ['web', 'application/apps/web', 'appcmds'],
      ['manifests', 'application/apps/manifests', 'kubectl'],
      ['chart', 'application/apps/chart', 'helm'],
      ['packed', 'application/apps/packed', 'helm'],
    ]);
    const summary = summarizeImage(img);
    expect(summary.apps.map((a) => a.name)).toHaveLength(6);
    expect(summary.launch).toEqual(m.launch);
  });

  it('a Chart.yaml at the top of the app installs the app folder itself', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nAPP db local://db/\nLAUNCH ["db"]\n', 'db/Chart.yaml': 'name: db\n', 'db/values.yaml': 'a: 1\n' });
    await build(store, ctx);
    expect((await meta(store, 'apps:v1')).apps![0].launch).toEqual({ by: 'helm', cmds: ['helm upgrade --install db .'], needs: ['helm'] });
  });

  it('rebuilds only the layer of the app whose file changed, and only that app gets a new launch identity', async () => {
    const { ctx, store } = fresh(APPS);
    const first = await build(store, ctx);
    const m1 = await meta(store, 'apps:v1');
    const again = await build(store, ctx, 'apps:v1b');
    expect(again.layers.every((l) => l.cached)).toBe(true);
    expect(again.digest).toBe(first.digest);
    writeFileSync(join(ctx, 'k8s', 'svc.yaml'), 'kind: Service\nmetadata: {name: changed}\n');
    const changed = await build(store, ctx, 'apps:v2');
    // Steps after a changed one are rebuilt (the cache follows the chain), but they make the same bytes: only one new layer.
    expect(changed.layers.map((l) => l.cached)).toEqual([true, true, true, false, false, false, false]);
    expect(changed.layers.map((l, i) => l.digest === first.layers[i].digest)).toEqual([true, true, true, false, true, true, true]);
    const m2 = await meta(store, 'apps:v2');
    const diff = m2.launch!.filter((l, i) => l.identity !== m1.launch![i].identity).map((l) => l.app);
    expect(diff).toEqual(['manifests']);
  });

  it('changing only APPCMDS rebuilds no layer and changes only that app\'s identity', async () => {
    const { ctx, store } = fresh(APPS);
    await build(store, ctx);
    const m1 = await meta(store, 'apps:v1');
    writeFileSync(join(ctx, 'Kubefile'), (APPS.Kubefile as string).replace('"echo started"', '"echo up"'));
    const r = await build(store, ctx, 'apps:v2');
    expect(r.layers.every((l) => l.cached)).toBe(true);
    const m2 = await meta(store, 'apps:v2');
    expect(m2.launch!.filter((l, i) => l.identity !== m1.launch![i].identity).map((l) => l.app)).toEqual(['web']);
  });

  it('CMDS adds one CMD per element, with identities like CMD', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY a /a\nCMD echo one\nCMDS ["echo two", "echo three"]\n', a: 'a\n' });
    const r = await build(store, ctx);
    expect(r.cmds.map((c) => c.cmd)).toEqual(['echo one', 'echo two', 'echo three']);
    expect(new Set(r.cmds.map((c) => c.identity)).size).toBe(3);
    expect((await meta(store, 'apps:v1')).launch).toBeUndefined();
  });

  it('an image FROM another launches the base\'s apps by name; the base\'s LAUNCH is not inherited; base CMDs are', async () => {
    const { ctx, store } = fresh({
      'Kubefile.base': 'FROM scratch\nAPP tools local://tools.sh\nCMDS ["echo base"]\n',
      'Kubefile.base2': 'FROM scratch\nAPP tools local://tools.sh\nLAUNCH ["tools"]\n',
      Kubefile: 'FROM base:v1\nAPP mine local://mine.sh\nLAUNCH ["mine", "tools"]\n',
      'Kubefile.nolaunch': 'FROM base2:v1\nCOPY mine.sh /mine.sh\n',
      'Kubefile.clash': 'FROM base:v1\nAPP tools local://mine.sh\n',
      'tools.sh': 'echo tools\n',
      'mine.sh': 'echo mine\n',
    });
    await build(store, ctx, 'base:v1', 'Kubefile.base');
    await build(store, ctx, 'base2:v1', 'Kubefile.base2');
    const child = await build(store, ctx, 'child:v1');
    expect(child.cmds.map((c) => c.cmd)).toEqual(['echo base']);
    const m = await meta(store, 'child:v1');
    expect(m.apps!.map((a) => a.name)).toEqual(['tools', 'mine']);
    expect(m.launch!.map((l) => l.app)).toEqual(['mine', 'tools']);
    await build(store, ctx, 'nolaunch:v1', 'Kubefile.nolaunch');
    const n = await meta(store, 'nolaunch:v1');
    expect(n.apps!.map((a) => a.name)).toEqual(['tools']);
    expect(n.launch).toBeUndefined();
    const err = await build(store, ctx, 'clash:v1', 'Kubefile.clash').catch((e) => e);
    expect(err).toBeInstanceOf(KubefileError);
    expect(err.message).toMatch(/Kubefile\.clash:2: APP: app "tools" is already in the base image/);
  });

  it('ci merge keeps the apps and launches of every input, and refuses two different apps of one name', async () => {
    const { ctx, store } = fresh({
      'Kubefile.a': 'FROM scratch\nAPP a local://a.sh\nLAUNCH ["a"]\n',
      'Kubefile.b': 'FROM scratch\nAPP b local://b.sh\nLAUNCH ["b"]\n',
      'Kubefile.c': 'FROM scratch\nAPP a local://b.sh\nLAUNCH ["a"]\n',
      'a.sh': 'echo a\n',
      'b.sh': 'echo b\n',
    });
    await build(store, ctx, 'a:v1', 'Kubefile.a');
    await build(store, ctx, 'b:v1', 'Kubefile.b');
    await build(store, ctx, 'c:v1', 'Kubefile.c');
    await mergeImages(store, ['a:v1', 'b:v1', 'a:v1'], 'ab:v1');
    const m = await meta(store, 'ab:v1');
    expect(m.apps!.map((x) => x.name)).toEqual(['a', 'b']);
    expect(m.launch!.map((x) => x.app)).toEqual(['a', 'b']);
    const err = await mergeImages(store, ['a:v1', 'c:v1'], 'ac:v1').catch((e) => e);
    expect(err.message).toMatch(/c:v1 and an earlier image both have an app named a/);
  });

  const refusals: { name: string; tree: Tree; message: RegExp; hint?: RegExp }[] = [
    {
      name: 'LAUNCH of an app the image does not have',
      tree: { Kubefile: 'FROM scratch\nAPP a local://a.sh\nLAUNCH ["a", "b"]\n', 'a.sh': 'x\n' },
      message: /Kubefile:3: LAUNCH: unknown app "b"/,
      hint: /the image's apps are a/,
    },
    {
      name: 'LAUNCH of an app whose files say nothing and that has no APPCMDS',
      tree: { Kubefile: 'FROM scratch\nAPP data local://data/\nLAUNCH ["data"]\n', 'data/x.txt': 'x\n' },
      message: /Kubefile:3: LAUNCH: cannot tell how to launch app "data"/,
      hint: /APPCMDS data/,
    },
    {
      name: 'an APP source outside the build context',
      tree: { Kubefile: 'FROM scratch\nAPP a local://../etc/passwd\n' },
      message: /Kubefile:2: APP a: source "\.\.\/etc\/passwd" is outside the build context/,
    },
    {
      name: 'an APP source that does not exist',
      tree: { Kubefile: 'FROM scratch\nAPP a local://missing.sh\n' },
      message: /Kubefile:2: APP a: source "missing.sh" does not exist/,
    },
    {
      name: 'an APP source through a symlink out of the context',
      tree: { Kubefile: 'FROM scratch\nAPP a local://link/\n', link: { symlink: '/etc' } },
      message: /Kubefile:2: APP a: .*symlink/,
    },
  ];
  for (const c of refusals) {
    it(`refuses ${c.name}, and stores nothing`, async () => {
      const { ctx, store } = fresh(c.tree);
      const err = await build(store, ctx).catch((e) => e);
      expect(err).toBeInstanceOf(KubefileError);
      expect(err.message).toMatch(c.message);
      if (c.hint) expect(err.hint).toMatch(c.hint);
      expect(await store.list()).toEqual([]);
    });
  }
});

describe('app metadata read from the store is checked', () => {
  /** Stores a copy of `ref` whose metadata `tamper` changed, under `name`. */
  async function tampered(store: ImageStore, ref: string, name: string, tamper: (m: any) => void): Promise<void> {
    const img = await store.resolve(ref);
    const config: ImageConfig = structuredClone(img.config);
    tamper(config.cloudimage);
    const blob = await store.putBlob(JSON.stringify(config));
    const desc = await store.putManifest({ ...img.manifest, config: { ...img.manifest.config, digest: blob.digest, size: blob.size } });
    await store.tag(name, desc);
  }

  const cases: { name: string; tamper: (m: any) => void; message: RegExp }[] = [
    { name: 'an app folder outside the rootfs', tamper: (m) => (m.apps[0].dir = '../../../etc'), message: /app setup has folder "\.\.\/\.\.\/\.\.\/etc", which is not a plain path inside the rootfs/ },
    { name: 'an absolute app folder', tamper: (m) => (m.apps[0].dir = '/etc/cron.d'), message: /not a plain path inside the rootfs/ },
    { name: 'a folder with shell characters', tamper: (m) => (m.apps[0].dir = 'application/apps/$(reboot)'), message: /not a plain path inside the rootfs/ },
    { name: 'an app name that is not a DNS label', tamper: (m) => (m.apps[0].name = 'x; rm -rf /'), message: /app name "x; rm -rf \/" is not a valid app name/ },
    { name: 'a launch of an unknown app', tamper: (m) => (m.launch[0].app = 'ghost'), message: /its launch list names "ghost", which is not one of its apps/ },
    { name: 'a launch identity that does not match', tamper: (m) => (m.apps[0].launch.cmds = ['reboot']), message: /launch identity of app setup does not match/ },
    { name: 'an unknown tool', tamper: (m) => (m.apps[0].launch.needs = ['rm']), message: /needs a tool cloudimage does not know/ },
    { name: 'apps that are not a list', tamper: (m) => (m.apps = { setup: 1 }), message: /its app list is not a list/ },
    { name: 'an app listed twice', tamper: (m) => m.apps.push(m.apps[0]), message: /app setup is listed twice/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const { ctx, store } = fresh(APPS);
      await build(store, ctx);
      await tampered(store, 'apps:v1', 'bad:v1', c.tamper);
      const err = await store.resolve('bad:v1').catch((e) => e);
      expect(err).toBeInstanceOf(ImageMetadataError);
      expect(err.message).toMatch(/^image bad:v1: /);
      expect(err.message).toMatch(c.message);
      expect(err.hint).toMatch(/rebuild it from its Kubefile/);
    });
  }
});
