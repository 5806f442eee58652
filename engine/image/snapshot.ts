/**
 * What a RUN changed: a snapshot of the working rootfs before and after, compared by type, mode, size, inode
 * and change times. The difference becomes the layer; removed paths become OCI whiteouts.
 */
import { promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import { comparePaths, whiteoutFor, type LayerEntry } from './layer-writer.js';

interface Node {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  size: bigint;
  mtime: bigint;
  ctime: bigint;
  ino: bigint;
  linkname?: string;
}

export type Snapshot = Map<string, Node>;

export async function snapshot(root: string): Promise<Snapshot> {
  const snap: Snapshot = new Map();
  const walk = async (rel: string) => {
    const names = await fs.readdir(rel ? join(root, rel) : root);
    for (const n of names) {
      const p = rel ? `${rel}/${n}` : n;
      const st = await fs.lstat(join(root, p), { bigint: true });
      const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
      const node: Node = { type, mode: Number(st.mode & 0o7777n), size: st.size, mtime: st.mtimeNs, ctime: st.ctimeNs, ino: st.ino };
      if (type === 'symlink') node.linkname = await fs.readlink(join(root, p));
      snap.set(p, node);
      if (type === 'dir') await walk(p);
    }
  };
  await walk('');
  return snap;
}

function changed(a: Node, b: Node): boolean {
  if (a.type !== b.type || a.mode !== b.mode) return true;
  if (a.type === 'dir') return false; // a directory's times move whenever a child changes; children say what changed
  if (a.type === 'symlink') return a.linkname !== b.linkname;
  return a.size !== b.size || a.mtime !== b.mtime || a.ctime !== b.ctime || a.ino !== b.ino;
}

/** Entries for everything added or changed (with their parent directories) and whiteouts for what was removed. */
export function diffSnapshots(before: Snapshot, after: Snapshot, root: string): LayerEntry[] {
  const out = new Map<string, LayerEntry>();
  const entryFor = (p: string, n: Node): LayerEntry | undefined => {
    if (n.type === 'dir') return { type: 'dir', path: p, mode: n.mode };
    if (n.type === 'file') return { type: 'file', path: p, mode: n.mode, size: Number(n.size), source: join(root, p) };
    if (n.type === 'symlink') return { type: 'symlink', path: p, linkname: n.linkname! };
    return undefined; // devices, sockets and pipes never enter a layer
  };
  const addWithParents = (p: string) => {
    let parent = posix.dirname(p);
    while (parent !== '.' && !out.has(parent)) {
      const n = after.get(parent);
      if (n) out.set(parent, entryFor(parent, n)!);
      parent = posix.dirname(parent);
    }
  };
  for (const [p, n] of after) {
    const old = before.get(p);
    if (old && !changed(old, n)) continue;
    const e = entryFor(p, n);
    if (!e) continue;
    if (old && old.type !== n.type) out.set(whiteoutFor(p).path, whiteoutFor(p));
    out.set(p, e);
    addWithParents(p);
  }
  for (const p of before.keys()) {
    if (after.has(p)) continue;
    const parent = posix.dirname(p);
    if (parent !== '.' && !after.has(parent)) continue; // the removed parent's whiteout covers it
    const w = whiteoutFor(p);
    out.set(w.path, w);
    addWithParents(p);
  }
  return [...out.values()].sort((a, b) => comparePaths(a.path, b.path));
}
