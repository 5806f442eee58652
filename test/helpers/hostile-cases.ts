/**
 * Images that must never be unpacked: each is a list of layers (entries as written in the tar) and what the refusal
 * must name. Shared by the unit suite of the layer rules and the end-to-end suite that feeds them to `ci`.
 */
import type { RawEntry } from './raw-layers.js';

export interface HostileCase {
  name: string;
  layers: RawEntry[][];
  /** 1-based layer the refusal names. */
  layer: number;
  /** The entry the refusal names (as written in the tar), if it names one. */
  entry?: string;
  /** What the refusal says. */
  reason: RegExp;
  globalPax?: Record<string, string>;
}

const dir = (path: string): RawEntry => ({ path, type: 'Directory' });
const file = (path: string, content = 'x', mode?: number): RawEntry => ({ path, content, mode });
const symlink = (path: string, linkpath: string): RawEntry => ({ path, type: 'SymbolicLink', linkpath });
const hardlink = (path: string, linkpath: string): RawEntry => ({ path, type: 'Link', linkpath });

export const HOSTILE: HostileCase[] = [
  { name: 'absolute name', layers: [[file('/etc/cloudimage-canary', 'pwned')]], layer: 1, entry: '/etc/cloudimage-canary', reason: /absolute name/ },
  { name: '".." at the start', layers: [[file('../cloudimage-canary', 'pwned')]], layer: 1, entry: '../cloudimage-canary', reason: /leaves the rootfs/ },
  { name: '".." inside a name', layers: [[dir('a/'), file('a/../../etc/cloudimage-canary', 'pwned')]], layer: 1, entry: 'a/../../etc/cloudimage-canary', reason: /leaves the rootfs/ },
  {
    name: 'a symlink in one layer, a file through it in the next',
    layers: [[symlink('evil', '/etc')], [file('evil/cloudimage-canary', 'pwned')]],
    layer: 2,
    entry: 'evil/cloudimage-canary',
    reason: /reached through "evil", a symlink to "\/etc" \(made by layer 1\)/,
  },
  {
    name: 'a symlink and a file through it in the same layer',
    layers: [[symlink('evil', '../../../../etc'), file('evil/cloudimage-canary', 'pwned')]],
    layer: 1,
    entry: 'evil/cloudimage-canary',
    reason: /reached through "evil", a symlink/,
  },
  {
    name: 'a symlink chain, then a file through it',
    layers: [[symlink('b', '/etc'), symlink('a', 'b')], [file('a/cloudimage-canary', 'pwned')]],
    layer: 2,
    entry: 'a/cloudimage-canary',
    reason: /reached through "a", a symlink to "b"/,
  },
  {
    name: 'a symlink to /etc, then a hard link through it to /etc/shadow',
    layers: [[symlink('evil', '/etc')], [hardlink('shadow', 'evil/shadow')]],
    layer: 2,
    entry: 'shadow',
    reason: /link target is reached through "evil", a symlink/,
  },
  { name: 'a hard link to an absolute path', layers: [[hardlink('shadow', '/etc/shadow')]], layer: 1, entry: 'shadow', reason: /absolute hard link target/ },
  { name: 'a hard link with ".."', layers: [[hardlink('shadow', '../../../etc/shadow')]], layer: 1, entry: 'shadow', reason: /hard link target leaves the rootfs/ },
  { name: 'a hard link to nothing in the image', layers: [[hardlink('shadow', 'etc/shadow')]], layer: 1, entry: 'shadow', reason: /not in the image/ },
  { name: 'a hard link to a directory', layers: [[dir('etc/'), hardlink('e', 'etc')]], layer: 1, entry: 'e', reason: /which is a directory; hard links may only point to files/ },
  {
    name: 'a whiteout through an earlier symlink',
    layers: [[symlink('evil', '/etc')], [file('evil/.wh.passwd', '')]],
    layer: 2,
    entry: 'evil/.wh.passwd',
    reason: /whiteout is reached through "evil", a symlink/,
  },
  {
    name: 'an opaque whiteout through an earlier symlink',
    layers: [[symlink('evil', '/etc')], [file('evil/.wh..wh..opq', '')]],
    layer: 2,
    entry: 'evil/.wh..wh..opq',
    reason: /opaque whiteout's directory "evil" is a symlink/,
  },
  { name: 'a whiteout with ".."', layers: [[file('../.wh.passwd', '')]], layer: 1, entry: '../.wh.passwd', reason: /leaves the rootfs/ },
  { name: 'a whiteout that names nothing', layers: [[file('etc/.wh..', '')]], layer: 1, entry: 'etc/.wh..', reason: /whiteout names no entry/ },
  { name: 'a whiteout used as a directory', layers: [[file('.wh.etc/passwd', 'x')]], layer: 1, entry: '.wh.etc/passwd', reason: /whiteout name is used as a directory/ },
  { name: 'a character device', layers: [[{ path: 'dev/mem', type: 'CharacterDevice', mode: 0o600 }]], layer: 1, entry: 'dev/mem', reason: /character device/ },
  { name: 'a block device', layers: [[{ path: 'dev/sda', type: 'BlockDevice', mode: 0o600 }]], layer: 1, entry: 'dev/sda', reason: /block device/ },
  { name: 'a named pipe', layers: [[{ path: 'run/fifo', type: 'FIFO' }]], layer: 1, entry: 'run/fifo', reason: /named pipe/ },
  { name: 'a GNU sparse file', layers: [[{ path: 'sparse', type: 'SparseFile' }]], layer: 1, entry: 'sparse', reason: /SparseFile is not supported/ },
  {
    name: 'a name component longer than 255 bytes',
    layers: [[file(`${'n'.repeat(300)}`, 'x')]],
    layer: 1,
    entry: 'n'.repeat(300),
    reason: /300 bytes long; at most 255/,
  },
  {
    name: 'a name longer than 4095 bytes',
    layers: [[file(Array.from({ length: 20 }, () => 'd'.repeat(250)).join('/'), 'x')]],
    layer: 1,
    entry: Array.from({ length: 20 }, () => 'd'.repeat(250)).join('/'),
    reason: /at most 4095 are allowed/,
  },
  { name: 'a duplicate entry', layers: [[file('etc/hosts', 'a'), symlink('etc/hosts', '/etc/shadow')]], layer: 1, entry: 'etc/hosts', reason: /appears twice/ },
  {
    name: 'a directory replaced by a symlink later in the same layer',
    layers: [[file('d/x', 'a'), symlink('d', '/etc')]],
    layer: 1,
    entry: 'd',
    reason: /both a directory .* and a non-directory/,
  },
  { name: 'a file under a file', layers: [[file('f', 'a')], [file('f/x', 'b')]], layer: 2, entry: 'f/x', reason: /reached through "f", a file/ },
  { name: 'a control character in a name', layers: [[file('etc/a\nb', 'x')]], layer: 1, entry: 'etc/a\nb', reason: /control character/ },
  {
    name: 'a global header that renames every entry',
    layers: [[file('harmless', 'x')]],
    globalPax: { linkpath: '/etc/shadow' },
    layer: 1,
    entry: 'harmless',
    reason: /global pax header/,
  },
  {
    name: 'a pax name that leaves the rootfs behind a harmless header name',
    layers: [[{ path: 'harmless', content: 'pwned', pax: { path: '../../etc/cloudimage-canary' } }]],
    layer: 1,
    entry: '../../etc/cloudimage-canary',
    reason: /leaves the rootfs/,
  },
];
