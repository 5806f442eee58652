/**
 * Resolves a rootfs-relative path inside a directory holding the rootfs, following its symlinks the way a host
 * would inside the rootfs: relative targets are followed while they stay inside; an absolute target or one that
 * climbs out is refused, as on a host (where the rootfs is a plain directory) it would name a file of the host.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

export class ConfineError extends Error {}

const MAX_LINKS = 40;

/** The real rootfs-relative path `rel` names (its last part may not exist yet). */
export async function confine(root: string, rel: string): Promise<string> {
  const pending = rel.split('/').filter((s) => s !== '' && s !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const seg = pending.shift()!;
    if (seg === '..') {
      if (done.length === 0) throw new ConfineError(`${rel} leads out of the rootfs`);
      done.pop();
      continue;
    }
    const here = [...done, seg].join('/');
    const st = await fs.lstat(join(root, here)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw err;
    });
    if (!st) {
      done.push(seg, ...pending.filter((s) => s !== '' && s !== '.'));
      if (done.includes('..')) throw new ConfineError(`${rel} goes through a directory the image does not have and then ".."`);
      return done.join('/');
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new ConfineError(`${rel}: too many levels of symlinks`);
      const target = await fs.readlink(join(root, here));
      if (target.startsWith('/')) throw new ConfineError(`${rel} goes through the symlink ${here} -> ${target}, which leaves the rootfs (an absolute target names the host's own file)`);
      const climbs = [...done, ...target.split('/')].reduce((depth, s) => (depth < 0 ? depth : s === '..' ? depth - 1 : s === '' || s === '.' ? depth : depth + 1), 0);
      if (climbs < 0) throw new ConfineError(`${rel} goes through the symlink ${here} -> ${target}, which leaves the rootfs`);
      pending.unshift(...target.split('/'));
      continue;
    }
    if (pending.length > 0 && !st.isDirectory()) throw new ConfineError(`${rel}: ${here} is a file of the image, not a directory`);
    if (pending.length === 0 && st.isDirectory()) throw new ConfineError(`${rel} is a directory of the image, not a file`);
    done.push(seg);
  }
  if (done.length === 0) throw new ConfineError(`${rel} names the rootfs itself, not a file`);
  return done.join('/');
}
