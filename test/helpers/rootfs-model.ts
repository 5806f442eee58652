/**
 * A root filesystem as data, to compare two builds: path -> type, mode, owner, symlink target, content digest.
 * Made either from an image's layers (applied in order with OCI whiteouts, opaque directories and replacement)
 * or from a directory on disk. Times are left out: both tools normalise them differently by design.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import { Parser, type ReadEntry } from 'tar';

export interface FsEntry {
  type: 'dir' | 'file' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  target?: string;
  sha?: string;
}

export type RootfsModel = Map<string, FsEntry>;

function dropTree(m: RootfsModel, path: string): void {
  m.delete(path);
  for (const k of [...m.keys()]) if (k.startsWith(path + '/')) m.delete(k);
}

function clean(raw: string): string {
  return raw.split('/').filter((p) => p && p !== '.').join('/');
}

/** Applies one layer blob (gzip or plain tar) to the model. */
export async function applyLayerToModel(model: RootfsModel, file: string): Promise<void> {
  const entries: { path: string; e: FsEntry; link?: string }[] = [];
  const whiteouts: string[] = [];
  const opaques: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({ maxDecompressionRatio: Number.MAX_SAFE_INTEGER });
    parser.on('entry', (r: ReadEntry) => {
      const path = clean(r.path);
      const base = posix.basename(path);
      const dir = posix.dirname(path) === '.' ? '' : posix.dirname(path);
      if (base === '.wh..wh..opq') return void (opaques.push(dir), r.resume());
      if (base.startsWith('.wh.')) return void (whiteouts.push(dir ? `${dir}/${base.slice(4)}` : base.slice(4)), r.resume());
      if (path === '') return void r.resume();
      const e: FsEntry = { type: 'other', mode: (r.mode ?? 0) & 0o7777, uid: r.uid ?? 0, gid: r.gid ?? 0 };
      const item: { path: string; e: FsEntry; link?: string } = { path, e };
      if (r.type === 'Directory') e.type = 'dir';
      else if (r.type === 'SymbolicLink') {
        e.type = 'symlink';
        e.target = r.linkpath;
        e.mode = 0o777;
      } else if (r.type === 'Link') item.link = clean(r.linkpath ?? '');
      else if (r.type === 'File' || r.type === 'OldFile' || r.type === 'ContiguousFile') {
        e.type = 'file';
        const h = createHash('sha256');
        r.on('data', (c: Buffer) => h.update(c));
        r.on('end', () => (e.sha = h.digest('hex')));
        entries.push(item);
        return;
      }
      entries.push(item);
      r.resume();
    });
    parser.on('end', () => resolve());
    parser.on('error', reject);
    const stream = createReadStream(file);
    stream.on('error', reject);
    stream.pipe(parser as unknown as NodeJS.WritableStream);
  });
  for (const d of opaques) for (const k of [...model.keys()]) if (d === '' || k.startsWith(d + '/')) model.delete(k);
  for (const w of whiteouts) dropTree(model, w);
  for (const { path, e, link } of entries) {
    const existing = model.get(path);
    if (existing && !(existing.type === 'dir' && e.type === 'dir')) dropTree(model, path);
    model.set(path, link ? { ...(model.get(link) ?? e), uid: e.uid, gid: e.gid } : e);
  }
}

export async function modelFromLayers(files: string[]): Promise<RootfsModel> {
  const m: RootfsModel = new Map();
  for (const f of files) await applyLayerToModel(m, f);
  return m;
}

export async function modelFromDir(root: string): Promise<RootfsModel> {
  const m: RootfsModel = new Map();
  const walk = async (rel: string) => {
    for (const n of (await fs.readdir(rel ? join(root, rel) : root)).sort()) {
      const p = rel ? `${rel}/${n}` : n;
      const st = await fs.lstat(join(root, p));
      const e: FsEntry = { type: 'other', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (st.isDirectory()) e.type = 'dir';
      else if (st.isSymbolicLink()) {
        e.type = 'symlink';
        e.target = await fs.readlink(join(root, p));
        e.mode = 0o777;
      } else if (st.isFile()) {
        e.type = 'file';
        e.sha = createHash('sha256').update(await fs.readFile(join(root, p))).digest('hex');
      }
      m.set(p, e);
      if (e.type === 'dir') await walk(p);
    }
  };
  await walk('');
  return m;
}

function show(e: FsEntry): string {
  const mode = e.mode.toString(8).padStart(4, '0');
  const what = e.type === 'symlink' ? `symlink -> ${e.target}` : e.type === 'file' ? `file ${e.sha?.slice(0, 12)}` : e.type;
  return `${what} ${mode} ${e.uid}:${e.gid}`;
}

/** Readable differences, one line a path; empty when the trees are the same. `skipOnlyInB` are paths B may add. */
export function diffModels(a: RootfsModel, b: RootfsModel, names: [string, string], skipOnlyInB: Set<string> = new Set()): string[] {
  const out: string[] = [];
  for (const p of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(p);
    const y = b.get(p);
    if (!x && y && skipOnlyInB.has(p)) continue;
    if (!x) out.push(`/${p}: only in ${names[1]} (${show(y!)})`);
    else if (!y) out.push(`/${p}: only in ${names[0]} (${show(x)})`);
    else if (show(x) !== show(y)) out.push(`/${p}: ${names[0]} has ${show(x)}, ${names[1]} has ${show(y)}`);
  }
  return out;
}
