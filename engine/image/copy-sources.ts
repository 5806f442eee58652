/**
 * Resolves a COPY's sources inside the build context into layer entries. Everything a COPY reads must stay inside
 * the context: absolute sources, `..` that climbs out, and symlinks (at any depth) that point outside are refused.
 */
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join, posix, resolve, sep, dirname, isAbsolute } from 'node:path';
import fg from 'fast-glob';
import type { Digest } from '../kernel/digest.js';
import { sha256 } from '../kernel/digest.js';
import { KubefileError, type Location } from '../kernel/errors.js';
import { comparePaths, type LayerEntry } from './layer-writer.js';

export interface CopyPlan {
  entries: LayerEntry[];
  /** Digest over every entry's path, type, mode and content: the cache key's view of the sources. */
  contentDigest: Digest;
}

const GLOB_CHARS = /[*?[\]{}]/;

function within(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Layer path (relative, no leading slash) for a destination inside the image rootfs. */
function imagePath(dest: string, loc: Location): string {
  const norm = posix.normalize('/' + dest.replace(/\\/g, '/')).replace(/^\/+/, '').replace(/\/+$/, '');
  if (norm.split('/').includes('..')) throw new KubefileError(loc, `COPY destination "${dest}" climbs out of the image root`);
  return norm === '.' ? '' : norm;
}

export async function planCopy(context: string, sources: string[], dest: string, loc: Location): Promise<CopyPlan> {
  const ctxReal = await fs.realpath(context);
  const matches: string[] = [];
  for (const src of sources) {
    if (isAbsolute(src)) {
      throw new KubefileError(loc, `COPY source "${src}" is an absolute path; sources are relative to the build context ${context}`);
    }
    const norm = posix.normalize(src.replace(/\\/g, '/'));
    if (norm === '..' || norm.startsWith('../')) {
      throw new KubefileError(loc, `COPY source "${src}" is outside the build context ${context}`);
    }
    if (GLOB_CHARS.test(norm)) {
      const found = (await fg(norm, { cwd: ctxReal, dot: true, onlyFiles: false, followSymbolicLinks: false, unique: true })).sort(comparePaths);
      if (found.length === 0) throw new KubefileError(loc, `COPY source "${src}" matches nothing in the build context ${context}`);
      matches.push(...found);
    } else {
      matches.push(norm.replace(/\/+$/, '') || '.');
    }
  }

  const destDirLike = dest.endsWith('/') || matches.length > 1;
  const destPath = imagePath(dest, loc);
  const byPath = new Map<string, LayerEntry>();
  const hashes = new Map<string, string>();

  const checkInside = async (abs: string, shown: string) => {
    // The parent chain must not leave the context through a symlinked directory.
    const parentReal = await fs.realpath(dirname(abs)).catch(() => undefined);
    if (!parentReal || !within(ctxReal, parentReal)) {
      throw new KubefileError(loc, `COPY source "${shown}" is reached through a symlink that leaves the build context`);
    }
  };

  const addTree = async (abs: string, shown: string, target: string) => {
    const st = await fs.lstat(abs);
    if (st.isSymbolicLink()) {
      const link = await fs.readlink(abs);
      const resolved = resolve(dirname(abs), link);
      const real = await fs.realpath(resolved).catch(() => resolved);
      if (isAbsolute(link) || !within(ctxReal, resolved) || !within(ctxReal, real)) {
        throw new KubefileError(loc, `COPY source "${shown}" is a symlink to "${link}", which is outside the build context`);
      }
      byPath.set(target, { type: 'symlink', path: target, linkname: link });
    } else if (st.isDirectory()) {
      if (target) byPath.set(target, { type: 'dir', path: target, mode: st.mode & 0o7777 });
      const names = (await fs.readdir(abs)).sort(comparePaths);
      for (const n of names) await addTree(join(abs, n), posix.join(shown, n), target ? `${target}/${n}` : n);
    } else if (st.isFile()) {
      if (!target) throw new KubefileError(loc, `COPY of file "${shown}" needs a file name as destination, not the image root`);
      byPath.set(target, { type: 'file', path: target, mode: st.mode & 0o7777, size: st.size, source: abs });
      hashes.set(target, await hashFile(abs));
    } else {
      throw new KubefileError(loc, `COPY source "${shown}" is a device, socket or pipe; only files, directories and symlinks can be copied`);
    }
  };

  for (const m of matches) {
    const abs = join(ctxReal, m);
    await checkInside(abs, m);
    let st;
    try {
      st = await fs.lstat(abs);
    } catch {
      throw new KubefileError(loc, `COPY source "${m}" does not exist in the build context ${context}`);
    }
    const isDir = st.isDirectory();
    const base = posix.basename(m === '.' ? '' : m);
    const target = isDir ? destPath : destDirLike ? (destPath ? `${destPath}/${base}` : base) : destPath;
    await addTree(abs, m, target);
  }

  // Parent directories of everything copied, so modes are explicit and extraction never guesses.
  for (const p of [...byPath.keys()]) {
    let parent = posix.dirname(p);
    while (parent !== '.' && parent !== '' && !byPath.has(parent)) {
      byPath.set(parent, { type: 'dir', path: parent, mode: 0o755 });
      parent = posix.dirname(parent);
    }
  }
  const entries = [...byPath.values()].sort((a, b) => comparePaths(a.path, b.path));
  const fingerprint = entries.map((e) =>
    e.type === 'file' ? ['f', e.path, e.mode, hashes.get(e.path)] : e.type === 'dir' ? ['d', e.path, e.mode] : ['l', e.path, e.linkname],
  );
  return { entries, contentDigest: sha256(JSON.stringify(fingerprint)) };
}
