/**
 * Writes a layer as a reproducible tar+gzip: entries in the order given (callers sort), mtime fixed at the
 * epoch, numeric owners only (root unless the entry says otherwise), no user names, permission bits kept, no device files; gzip with no timestamp.
 * Headers are encoded by node-tar; we own the entry order and metadata because that is what reproducibility
 * depends on.
 */
import { createReadStream } from 'node:fs';
import { createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { PassThrough, Transform } from 'node:stream';
import { Header, Pax } from 'tar';
import type { Digest } from '../kernel/digest.js';
import type { ImageStore } from './store.js';

/** Owners are root unless given (COPY --chown, an ADDed archive's own). */
interface Owned {
  uid?: number;
  gid?: number;
}

export type LayerEntry =
  | ({ type: 'dir'; path: string; mode: number } & Owned)
  | ({ type: 'file'; path: string; mode: number; size: number; source?: string } & Owned)
  | ({ type: 'symlink'; path: string; linkname: string } & Owned);

export const WHITEOUT_PREFIX = '.wh.';
const EPOCH = new Date(0);

export function whiteoutFor(path: string): LayerEntry {
  const slash = path.lastIndexOf('/');
  const dir = slash < 0 ? '' : path.slice(0, slash + 1);
  return { type: 'file', path: `${dir}${WHITEOUT_PREFIX}${path.slice(slash + 1)}`, mode: 0o644, size: 0 };
}

/** Byte order of paths, so every machine and locale sorts alike. */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function headerBlocks(e: LayerEntry): Buffer {
  const name = e.type === 'dir' ? `${e.path}/` : e.path;
  const data = {
    path: name,
    mode: e.type === 'symlink' ? 0o777 : e.mode & 0o7777,
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    size: e.type === 'file' ? e.size : 0,
    mtime: EPOCH,
    type: e.type === 'dir' ? 'Directory' : e.type === 'symlink' ? 'SymbolicLink' : 'File',
    linkpath: e.type === 'symlink' ? e.linkname : '',
    uname: '',
    gname: '',
  } as const;
  const h = new Header(data);
  const block = Buffer.alloc(512);
  h.encode(block);
  if (!h.needPax) return block;
  const pax = new Pax({ path: name, linkpath: e.type === 'symlink' ? e.linkname : undefined, size: data.size, ...(data.uid ? { uid: data.uid } : {}), ...(data.gid ? { gid: data.gid } : {}) });
  return Buffer.concat([pax.encode(), block]);
}

function padding(size: number): Buffer {
  const rem = size % 512;
  return Buffer.alloc(rem === 0 ? 0 : 512 - rem);
}

export interface WrittenLayer {
  digest: Digest;
  diffId: Digest;
  size: number;
}

/** Streams the entries through tar and gzip into the store, hashing both forms on the way. */
export async function writeLayer(store: ImageStore, entries: LayerEntry[], contents?: Map<string, Buffer>): Promise<WrittenLayer> {
  const tar = new PassThrough({ highWaterMark: 1 << 20 });
  const diffHash = createHash('sha256');
  const tap = (h: ReturnType<typeof createHash>) =>
    new Transform({
      transform(chunk, _enc, cb) {
        h.update(chunk);
        cb(null, chunk);
      },
    });
  const gz = tar.pipe(tap(diffHash)).pipe(createGzip({ level: 6 }));
  const stored = store.putStream(gz);
  let failed: Error | undefined;
  tar.on('error', (err) => (failed ??= err));
  const write = (buf: Buffer) =>
    new Promise<void>((resolve, reject) => {
      if (failed) reject(failed);
      else if (tar.write(buf)) resolve();
      else tar.once('drain', resolve);
    });
  try {
    for (const e of entries) {
      await write(headerBlocks(e));
      if (e.type !== 'file' || e.size === 0) continue;
      const inline = contents?.get(e.path);
      let written = 0;
      if (inline) {
        await write(inline);
        written = inline.length;
      } else if (e.source) {
        for await (const chunk of createReadStream(e.source)) {
          await write(chunk as Buffer);
          written += (chunk as Buffer).length;
        }
      }
      if (written !== e.size) throw new Error(`${e.path} changed size while it was being packed (${e.size} -> ${written} bytes)`);
      await write(padding(e.size));
    }
    await write(Buffer.alloc(1024));
    tar.end();
  } catch (err) {
    tar.destroy(err as Error);
    await stored.catch(() => {});
    throw err;
  }
  const { digest, size } = await stored;
  return { digest, diffId: `sha256:${diffHash.digest('hex')}`, size };
}
