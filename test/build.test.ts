import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { list, extract } from 'tar';
import { buildImage, type BuildOptions } from '../engine/image/build.js';
import { ImageStore } from '../engine/image/store.js';
import { BuildStepError, KubefileError, KubefileErrors, UsageError } from '../engine/kernel/errors.js';
import { removeDir, tempDir, writeTree, type Tree } from './helpers/tmp.js';
import { injectImage, rawLayer, rawTar } from './helpers/raw-layers.js';

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

function build(store: ImageStore, ctx: string, extra: Partial<BuildOptions> = {}) {
  return buildImage(store, { kubefile: join(ctx, 'Kubefile'), context: ctx, tag: 'app:v1', ...extra });
}

async function layerEntries(store: ImageStore, digest: string): Promise<{ path: string; mode: number; type: string; uid: number; mtime: number }[]> {
  const out: { path: string; mode: number; type: string; uid: number; mtime: number }[] = [];
  await list({
    file: store.blobPath(digest as `sha256:${string}`),
    onReadEntry: (e) => out.push({ path: e.path, mode: e.mode ?? 0, type: e.type, uid: e.uid ?? -1, mtime: e.mtime?.getTime() ?? -1 }),
  });
  return out;
}

const APP: Tree = {
  Kubefile: [
    'FROM scratch',
    'ARG VERSION=1.0',
    'ENV APP_VERSION=$VERSION',
    'LABEL team=infra',
    'COPY bin/ /usr/local/bin/',
    'COPY conf/*.conf /etc/app/',
    'RUN mkdir -p var/lib/app && echo "$APP_VERSION" > var/lib/app/version',
    'CMD echo started',
  ].join('\n'),
  'bin/tool': { content: '#!/bin/sh\necho tool\n', mode: 0o755 },
  'conf/a.conf': 'a=1\n',
  'conf/b.conf': 'b=2\n',
  'conf/skip.txt': 'not matched\n',
};

describe('ci build', () => {
  it('builds the same digests in two different directories and stores', async () => {
    const a = fresh(APP);
    const b = fresh(APP);
    const ra = await build(a.store, a.ctx);
    const rb = await build(b.store, b.ctx);
    expect(ra.layers.map((l) => l.digest)).toEqual(rb.layers.map((l) => l.digest));
    expect(ra.digest).toBe(rb.digest);
    expect(ra.layers).toHaveLength(3);
    expect(ra.cmds).toHaveLength(1);
  });

  it('records env, labels, CMD identities and the instruction of each layer', async () => {
    const { ctx, store } = fresh(APP);
    const r = await build(store, ctx, { buildArgs: { VERSION: '2.5' } });
    const img = await store.resolve('app:v1');
    expect(img.config.config.Env).toEqual(['APP_VERSION=2.5']);
    expect(img.config.config.Labels).toEqual({ team: 'infra' });
    expect(img.config.cloudimage?.layers.map((l) => l.createdBy)).toEqual([
      'COPY bin/ /usr/local/bin/',
      'COPY conf/*.conf /etc/app/',
      'RUN mkdir -p var/lib/app && echo "$APP_VERSION" > var/lib/app/version',
    ]);
    expect(r.cmds[0].cmd).toBe('echo started');
    expect(r.cmds[0].identity).toMatch(/^sha256:[0-9a-f]{64}$/);
    const files = await layerEntries(store, r.layers[1].digest);
    expect(files.map((f) => f.path)).toEqual(['etc/', 'etc/app/', 'etc/app/a.conf', 'etc/app/b.conf']);
    const run = await layerEntries(store, r.layers[2].digest);
    expect(run.find((f) => f.path === 'var/lib/app/version')).toBeTruthy();
  });

  it('keeps executable bits, zeroes owners and times', async () => {
    const { ctx, store } = fresh(APP);
    const r = await build(store, ctx);
    const entries = await layerEntries(store, r.layers[0].digest);
    const tool = entries.find((e) => e.path === 'usr/local/bin/tool')!;
    expect(tool.mode & 0o777).toBe(0o755);
    expect(entries.every((e) => e.uid === 0 && e.mtime === 0)).toBe(true);
  });

  it('rebuilds only the layer whose copied file changed and the layers after it', async () => {
    const { ctx, store } = fresh(APP);
    const first = await build(store, ctx);
    writeFileSync(join(ctx, 'conf/a.conf'), 'a=changed\n');
    const second = await build(store, ctx);
    expect(second.layers[0]).toMatchObject({ digest: first.layers[0].digest, cached: true });
    expect(second.layers[1].digest).not.toBe(first.layers[1].digest);
    expect(second.layers[1].cached).toBe(false);
    expect(second.layers[2].cached).toBe(false);
    // The RUN output is the same, so its layer digest is too: only the COPY layer's bytes differ.
    expect(second.layers[2].digest).toBe(first.layers[2].digest);
    expect(second.cmds[0].identity).not.toBe(first.cmds[0].identity);
    // A file matched by nothing does not touch the cache.
    writeFileSync(join(ctx, 'conf/skip.txt'), 'still not matched\n');
    const third = await build(store, ctx);
    expect(third.layers.every((l) => l.cached)).toBe(true);
    const nocache = await build(store, ctx, { noCache: true });
    expect(nocache.layers.every((l) => !l.cached)).toBe(true);
    expect(nocache.digest).toBe(third.digest);
  });

  it('a build arg changes the RUN that sees it', async () => {
    const { ctx, store } = fresh(APP);
    const a = await build(store, ctx);
    const b = await build(store, ctx, { buildArgs: { VERSION: '9' } });
    // ENV takes the argument, so every later step's key changes; the COPY layers rebuild to the same bytes.
    expect(b.layers[0].cached || b.layers[1].cached || b.layers[2].cached).toBe(false);
    expect(b.layers[0].digest).toBe(a.layers[0].digest);
    expect(b.layers[1].digest).toBe(a.layers[1].digest);
    expect(b.layers[2].digest).not.toBe(a.layers[2].digest);
  });

  it('records deletions as whiteouts', async () => {
    const { ctx, store } = fresh({
      Kubefile: 'FROM scratch\nCOPY tree /\nRUN rm -f etc/gone.conf && rm -rf opt/olddir\n',
      'tree/etc/gone.conf': 'x',
      'tree/etc/kept.conf': 'y',
      'tree/opt/olddir/f': 'z',
    });
    const r = await build(store, ctx);
    const paths = (await layerEntries(store, r.layers[1].digest)).map((e) => e.path);
    expect(paths).toContain('etc/.wh.gone.conf');
    expect(paths).toContain('opt/.wh.olddir');
    expect(paths).not.toContain('etc/kept.conf');
    expect(paths).not.toContain('opt/olddir/.wh.f');
  });

  it('FROM an image in the store inherits its layers, env and CMDs', async () => {
    const { ctx, store } = fresh({
      Kubefile: 'FROM scratch\nENV BASE=1\nCOPY base.txt /base.txt\nCMD echo base\n',
      'base.txt': 'base',
      'app/Kubefile': 'FROM app:v1\nCOPY app.txt /app.txt\nRUN test -f base.txt\nCMD echo app\n',
      'app/app.txt': 'app',
    });
    const base = await build(store, ctx);
    const derived = await buildImage(store, { kubefile: join(ctx, 'app/Kubefile'), context: join(ctx, 'app'), tag: 'app:v2' });
    expect(derived.layers[0].digest).toBe(base.layers[0].digest);
    expect(derived.layers).toHaveLength(2); // the RUN changed nothing: no layer
    expect(derived.cmds.map((c) => c.cmd)).toEqual(['echo base', 'echo app']);
    expect((await store.resolve('app:v2')).config.config.Env).toEqual(['BASE=1']);
  });

  it('a failing RUN shows its output and exit code, and names no image', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY f /f\nRUN echo boom-output >&2; exit 3\n', f: 'x' });
    const err = await build(store, ctx).catch((e) => e);
    expect(err).toBeInstanceOf(BuildStepError);
    expect(err.message).toMatch(/Kubefile:3: RUN .* failed with exit code 3/);
    expect(err.message).toContain('boom-output');
    expect(await store.list()).toEqual([]);
  });

  const traversal: [string, Tree, RegExp][] = [
    ['../', { Kubefile: 'FROM scratch\nCOPY ../secret /x\n' }, /outside the build context/],
    // As Docker reads it: a leading / is the context's root, never this machine's.
    ['absolute path', { Kubefile: 'FROM scratch\nCOPY /etc/passwd /x\n' }, /COPY source "\/etc\/passwd" does not exist in the build context/],
    ['escaping symlink', { Kubefile: 'FROM scratch\nCOPY link /x\n', link: { symlink: '/etc/passwd' } }, /followed inside the context it leads to "etc\/passwd", which does not exist/],
    ['symlink climbing out', { Kubefile: 'FROM scratch\nCOPY link /x\n', link: { symlink: '../../../etc/passwd' } }, /followed inside the context it leads to "etc\/passwd", which does not exist/],
    ['symlinked directory', { Kubefile: 'FROM scratch\nCOPY d/passwd /x\n', d: { symlink: '/etc' } }, /followed inside the context it leads to "etc\/passwd", which does not exist/],
    ['missing source', { Kubefile: 'FROM scratch\nCOPY nope /x\n' }, /"nope" does not exist/],
    ['glob with no match', { Kubefile: 'FROM scratch\nCOPY *.none /x/\n' }, /matches nothing/],
    ['excluded source', { Kubefile: 'FROM scratch\nCOPY secret /x\n', secret: 's', '.dockerignore': 'secret\n' }, /COPY source "secret" is not in the build context: \.dockerignore excludes it/],
    ['several sources to a file name', { Kubefile: 'FROM scratch\nCOPY a b /x\n', a: 'a', b: 'b' }, /COPY has 2 sources \(a, b\), so the destination must be a directory/],
    ['unknown --chown user', { Kubefile: 'FROM scratch\nCOPY --chown=app a /x\n', a: 'a' }, /--chown: user "app" is not in the image's \/etc\/passwd/],
    ['bad --chmod', { Kubefile: 'FROM scratch\nCOPY --chmod=u+x a /x\n', a: 'a' }, /--chmod=u\+x is not an octal mode/],
    ['ADD of a URL', { Kubefile: 'FROM scratch\nADD http://example.com/a.tgz /x/\n' }, /ADD source "http:\/\/example\.com\/a\.tgz" is a URL; nothing is downloaded during a build/],
  ];
  it.each(traversal)('refuses COPY %s, and writes nothing', async (_n, tree, re) => {
    const { ctx, store } = fresh(tree);
    const err = await build(store, ctx).catch((e) => e);
    expect(err).toBeInstanceOf(KubefileError);
    expect(err.message).toMatch(/Kubefile:2: /);
    expect(err.message).toMatch(re);
    expect(err.hint ?? '').not.toMatch(/^$/);
    expect(readdirSync(store.home)).toEqual([]);
  });

  it('keeps symlinks inside a copied directory as they are, wherever they point', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY d/ /x/\n', 'd/real': 'r', 'd/alias': { symlink: 'real' }, 'd/up': { symlink: '../../..' } });
    const r = await build(store, ctx);
    const entries = await layerEntries(store, r.layers[0].digest);
    expect(entries.find((x) => x.path === 'x/alias')?.type).toBe('SymbolicLink');
    expect(entries.find((x) => x.path === 'x/up')?.type).toBe('SymbolicLink');
  });

  it('COPY file . and COPY . . put files in the image root', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY imageList .\nCOPY . /ctx\nCOPY . .\n', imageList: 'x', 'd/y': 'y', '.dockerignore': 'Kubefile\n' });
    const r = await build(store, ctx);
    expect((await layerEntries(store, r.layers[0].digest)).map((e) => e.path)).toEqual(['imageList']);
    expect((await layerEntries(store, r.layers[1].digest)).map((e) => e.path)).toEqual(['ctx/', 'ctx/.dockerignore', 'ctx/d/', 'ctx/d/y', 'ctx/imageList']);
    expect((await layerEntries(store, r.layers[2].digest)).map((e) => e.path)).toEqual(['.dockerignore', 'd/', 'd/y', 'imageList']);
  });

  it('a file copied onto a directory of the base image goes into it, and the next RUN sees both', async () => {
    const base = fresh({ Kubefile: 'FROM scratch\nCOPY m /manifests\n', 'm/a.yaml': 'a' });
    await build(base.store, base.ctx, { tag: 'base:v1' });
    const ctx = tempDir('ci-ctx-');
    dirs.push(ctx);
    writeTree(ctx, { Kubefile: 'FROM base:v1\nCOPY imageList manifests\nRUN test -f manifests/a.yaml && test -f manifests/imageList\n', imageList: 'img' });
    const r = await build(base.store, ctx);
    expect((await layerEntries(base.store, r.layers[1].digest)).map((e) => e.path)).toEqual(['manifests/imageList']);
  });

  it('plans a COPY after a RUN against what the RUN made', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY a /a\nRUN mkdir opt && mkdir opt/app\nCOPY a /opt/app\n', a: 'a' });
    const r = await build(store, ctx);
    expect((await layerEntries(store, r.layers[2].digest)).map((e) => e.path)).toEqual(['opt/app/a']);
  });

  it('--chown and --chmod change the layer and its cache key', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY a /a\n', a: 'a' });
    const plain = await build(store, ctx);
    writeFileSync(join(ctx, 'Kubefile'), 'FROM scratch\nCOPY --chown=1000:1001 --chmod=0600 a /a\n');
    const owned = await build(store, ctx);
    expect(owned.layers[0].cached).toBe(false);
    expect(owned.layers[0].digest).not.toBe(plain.layers[0].digest);
    const [e] = await layerEntries(store, owned.layers[0].digest);
    expect(e).toMatchObject({ path: 'a', mode: 0o600, uid: 1000 });
    // The ignore file's effect is part of the key too.
    writeFileSync(join(ctx, 'Kubefile'), 'FROM scratch\nCOPY . /c/\n');
    const all = await build(store, ctx);
    writeFileSync(join(ctx, '.kubefileignore'), 'a\n.kubefileignore\n');
    const some = await build(store, ctx);
    expect(some.layers[0].cached).toBe(false);
    expect((await layerEntries(store, some.layers[0].digest)).map((x) => x.path)).toEqual(['c/', 'c/Kubefile']);
    expect(all.layers[0].digest).not.toBe(some.layers[0].digest);
  });

  it('.kubefileignore wins over .dockerignore', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY . /c/\n', a: 'a', b: 'b', '.dockerignore': 'a\n', '.kubefileignore': 'b\nKubefile\n.*ignore\n' });
    const r = await build(store, ctx);
    expect((await layerEntries(store, r.layers[0].digest)).map((x) => x.path)).toEqual(['c/', 'c/a']);
  });

  it('a bad pattern in the ignore file is reported at its line', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nCOPY . /c/\n', '.dockerignore': '# ok\nfoo[\n' });
    const err = await build(store, ctx).catch((e) => e);
    expect(err).toBeInstanceOf(KubefileError);
    expect(err.message).toMatch(/\.dockerignore:2: unterminated \[ in "foo\["/);
  });

  it('ADD unpacks a gzip tar, and refuses an archive entry that escapes, naming line and entry, writing nothing', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM scratch\nADD app.tgz /opt/app/\n', 'src/bin/app': { content: '#!/bin/sh\n', mode: 0o755 } });
    execFileSync('tar', ['-czf', join(ctx, 'app.tgz'), '-C', join(ctx, 'src'), 'bin']);
    const r = await build(store, ctx);
    expect((await layerEntries(store, r.layers[0].digest)).map((e) => [e.path, e.mode])).toEqual([
      ['opt/', 0o755],
      ['opt/app/', 0o755],
      ['opt/app/bin/', 0o755],
      ['opt/app/bin/app', 0o755],
    ]);
    const bad = fresh({ Kubefile: 'FROM scratch\nCOPY a /a\nADD evil.tar /x/\n', a: 'a' });
    writeFileSync(join(bad.ctx, 'evil.tar'), rawTar([{ path: 'ok', content: 'x' }, { path: 'a/../../../etc/cron.d/x', content: 'x' }]));
    const err = await build(bad.store, bad.ctx).catch((e) => e);
    expect(err).toBeInstanceOf(KubefileError);
    expect(err.message).toMatch(/Kubefile:3: ADD archive "evil\.tar": entry "a\/\.\.\/\.\.\/\.\.\/etc\/cron\.d\/x": the entry name climbs out of the destination through "\.\."/);
    expect(readdirSync(bad.store.home)).toEqual([]);
  });

  it('an undeclared --build-arg is refused', async () => {
    const { ctx, store } = fresh(APP);
    await expect(build(store, ctx, { buildArgs: { NOPE: '1' } })).rejects.toBeInstanceOf(UsageError);
  });

  it('skopeo reads the store as an OCI layout', async () => {
    const { ctx, store } = fresh(APP);
    const r = await build(store, ctx);
    const out = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${store.root}:app:v1`], { encoding: 'utf8' }));
    expect(out.Digest).toBe(r.digest);
    expect(out.Layers).toEqual(r.layers.map((l) => l.digest));
    expect(out.Labels).toEqual({ team: 'infra' });
    const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${store.root}:app:v1`], { encoding: 'utf8' }));
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });

  it('rmi frees only the blobs no other image uses', async () => {
    const { ctx, store } = fresh(APP);
    const a = await build(store, ctx);
    writeFileSync(join(ctx, 'conf/a.conf'), 'a=changed\n');
    await build(store, ctx, { tag: 'app:v2' });
    const before = readdirSync(join(store.root, 'blobs/sha256')).length;
    const { freed } = await store.untag('app:v1');
    expect(freed).toContain(a.digest);
    expect(freed).toContain(a.layers[1].digest);
    expect(freed).not.toContain(a.layers[0].digest);
    expect(readdirSync(join(store.root, 'blobs/sha256')).length).toBe(before - freed.length);
    expect(JSON.parse(readFileSync(join(store.root, 'index.json'), 'utf8')).manifests).toHaveLength(1);
  });
});

describe('ci build and the layer rules', () => {
  it('records an explicit set-ID allowance in the image, and none by default', async () => {
    const tree: Tree = { Kubefile: 'FROM scratch\nCOPY su /bin/su\n', su: { content: 'su\n', mode: 0o4755 } };
    const plain = fresh(tree);
    await build(plain.store, plain.ctx);
    expect((await plain.store.resolve('app:v1')).config.cloudimage?.allowSetid).toBeUndefined();
    const allowed = fresh(tree);
    await build(allowed.store, allowed.ctx, { allowSetid: true });
    expect((await allowed.store.resolve('app:v1')).config.cloudimage?.allowSetid).toBe(true);
    // The bit itself stays in the layer either way; hosts strip it unless the image allows it.
    const [digest] = (await plain.store.resolve('app:v1')).manifest.layers.map((l) => l.digest);
    expect((await layerEntries(plain.store, digest)).find((e) => e.path === 'bin/su')?.mode).toBe(0o4755);
  });

  it('gives RUN a working copy where absolute symlinks keep their targets', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM base:v1\nRUN readlink etc/resolv.conf > seen\n' });
    await injectImage(store, 'base:v1', [rawLayer([{ path: 'etc/resolv.conf', type: 'SymbolicLink', linkpath: '/run/resolv.conf' }])]);
    const r = await build(store, ctx);
    const entries = await layerEntries(store, r.layers[1].digest);
    expect(entries.map((e) => e.path)).toContain('seen');
    const root = tempDir('ci-x-');
    dirs.push(root);
    execFileSync('tar', ['-xzf', store.blobPath(r.layers[1].digest), '-C', root]);
    expect(readFileSync(join(root, 'seen'), 'utf8')).toBe('/run/resolv.conf\n');
  });
});

/** The files of a layer, unpacked into a temp dir: path -> content. */
async function layerFiles(store: ImageStore, digest: string): Promise<Record<string, string>> {
  const dir = tempDir('ci-layer-');
  dirs.push(dir);
  await extract({ file: store.blobPath(digest as `sha256:${string}`), cwd: dir });
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else out[p] = readFileSync(join(dir, p), 'utf8');
    }
  };
  walk('');
  return out;
}

describe('ci build: every problem at once', () => {
  it('reports each missing COPY source and a FROM not in the store, and writes nothing', async () => {
    const { ctx, store } = fresh({
      Kubefile: ['FROM nothere:v1', 'COPY missing-one /a', 'COPY ok.txt /b', 'COPY missing-two /c', 'COPY *.none /d/'].join('\n'),
      'ok.txt': 'ok\n',
    });
    const err = await build(store, ctx).catch((e) => e);
    expect(err).toBeInstanceOf(KubefileErrors);
    const all = (err as KubefileErrors).errors;
    expect(all.map((e) => e.location.line)).toEqual([1, 2, 4, 5]);
    expect(all[0].message).toMatch(/Kubefile:1: FROM nothere:v1: image is not in the local store$/);
    expect(all[1].message).toMatch(/Kubefile:2: COPY source "missing-one" does not exist/);
    expect(all[2].message).toMatch(/Kubefile:4: COPY source "missing-two" does not exist/);
    expect(all[3].message).toMatch(/Kubefile:5: .*matches nothing/);
    expect(readdirSync(store.home)).toEqual([]);
  });

  it('a FROM that expands to nothing, or to a bad reference, is located', async () => {
    const { ctx, store } = fresh({ Kubefile: 'ARG BASE\nFROM ${BASE}\n' });
    const empty = await build(store, ctx).catch((e) => e);
    expect(empty).toBeInstanceOf(KubefileError);
    expect(empty.message).toMatch(/Kubefile:2: FROM names no image once its variables are expanded$/);
    const bad = await build(store, ctx, { buildArgs: { BASE: 'Not/Valid' } }).catch((e) => e);
    expect(bad.message).toMatch(/Kubefile:2: FROM "Not\/Valid" is not an image reference: name component "Not"/);
  });

  it('names every undeclared --build-arg at once', async () => {
    const { ctx, store } = fresh(APP);
    const err = await build(store, ctx, { buildArgs: { NOPE: '1', ALSO: '2', VERSION: '3' } }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/^--build-arg NOPE, ALSO are not declared by any ARG in /);
  });
});

describe('ci build --platform', () => {
  const PLATFORM_TREE: Tree = {
    Kubefile: [
      'FROM scratch',
      'COPY bin/${ARCH}/tool /usr/bin/tool',
      'COPY bin/${TARGETARCH}${TARGETVARIANT}/tool /usr/bin/tool-target',
      'RUN echo "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|$ARCH|$BUILDOS" > platform',
    ].join('\n'),
    'bin/arm64/tool': 'arm64 tool\n',
    'bin/arm/tool': 'arm tool\n',
    'bin/armv7/tool': 'armv7 tool\n',
    'bin/amd64/tool': 'amd64 tool\n',
  };

  it('sets ARCH and TARGET* for COPY and RUN, and the platform of the config and the store', async () => {
    const { ctx, store } = fresh(PLATFORM_TREE);
    const r = await build(store, ctx, { platform: { os: 'linux', architecture: 'arm64' } });
    const files = Object.assign({}, ...(await Promise.all(r.layers.map((l) => layerFiles(store, l.digest)))));
    expect(files['usr/bin/tool']).toBe('arm64 tool\n');
    expect(files['usr/bin/tool-target']).toBe('arm64 tool\n');
    expect(files['platform']).toBe('linux/arm64|linux|arm64||arm64|linux\n');
    const img = await store.resolve('app:v1');
    expect([img.config.os, img.config.architecture, img.config.variant]).toEqual(['linux', 'arm64', undefined]);
    const index = JSON.parse(readFileSync(join(store.root, 'index.json'), 'utf8'));
    expect(index.manifests[0].platform).toEqual({ os: 'linux', architecture: 'arm64' });

    const v7 = await build(store, ctx, { tag: 'app:arm', platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    const v7files = Object.assign({}, ...(await Promise.all(v7.layers.map((l) => layerFiles(store, l.digest)))));
    expect(v7files['usr/bin/tool']).toBe('arm tool\n');
    expect(v7files['usr/bin/tool-target']).toBe('armv7 tool\n');
    expect(v7files['platform']).toBe('linux/arm/v7|linux|arm|v7|arm|linux\n');
    expect((await store.resolve('app:arm')).config).toMatchObject({ os: 'linux', architecture: 'arm', variant: 'v7' });
  });

  it("defaults to this machine's platform", async () => {
    const { ctx, store } = fresh(PLATFORM_TREE);
    await build(store, ctx);
    const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch];
    expect((await store.resolve('app:v1')).config.architecture).toBe(arch ?? process.arch);
  });

  it('ARCH is an argument with the platform as its default: ARG ARCH=… and --build-arg ARCH=… replace it, ARG TARGETARCH keeps it', async () => {
    const tree: Tree = { Kubefile: 'FROM scratch\nARG ARCH=from-kubefile\nARG TARGETARCH\nRUN echo "$ARCH $TARGETARCH" > out\n' };
    const { ctx, store } = fresh(tree);
    const platform = { os: 'linux', architecture: 'arm64' };
    const byDefault = await build(store, ctx, { platform });
    expect((await layerFiles(store, byDefault.layers[0].digest)).out).toBe('from-kubefile arm64\n');
    const byFlag = await build(store, ctx, { platform, buildArgs: { ARCH: 'from-flag' } });
    expect((await layerFiles(store, byFlag.layers[0].digest)).out).toBe('from-flag arm64\n');
    // Without an ARG, --build-arg ARCH needs no declaration (it is predefined) and the config still follows --platform.
    const plain = fresh({ Kubefile: 'FROM scratch\nRUN echo "$ARCH" > out\n' });
    const r = await build(plain.store, plain.ctx, { platform, buildArgs: { ARCH: 'aarch64' } });
    expect((await layerFiles(plain.store, r.layers[0].digest)).out).toBe('aarch64\n');
    expect((await plain.store.resolve('app:v1')).config.architecture).toBe('arm64');
  });

  it('refuses a base in the store made for another platform, naming both', async () => {
    const { ctx, store } = fresh({ Kubefile: 'FROM base:v1\nRUN true\n', base: 'x' });
    const baseCtx = fresh({ Kubefile: 'FROM scratch\nCOPY f /f\n', f: 'f\n' });
    await buildImage(store, { kubefile: join(baseCtx.ctx, 'Kubefile'), context: baseCtx.ctx, tag: 'base:v1', platform: { os: 'linux', architecture: 'arm64' } });
    const before = readFileSync(join(store.root, 'index.json'), 'utf8');
    const err = await build(store, ctx, { platform: { os: 'linux', architecture: 's390x' } }).catch((e) => e);
    expect(err).toBeInstanceOf(KubefileError);
    expect(err.message).toMatch(/Kubefile:1: FROM base:v1: the image in the store is for linux\/arm64, but the build is for linux\/s390x$/);
    expect(err.hint).toBe('build with --platform linux/arm64, or use a base made for linux/s390x');
    expect(readFileSync(join(store.root, 'index.json'), 'utf8')).toBe(before);
    const ok = await build(store, ctx, { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    expect(ok.layers.length).toBeGreaterThan(0);
  });
});

describe('ci build --label and --annotation', () => {
  it('labels are added over the Kubefile LABELs; annotations go into the manifest', async () => {
    const { ctx, store } = fresh(APP);
    await build(store, ctx, { labels: { team: 'ops', 'org.example/tier': 'gold' }, annotations: { 'org.opencontainers.image.source': 'https://example.com/app' } });
    const img = await store.resolve('app:v1');
    expect(img.config.config.Labels).toEqual({ 'org.example/tier': 'gold', team: 'ops' });
    expect(img.manifest.annotations).toEqual({ 'org.opencontainers.image.source': 'https://example.com/app' });
  });
});
