/**
 * COPY, ADD, ENV, LABEL and ARG cases built by `ci build` and by `buildah bud`, whose root filesystems and
 * configs must be the same (copy-differential.test.ts). `FROM {{BASE}}` names the base image below, which each
 * tool builds for itself from the same Kubefile and context, so both start from the same tree.
 *
 * A case with `refused` must be refused by `ci build` (message matched); `buildah` then says what buildah does:
 * 'refuses' (checked), or a sentence explaining a documented difference (buildah is not run).
 */
import type { Fixture } from './helpers/context-fixture.js';

export interface CopyCase {
  name: string;
  context: Fixture;
  kubefile: string;
  refused?: RegExp;
  buildah?: 'refuses' | string;
  /** Built with the set-ID allowance (the bits are then kept in the image, as Docker keeps them). */
  allowSetid?: boolean;
  /** Documented differences from buildah: exactly these lines of the comparison, and no other. */
  known?: string[];
}

/** The base: a small tree with a shell (for the RUN that deletes), users, symlinks, and deleted paths. */
export const BASE: { context: Fixture; kubefile: string } = {
  kubefile: 'FROM scratch\nCOPY rootfs /\nRUN rm -rf opt/gone etc/old.conf\n',
  context: {
    'rootfs/bin/sh': { host: '/bin/dash', mode: 0o755 },
    'rootfs/bin/rm': { host: '/bin/rm', mode: 0o755 },
    'rootfs/lib/x86_64-linux-gnu/libc.so.6': { host: '/lib/x86_64-linux-gnu/libc.so.6', mode: 0o755 },
    'rootfs/lib64/ld-linux-x86-64.so.2': { host: '/lib64/ld-linux-x86-64.so.2', mode: 0o755 },
    'rootfs/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n',
    'rootfs/etc/group': 'root:x:0:\napp:x:1001:\ngrp:x:1002:\n',
    'rootfs/etc/old.conf': 'old\n',
    'rootfs/etc/keep.conf': 'keep\n',
    'rootfs/usr/share/doc/readme': 'readme\n',
    'rootfs/share': { symlink: 'usr/share' },
    'rootfs/abs': { symlink: '/usr/share' },
    'rootfs/realf': 'real\n',
    'rootfs/flink': { symlink: 'realf' },
    'rootfs/opt/dir': { dir: true, mode: 0o750 },
    'rootfs/opt/dir/existing': 'existing\n',
    'rootfs/opt/gone/x': 'gone\n',
    'rootfs/manifests/a.yaml': 'a: 1\n',
    'rootfs/optfile': 'a file\n',
    'rootfs/srv': { dir: true, mode: 0o700, owner: [5, 5] },
  },
};

const tree: Fixture = {
  'd/b': 'b\n',
  'd/sub/c': 'c\n',
  'd/sub/deep/e': { file: 'e\n', mode: 0o600 },
  'd/run.sh': { file: '#!/bin/sh\n', mode: 0o755 },
  'd/private': { dir: true, mode: 0o700 },
};

export const CASES: CopyCase[] = [
  // Files to directories.
  { name: 'file to . (a directory)', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY a .\n' },
  { name: 'file to /', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY a /\n' },
  { name: 'file to ./', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY a ./\n' },
  { name: 'file to dir/ creates it and its parents', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY a /usr/local/bin/\n' },
  { name: 'file to a new file name with new parents', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY a /new/deep/name\n' },
  { name: 'relative destination starts at /', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY a opt/x\nCOPY a etc/\n' },
  { name: 'file to an existing directory of an earlier COPY, without /', context: { a: 'a\n', 'd/b': 'b\n' }, kubefile: 'FROM scratch\nCOPY d /opt\nCOPY a /opt\n' },
  // Directories.
  { name: 'directory copies its contents, modes kept', context: tree, kubefile: 'FROM scratch\nCOPY d /x\n' },
  { name: 'directory with / to dir/', context: tree, kubefile: 'FROM scratch\nCOPY d/ /x/\n' },
  { name: 'directory into /', context: tree, kubefile: 'FROM scratch\nCOPY d /\n' },
  { name: 'COPY . . copies the context', context: { ...tree, a: 'a\n' }, kubefile: 'FROM scratch\nCOPY . .\n' },
  { name: 'COPY . dir', context: { ...tree, a: 'a\n' }, kubefile: 'FROM scratch\nCOPY . app\n' },
  {
    name: 'directory modes and set-ID bits',
    allowSetid: true,
    // Docker keeps set-ID bits on COPY; buildah 1.28 clears them. `ci build` keeps them in the layer, and the layer
    // rules clear them at unpack unless the image was built with the set-ID allowance.
    known: [
      '/m/sg: ci build has file 17f43ecbc43b 2755 0:0, buildah has file 17f43ecbc43b 0755 0:0',
      '/m/su: ci build has file d928f50882da 4755 0:0, buildah has file d928f50882da 0755 0:0',
    ], context: { 'm/su': { file: 'su\n', mode: 0o4755 }, 'm/sg': { file: 'sg\n', mode: 0o2755 }, 'm/ro': { file: 'ro\n', mode: 0o400 }, 'm/t': { dir: true, mode: 0o1777 } }, kubefile: 'FROM scratch\nCOPY m /m\n' },
  { name: 'context owners become root', context: { 'o/f': { file: 'f\n', owner: [1234, 4321] }, 'o/d': { dir: true, owner: [7, 7] } }, kubefile: 'FROM scratch\nCOPY o /o\n' },
  // Several sources and globs.
  { name: 'several files to dir/', context: { a: 'a\n', b: 'b\n' }, kubefile: 'FROM scratch\nCOPY a b /multi/\n' },
  { name: 'glob of files', context: { 'x.txt': 'x\n', 'y.txt': 'y\n', 'z.md': 'z\n' }, kubefile: 'FROM scratch\nCOPY *.txt /t/\n' },
  { name: 'glob with one match to a file name', context: { 'app.conf': 'c\n', 'b.md': 'b\n' }, kubefile: 'FROM scratch\nCOPY *.conf /etc/app.conf\n' },
  { name: 'glob with a character class', context: { 'a.txt': 'a\n', 'b.txt': 'b\n', 'c.txt': 'c\n' }, kubefile: 'FROM scratch\nCOPY [ab].txt /c/\n' },
  { name: 'glob of a directory and a file', context: { 'd/in/b': 'b\n', dfile: 'df\n' }, kubefile: 'FROM scratch\nCOPY d* /g/\n' },
  { name: 'glob below a directory', context: { 'conf/a.conf': 'a\n', 'conf/b.conf': 'b\n', 'conf/c.txt': 'c\n' }, kubefile: 'FROM scratch\nCOPY conf/*.conf /etc/app/\n' },
  { name: 'several sources into an existing directory without /', context: { a: 'a\n', b: 'b\n' }, kubefile: 'FROM {{BASE}}\nCOPY a b /opt\n' },
  // Symlinks.
  { name: 'a source symlink is followed (file)', context: { real: 'r\n', link: { symlink: 'real' } }, kubefile: 'FROM scratch\nCOPY link /x\nCOPY link /y/\n' },
  { name: 'a source symlink is followed (directory)', context: { 'd/in/b': 'b\n', dl: { symlink: 'd' } }, kubefile: 'FROM scratch\nCOPY dl /dl\n' },
  { name: 'symlinks inside a directory are kept', context: { 's/t': 't\n', 's/rel': { symlink: 't' }, 's/abs': { symlink: '/etc/passwd' }, 's/dangling': { symlink: 'nowhere' }, 's/up': { symlink: '../../x' } }, kubefile: 'FROM scratch\nCOPY s /s\n' },
  // Owners and modes.
  { name: '--chown numeric uid:gid, created parents owned too', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY --chown=1000:1000 a /p/q/r\n' },
  { name: '--chown uid alone is also the gid', context: tree, kubefile: 'FROM scratch\nCOPY --chown=1000 d /x\n' },
  { name: '--chmod on a directory', context: tree, kubefile: 'FROM scratch\nCOPY --chmod=0640 d /chm\n' },
  { name: '--chmod on a file', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY --chmod=755 a /bin/a\n' },
  { name: '--chown and --chmod together', context: { a: 'a\n' }, kubefile: 'FROM scratch\nCOPY --chown=7:8 --chmod=0600 a /o/a\n' },
  // Variables and metadata.
  { name: 'ARG and ENV in sources, destinations and flags', context: { 'conf/a': 'a\n' }, kubefile: 'FROM scratch\nARG SRC=conf\nENV DEST=/etc/app OWNER=42\nCOPY --chown=${OWNER} ${SRC} $DEST/\nLABEL version=1 "name"="app x"\nENV MORE="a b" EMPTY=\n' },
  { name: 'ENV legacy form and LABEL expansion', context: { a: 'a\n' }, kubefile: 'FROM scratch\nENV GREETING hello world\nLABEL greeting="${GREETING}" dest=/opt\nCOPY a /opt/\n' },
  // Ignore files.
  {
    name: '.dockerignore: comments, **, directories, ! exceptions',
    context: { ...tree, 'keep.txt': 'k\n', 'x.tmp': 'x\n', 'd/sub/t.tmp': 't\n', '.git/HEAD': 'h\n', 'node_modules/x/i': 'i\n', 'logs/a.log': 'a\n', 'logs/important.log': 'i\n', '.dockerignore': '# comment\n.git\n**/*.tmp\nnode_modules\nlogs/*.log\n!logs/important.log\n/Kubefile\n' },
    kubefile: 'FROM scratch\nCOPY . .\nCOPY d /d2\n',
  },
  {
    name: '.dockerignore: an excluded directory with an exception inside',
    context: { 'logs/a.log': 'a\n', 'logs/important.log': 'i\n', 'logs/old/o.log': 'o\n', logs: { dir: true, mode: 0o700 }, 'dd/z': 'z\n', 'dd/y': 'y\n', '.dockerignore': 'logs\n!logs/important.log\ndd/z\n.dockerignore\n' },
    kubefile: 'FROM scratch\nCOPY . /x\nCOPY logs /y\n',
  },
  {
    name: '.dockerignore: ? and character classes, exception of an exception',
    context: { 'a1.txt': '1\n', 'a2.txt': '2\n', 'ab.txt': 'b\n', 'keep/a3.txt': '3\n', 'keep/a4.txt': '4\n', '.dockerignore': 'a?.txt\n**/a[0-9].txt\n!keep/a*.txt\nkeep/a4.txt\n' },
    kubefile: 'FROM scratch\nCOPY . /x\n',
  },
  // ADD.
  { name: 'ADD of a plain tar keeps its owners and its ./ entry', context: { 'p.tar': { tar: { 'top/in/f': 'f\n', g: 'g\n', 'top/l': { symlink: 'in/f' }, top: { dir: true, mode: 0o700 } }, owner: [1234, 4321], root: true, rootMode: 0o750 } }, kubefile: 'FROM scratch\nADD p.tar /p\n' },
  { name: 'ADD of a gzip tar into dir/', context: { 'z.tgz': { tar: { 'top/in/f': 'f\n', g: { file: 'g\n', mode: 0o600 } }, compress: 'gzip' } }, kubefile: 'FROM scratch\nADD z.tgz /z/\n' },
  { name: 'ADD of a gzip file that is not a tar copies it', context: { 'n.gz': { gzipOf: 'not a tar\n' } }, kubefile: 'FROM scratch\nADD n.gz /n/\n' },
  { name: 'ADD --chown of a tar owns only the created directory', context: { 'z.tgz': { tar: { 'top/f': 'f\n' }, compress: 'gzip' } }, kubefile: 'FROM scratch\nADD --chown=99:99 z.tgz /c\n' },
  { name: 'ADD --chmod of a tar leaves its entries alone', context: { 'z.tar': { tar: { 'top/f': 'f\n' } } }, kubefile: 'FROM scratch\nADD --chmod=0600 z.tar /m\n' },
  { name: 'ADD of a file that is not an archive is COPY', context: { a: 'a\n', 'd/b': 'b\n' }, kubefile: 'FROM scratch\nADD a /x\nADD d /y\n' },
  { name: 'ADD of a tar with hard links', context: { 'h.tar': { rawTar: [{ path: 'f', content: 'shared\n', mode: 0o640 }, { path: 'h', type: 'Link', linkpath: 'f' }] } }, kubefile: 'FROM scratch\nADD h.tar /h/\n' },
  // Replacing and merging within one build.
  { name: 'later COPY overwrites a file, a dir replaces a file, dirs merge', context: { 'one/x': '1\n', 'one/d/a': 'a\n', 'two/x': '2\n', 'two/d/b': 'b\n', 'three/x/inner': 'i\n' }, kubefile: 'FROM scratch\nCOPY one /\nCOPY two /\nCOPY three /\n' },
  // On a base image.
  { name: 'base: file onto an existing directory without / goes into it', context: { imageList: 'img\n' }, kubefile: 'FROM {{BASE}}\nCOPY imageList manifests\n' },
  { name: 'base: file over an existing file', context: { passwd: 'root:x:0:0::/root:/bin/sh\n' }, kubefile: 'FROM {{BASE}}\nCOPY passwd /etc/passwd\n' },
  { name: 'base: directory merges into /etc, the existing dir keeps its mode', context: { 'etc/app/a.conf': 'a\n', 'etc/keep.conf': 'changed\n' }, kubefile: 'FROM {{BASE}}\nCOPY etc /etc\n' },
  { name: 'base: copied directories override existing ones', context: { 'tree/opt/dir': { dir: true, mode: 0o700 }, 'tree/opt/dir/new': 'n\n', 'tree/srv/x': 'x\n' }, kubefile: 'FROM {{BASE}}\nCOPY tree /\n' },
  { name: 'base: destination through a relative symlink to a directory', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY a /share/\nCOPY a /share/sub/deep\nCOPY a /share\n' },
  { name: 'base: destination through an absolute symlink', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY a /abs/viaabs\n' },
  { name: 'base: a file replaces a symlink to a file', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY a /flink\n' },
  { name: 'base: a copied directory replaces a symlink in the image', context: { 'tree/share/x': 'x\n' }, kubefile: 'FROM {{BASE}}\nCOPY tree /\n' },
  { name: 'base: --chown by names from the image', context: tree, kubefile: 'FROM {{BASE}}\nCOPY --chown=app:grp d /own\nCOPY --chown=app d /own2/\n' },
  { name: 'base: --chown on an existing destination leaves it alone', context: tree, kubefile: 'FROM {{BASE}}\nCOPY --chown=5:5 d /opt\n' },
  { name: 'base: a deleted directory is gone (whiteout) and can become a file', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY a /opt/gone\nCOPY a /etc/old.conf/\n' },
  { name: 'base: ADD of a tar whose directory entry overrides an existing one', context: { 'o.tar': { tar: { opt: { dir: true, mode: 0o700 }, 'opt/new': 'n\n' }, owner: [7, 7] } }, kubefile: 'FROM {{BASE}}\nADD o.tar /\n' },
  // Refused.
  { name: 'refused: file to dir/ where the image has a file', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY a /optfile/\n', refused: /Kubefile:2: destination \/optfile\/ is a file in the image/, buildah: 'refuses' },
  { name: 'refused: a directory onto a file', context: tree, kubefile: 'FROM {{BASE}}\nCOPY d /optfile\n', refused: /Kubefile:2: destination \/optfile is a file in the image; the directory d can only be copied into a directory/, buildah: 'refuses' },
  { name: 'refused: below a file of the image', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY a /optfile/sub\n', refused: /Kubefile:2: destination \/optfile\/sub: "\/optfile" is a file in the image/, buildah: 'refuses' },
  { name: 'refused: unknown user for --chown', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY --chown=nobody a /a\n', refused: /Kubefile:2: --chown: user "nobody" is not in the image's \/etc\/passwd/, buildah: 'refuses' },
  { name: 'refused: unknown group for --chown', context: { a: 'a\n' }, kubefile: 'FROM {{BASE}}\nCOPY --chown=app:nogroup a /a\n', refused: /Kubefile:2: --chown: group "nogroup" is not in the image's \/etc\/group/, buildah: 'refuses' },
  { name: 'refused: a source the ignore file excludes', context: { a: 'a\n', '.dockerignore': 'a\n' }, kubefile: 'FROM scratch\nCOPY a /a\n', refused: /Kubefile:2: COPY source "a" is not in the build context: \.dockerignore excludes it/, buildah: 'refuses' },
  { name: 'refused: a missing source', context: {}, kubefile: 'FROM scratch\nCOPY nothere /x\n', refused: /Kubefile:2: COPY source "nothere" does not exist in the build context/, buildah: 'refuses' },
  {
    name: 'refused: several sources to a name that is not a directory',
    context: { a: 'a\n', b: 'b\n' },
    kubefile: 'FROM scratch\nCOPY a b /multi\n',
    refused: /Kubefile:2: COPY has 2 sources \(a, b\), so the destination must be a directory, and \/multi is not one/,
    buildah: "Docker's rule: buildah instead makes /multi a directory",
  },
  {
    name: 'refused: a glob of several files to a name that is not a directory',
    context: { 'a.txt': 'a\n', 'b.txt': 'b\n' },
    kubefile: 'FROM scratch\nCOPY *.txt /one\n',
    refused: /Kubefile:2: COPY has 2 sources \(a\.txt, b\.txt\), so the destination must be a directory/,
    buildah: 'buildah writes each match to /one in turn, so only the last is left',
  },
  { name: 'refused: ADD of a URL', context: {}, kubefile: 'FROM scratch\nADD https://example.com/x.tgz /x/\n', refused: /Kubefile:2: ADD source "https:\/\/example\.com\/x\.tgz" is a URL; nothing is downloaded during a build/, buildah: 'buildah downloads it; builds here never use the network' },
  { name: 'refused: ADD of an xz tar', context: { 'x.txz': { tar: { g: 'g\n' }, compress: 'xz' } }, kubefile: 'FROM scratch\nADD x.txz /x\n', refused: /Kubefile:2: ADD source "x\.txz" is xz-compressed; ADD unpacks plain and gzip-compressed tar archives only/, buildah: 'buildah unpacks xz and bzip2 archives too' },
  { name: 'refused: ADD of a tar with ..', context: { 'e.tar': { rawTar: [{ path: '../escape', content: 'x\n' }] } }, kubefile: 'FROM scratch\nADD e.tar /x/\n', refused: /Kubefile:2: ADD archive "e\.tar": entry "\.\.\/escape": the entry name climbs out of the destination through "\.\."/, buildah: 'buildah drops the ".." and writes /x/escape' },
  { name: 'refused: ADD of a tar with an absolute name', context: { 'e.tar': { rawTar: [{ path: '/etc/evil', content: 'x\n' }] } }, kubefile: 'FROM scratch\nADD e.tar /x/\n', refused: /Kubefile:2: ADD archive "e\.tar": entry "\/etc\/evil": the entry name is absolute/, buildah: 'buildah writes /x/etc/evil' },
  { name: 'refused: ADD of a tar writing through its own symlink', context: { 'e.tar': { rawTar: [{ path: 'l', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'l/passwd', content: 'x\n' }] } }, kubefile: 'FROM scratch\nADD e.tar /x/\n', refused: /Kubefile:2: ADD archive "e\.tar": entry "l\/passwd": the entry is reached through "l", which the archive makes a symlink/, buildah: 'refuses' },
  { name: 'refused: ADD of a tar with a symlink above the destination', context: { 'e.tar': { rawTar: [{ path: 'l', type: 'SymbolicLink', linkpath: '../../etc/shadow' }] } }, kubefile: 'FROM scratch\nADD e.tar /x/\n', refused: /Kubefile:2: ADD archive "e\.tar": entry "l": the symlink points to "\.\.\/\.\.\/etc\/shadow", above the destination directory/, buildah: 'buildah keeps the symlink as it is (it is resolved inside the rootfs)' },
  { name: 'refused: COPY --from', context: {}, kubefile: 'FROM scratch\nCOPY --from=builder /x /x\n', refused: /Kubefile:2: COPY: option --from is not supported/, buildah: 'buildah looks for a stage or image named builder' },
];
