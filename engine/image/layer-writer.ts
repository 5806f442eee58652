/**
 * Writes a layer as a reproducible tar: entries in the order given (callers sort), mtime fixed at the epoch, numeric
 * owners only (root unless the entry says otherwise), no user names, permission bits kept, no device files. Headers
 * are encoded by node-tar; we own the entry order and metadata because that is what reproducibility depends on.
 *
 * The tar is gzipped (no timestamp) unless gzip would barely shrink it: content that is compressed already (image
 * tarballs, packages, random data) is stored as a plain tar (OCI `layer.v1.tar`), so neither the build nor every
 * host's unpack spends a core on a compression that saves nothing on the wire. The choice is made from the first
 * PROBE_BYTES of the tar, so the same content always gives the same layer.
 */
import { createReadStream } from 'node:fs';
import { createGzip, gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { PassThrough, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

/** How much of a layer's tar decides whether it is gzipped, and the share of it gzip must save to be worth it. */
export const PROBE_BYTES = 8 * 1024 * 1024;
const WORTH_GZIP = 0.95;

/** Whether a layer whose tar starts with `head` is gzipped: only when gzip makes that start 5% smaller or more. */
export function worthGzip(head: Buffer): boolean {
  return head.length > 0 && gzipSync(head, { level: 6 }).length <= head.length * WORTH_GZIP;
}

function writeTo(sink: Writable, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    sink.once('error', onError);
    const done = () => {
      sink.off('error', onError);
      resolve();
    };
    if (sink.write(buf)) done();
    else sink.once('drain', done);
  });
}

/** Streams the entries as a tar (gzipped when worth it, see above) into the store, hashing both forms on the way. */
export async function writeLayer(store: ImageStore, entries: LayerEntry[], contents?: Map<string, Buffer>): Promise<WrittenLayer> {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const stored = store.putStream(out);
  stored.catch(() => {});
  const diffHash = createHash('sha256');
  let sink: Writable | undefined;
  let piped: Promise<void> | undefined;
  let head: Buffer[] = [];
  let headBytes = 0;
  const choose = async () => {
    const start = Buffer.concat(head);
    head = [];
    if (worthGzip(start)) {
      const gz = createGzip({ level: 6 });
      piped = pipeline(gz, out);
      piped.catch(() => {});
      sink = gz;
    } else sink = out;
    if (start.length > 0) await writeTo(sink, start);
  };
  const write = async (buf: Buffer) => {
    diffHash.update(buf);
    if (sink) return writeTo(sink, buf);
    head.push(buf);
    headBytes += buf.length;
    if (headBytes >= PROBE_BYTES) await choose();
  };
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
    if (!sink) await choose();
    sink!.end();
    if (piped) await piped;
  } catch (err) {
    (sink ?? out).destroy(err as Error);
    out.destroy(err as Error);
    await stored.catch(() => {});
    throw err;
  }
  const { digest, size } = await stored;
  return { digest, diffId: `sha256:${diffHash.digest('hex')}`, size };
}
