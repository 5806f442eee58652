import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDirSyntax, placeSources, PlaceProblem, type SourceItem } from '../engine/image/copy-dest.js';
import { resolveOwner } from '../engine/image/copy-owner.js';
import { IgnoreRules } from '../engine/image/ignore-rules.js';
import { ImageTree } from '../engine/image/image-tree.js';
import type { LayerEntry } from '../engine/image/layer-writer.js';
import { rawLayer } from './helpers/raw-layers.js';
import { removeDir, tempDir } from './helpers/tmp.js';

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) removeDir(dirs.pop()!);
});

describe('ignore rules (Docker patterns)', () => {
  const cases: [string, string, boolean][] = [
    // pattern(s), path, excluded
    ['*.go', 'main.go', true],
    ['*.go', 'cmd/main.go', false],
    ['**/*.go', 'main.go', true],
    ['**/*.go', 'a/b/main.go', true],
    ['docs', 'docs/x/y.md', true],
    ['docs/', 'docs/y.md', true],
    ['/docs', 'docs/y.md', true],
    ['./docs', 'docs/y.md', true],
    ['docs', 'other/docs', false],
    ['**', 'any/thing', true],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a/**/b', 'a/x/y/c', false],
    ['a/**', 'a/x/y', true],
    ['a?c', 'abc', true],
    ['a?c', 'a/c', false],
    ['a*', 'a/b', true], // the pattern matches the parent directory
    ['[a-c].txt', 'b.txt', true],
    ['[!a-c].txt', 'b.txt', false],
    ['[^a-c].txt', 'd.txt', true],
    ['\\*.txt', '*.txt', true],
    ['\\*.txt', 'a.txt', false],
    ['a.b', 'axb', false],
    ['a+b(c)', 'a+b(c)', true],
    ['{a,b}', 'a', false],
    ['# a comment\n  spaced.txt  \n', 'spaced.txt', true],
    ['# a comment', '# a comment', false],
    ['logs\n!logs/keep.log', 'logs/keep.log', false],
    ['logs\n!logs/keep.log', 'logs/other.log', true],
    ['*.log\n!keep.log\nkeep.log', 'keep.log', true],
    ['!x\nx', 'x', true],
    ['x\n!x', 'x', false],
    ['x\n! x', 'x', false],
    ['Kubefile', 'Kubefile', true],
  ];
  it.each(cases)('%j excludes %j: %s', (patterns, path, excluded) => {
    expect(IgnoreRules.parse(patterns).excludes(path)).toBe(excluded);
  });

  it('never excludes the context root, and enters an excluded directory only for an exception inside it', () => {
    const r = IgnoreRules.parse('*\n!logs/keep.log\n', '.dockerignore');
    expect(r.excludes('.')).toBe(false);
    expect(r.mayIncludeBelow('logs')).toBe(true);
    expect(r.mayIncludeBelow('other')).toBe(false);
    expect(IgnoreRules.parse('logs\n').mayIncludeBelow('logs')).toBe(false);
  });

  it('refuses an unterminated class, naming the line', () => {
    expect(() => IgnoreRules.parse('ok\nbad[\n', '.dockerignore')).toThrow(/^\.dockerignore:2: unterminated \[ in "bad\["$/);
  });
});

function file(path: string, extra: Partial<LayerEntry> = {}): LayerEntry {
  return { type: 'file', path, mode: 0o644, size: 0, ...extra } as LayerEntry;
}
const dir = (path: string): LayerEntry => ({ type: 'dir', path, mode: 0o755 });
const link = (path: string, linkname: string): LayerEntry => ({ type: 'symlink', path, linkname });

function treeOf(entries: LayerEntry[]): ImageTree {
  const t = new ImageTree();
  t.applyEntries(entries);
  return t;
}

const fileItem = (name: string, mode = 0o644): SourceItem => ({ kind: 'file', shown: name, name, members: [{ rel: '', kind: 'file', mode, size: 1, source: `/ctx/${name}`, hash: 'h' }] });
const dirItem = (shown: string, members: SourceItem['members']): SourceItem => ({ kind: 'dir', shown, name: shown, members });

const paths = (t: ImageTree, items: SourceItem[], dest: string, opts = {}) =>
  placeSources(t, items, dest, opts).entries.map((e) => `${e.type} ${e.path}${e.type === 'symlink' ? ' -> ' + e.linkname : ' ' + e.mode.toString(8)}${e.uid ? ` ${e.uid}:${e.gid}` : ''}`);

describe('where COPY puts its sources', () => {
  const image = () =>
    treeOf([
      dir('etc'),
      file('etc/passwd'),
      dir('manifests'),
      dir('usr'),
      dir('usr/lib'),
      link('lib', 'usr/lib'),
      link('abs', '/usr/lib'),
      link('up', '../../usr/lib'),
      file('realf'),
      link('flink', 'realf'),
      link('loop', 'loop'),
    ]);

  it('a directory destination by syntax: ., ./, /, dir/, ..', () => {
    for (const d of ['.', './', '/', '..', 'x/..', 'a/.']) expect(isDirSyntax(d), d).toBe(true);
    for (const d of ['x', '/x', 'x.']) expect(isDirSyntax(d), d).toBe(false);
    expect(paths(new ImageTree(), [fileItem('a')], '.')).toEqual(['file a 644']);
    expect(paths(new ImageTree(), [fileItem('a')], '/')).toEqual(['file a 644']);
    expect(paths(new ImageTree(), [fileItem('a')], 'opt/')).toEqual(['dir opt 755', 'file opt/a 644']);
    expect(paths(new ImageTree(), [fileItem('a')], '../../x')).toEqual(['file x 644']);
  });

  it('a file goes into a directory the image has, without a trailing /', () => {
    expect(paths(image(), [fileItem('imageList')], 'manifests')).toEqual(['file manifests/imageList 644']);
  });

  it('a destination is followed through symlinks of the image, relative and absolute', () => {
    expect(paths(image(), [fileItem('a')], '/lib')).toEqual(['file usr/lib/a 644']);
    expect(paths(image(), [fileItem('a')], '/abs/sub/x')).toEqual(['dir usr/lib/sub 755', 'file usr/lib/sub/x 644']);
    expect(paths(image(), [fileItem('a')], '/up/')).toEqual(['file usr/lib/a 644']);
  });

  it('a file replaces a file or a symlink to a file at a file name', () => {
    expect(paths(image(), [fileItem('a')], '/flink')).toEqual(['file flink 644']);
    expect(paths(image(), [fileItem('a')], '/etc/passwd')).toEqual(['file etc/passwd 644']);
  });

  it('a dangling symlink is replaced by a file at its name, and followed (made a directory) when written as dir/', () => {
    const t = treeOf([link('dang', 'nowhere/x')]);
    expect(paths(t, [fileItem('a')], '/dang')).toEqual(['file dang 644']);
    expect(paths(t, [fileItem('a')], '/dang/')).toEqual(['dir nowhere 755', 'dir nowhere/x 755', 'file nowhere/x/a 644']);
  });

  it('existing parents are left alone; created ones get 0755 and the --chown owner', () => {
    expect(paths(image(), [fileItem('a')], '/etc/app/conf/a', { owner: { uid: 7, gid: 8 } })).toEqual(['dir etc/app 755 7:8', 'dir etc/app/conf 755 7:8', 'file etc/app/conf/a 644 7:8']);
  });

  it('--chmod changes what is copied, not the directories made for it', () => {
    const d = dirItem('d', [
      { rel: 'sub', kind: 'dir', mode: 0o700 },
      { rel: 'sub/f', kind: 'file', mode: 0o600, size: 1, hash: 'h' },
    ]);
    expect(paths(image(), [d], '/x', { chmod: 0o640 })).toEqual(['dir x 755', 'dir x/sub 640', 'file x/sub/f 640']);
  });

  it('a directory copies its contents; a directory in the image that it holds is replaced where the image has a symlink', () => {
    const d = dirItem('tree', [
      { rel: 'lib', kind: 'dir', mode: 0o755 },
      { rel: 'lib/x', kind: 'file', mode: 0o644, size: 1, hash: 'h' },
      { rel: 'etc', kind: 'dir', mode: 0o700 },
    ]);
    expect(paths(image(), [d], '/')).toEqual(['dir etc 700', 'dir lib 755', 'file lib/x 644']);
  });

  it('an archive unpacks below the destination; its ./ entry sets the destination directory', () => {
    const a: SourceItem = { kind: 'archive', shown: 'a.tar', name: 'a.tar', members: [{ rel: '', kind: 'dir', mode: 0o750, uid: 5, gid: 5 }, { rel: 'f', kind: 'file', mode: 0o600, uid: 5, gid: 5, size: 1, hash: 'h', archive: { file: '/ctx/a.tar', ordinal: 1 } }] };
    const p = placeSources(new ImageTree(), [a], '/opt/app', { owner: { uid: 1, gid: 1 }, chmod: 0o777 });
    expect(p.entries.map((e) => [e.path, e.type === 'symlink' ? 0 : e.mode, e.uid, e.gid])).toEqual([
      ['opt', 0o755, 1, 1],
      ['opt/app', 0o750, 5, 5],
      ['opt/app/f', 0o600, 5, 5],
    ]);
    expect([...p.fromArchive]).toEqual([['opt/app/f', { file: '/ctx/a.tar', ordinal: 1 }]]);
  });

  it('a later source replaces an earlier one of the same layer, a file replacing a whole directory', () => {
    const d = dirItem('d', [{ rel: 'x', kind: 'dir', mode: 0o755 }, { rel: 'x/in', kind: 'file', mode: 0o644, size: 1, hash: 'h' }]);
    expect(paths(new ImageTree(), [d, fileItem('x')], '/o/')).toEqual(['dir o 755', 'file o/x 644']);
  });

  const refusals: [string, () => unknown, RegExp][] = [
    ['several sources to a new name', () => placeSources(image(), [fileItem('a'), fileItem('b')], '/multi'), /COPY has 2 sources \(a, b\), so the destination must be a directory, and \/multi is not one/],
    ['several sources to a file', () => placeSources(image(), [fileItem('a'), fileItem('b')], '/realf'), /and \/realf is a file in the image/],
    ['a directory onto a file', () => placeSources(image(), [dirItem('d', [])], '/realf'), /destination \/realf is a file in the image; the directory d can only be copied into a directory/],
    ['a file into a file with /', () => placeSources(image(), [fileItem('a')], '/realf/'), /destination \/realf\/ is a file in the image/],
    ['below a file', () => placeSources(image(), [fileItem('a')], '/etc/passwd/x'), /destination \/etc\/passwd\/x: "\/etc\/passwd" is a file in the image/],
    ['through a symlink loop', () => placeSources(image(), [fileItem('a')], '/loop/x'), /"\/loop" is a symlink loop in the image/],
  ];
  it.each(refusals)('refuses %s', (_n, fn, re) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlaceProblem);
    expect((err as Error).message).toMatch(re);
    expect((err as PlaceProblem).hint).toBeTruthy();
  });
});

describe('the image tree', () => {
  it('honours whiteouts and opaque directories of a layer, and reads files for --chown names', async () => {
    const d = tempDir('ci-tree-');
    dirs.push(d);
    const l1 = join(d, 'l1');
    const l2 = join(d, 'l2');
    writeFileSync(l1, rawLayer([
      { path: 'etc/', type: 'Directory' },
      { path: 'etc/passwd', content: 'app:x:1000:1001::/:/bin/sh\n' },
      { path: 'etc/group', content: 'grp:x:1002:\n' },
      { path: 'opt/gone/x', content: 'x' },
      { path: 'var/old/y', content: 'y' },
    ]));
    writeFileSync(l2, rawLayer([{ path: 'opt/.wh.gone' }, { path: 'var/old/.wh..wh..opq' }, { path: 'var/old/new', content: 'n' }, { path: 'etc/group2', type: 'Link', linkpath: 'etc/group' }]));
    const t = new ImageTree();
    await t.applyLayer(l1);
    await t.applyLayer(l2);
    expect(t.lookup('opt/gone')).toBeUndefined();
    expect([...t.lookup('var/old')!.children!.keys()]).toEqual(['new']);
    expect((await t.readFile('etc/group2'))?.toString()).toBe('grp:x:1002:\n');
    expect(await resolveOwner('app', t)).toEqual({ uid: 1000, gid: 1001 });
    expect(await resolveOwner('app:grp', t)).toEqual({ uid: 1000, gid: 1002 });
    expect(await resolveOwner('12', t)).toEqual({ uid: 12, gid: 12 });
    expect(await resolveOwner('12:app', t).catch((e) => e.message)).toMatch(/group "app" is not in the image's \/etc\/group/);
  });
});
