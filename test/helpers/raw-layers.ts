/**
 * Layers written byte by byte, including what no well-behaved tool writes (absolute names, `..`, devices, links
 * through symlinks, duplicate entries, global headers), and images made of them put straight into a store, the
 * way a store written by another tool or a tampered archive would hold them.
 */
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { sha256, type Digest } from '../../engine/kernel/digest.js';
import { MEDIA, type ImageConfig, type Manifest } from '../../engine/image/oci.js';
import type { ImageStore } from '../../engine/image/store.js';

export interface RawEntry {
  path: string;
  /** node-tar type names: File, Directory, SymbolicLink, Link, CharacterDevice, BlockDevice, FIFO, SparseFile... */
  type?: string;
  mode?: number;
  linkpath?: string;
  content?: string;
  /** Extra pax records written in an extended header before the entry (a path here overrides the header's). */
  pax?: Record<string, string>;
}

function paxBlock(records: Record<string, string>, global = false): Buffer {
  const body = Buffer.from(
    Object.entries(records)
      .map(([k, v]) => {
        const s = ` ${k}=${v}\n`;
        let len = Buffer.byteLength(s) + 1;
        while (String(len).length + Buffer.byteLength(s) !== len) len = String(len).length + Buffer.byteLength(s);
        return `${len}${s}`;
      })
      .join(''),
  );
  const h = new Header({ path: 'PaxHeader', type: global ? 'GlobalExtendedHeader' : 'ExtendedHeader', size: body.length, mode: 0o644, mtime: new Date(0) });
  const block = Buffer.alloc(512);
  h.encode(block);
  return Buffer.concat([block, body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

function entryBlocks(e: RawEntry): Buffer {
  const content = Buffer.from(e.content ?? '');
  const type = e.type ?? 'File';
  const size = type === 'File' ? content.length : 0;
  const h = new Header({
    path: e.path,
    type: type as never,
    mode: e.mode ?? (type === 'Directory' ? 0o755 : 0o644),
    size,
    mtime: new Date(0),
    uid: 0,
    gid: 0,
    linkpath: e.linkpath ?? '',
    uname: '',
    gname: '',
  });
  const block = Buffer.alloc(512);
  h.encode(block);
  const parts: Buffer[] = [];
  const pax: Record<string, string> = { ...(e.pax ?? {}) };
  if (h.needPax) {
    pax.path ??= e.path;
    if (e.linkpath) pax.linkpath ??= e.linkpath;
  }
  if (Object.keys(pax).length) parts.push(paxBlock(pax));
  parts.push(block);
  if (size) parts.push(content, Buffer.alloc((512 - (size % 512)) % 512));
  return Buffer.concat(parts);
}

/** An uncompressed tar of the entries, in the order given; `globalPax` first when set. */
export function rawTar(entries: RawEntry[], opts: { globalPax?: Record<string, string> } = {}): Buffer {
  const parts = [...(opts.globalPax ? [paxBlock(opts.globalPax, true)] : []), ...entries.map(entryBlocks), Buffer.alloc(1024)];
  return Buffer.concat(parts);
}

/** A gzip-compressed layer, as images carry them. */
export function rawLayer(entries: RawEntry[], opts: { globalPax?: Record<string, string> } = {}): Buffer {
  return gzipSync(rawTar(entries, opts));
}

/** Puts an image made of these layer blobs into the store and names it, checking nothing. Returns the digests. */
export async function injectImage(
  store: ImageStore,
  ref: string,
  layers: Buffer[],
  opts: { allowSetid?: boolean; cmds?: string[] } = {},
): Promise<{ digest: Digest; layers: Digest[] }> {
  await store.init();
  const stored = [];
  for (const l of layers) stored.push(await store.putBlob(l));
  const config: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    config: { Env: [], Labels: {} },
    rootfs: { type: 'layers', diff_ids: layers.map(() => sha256('')) },
    history: layers.map((_, i) => ({ created_by: `raw layer ${i + 1}` })),
    cloudimage: {
      version: 1,
      layers: layers.map((_, i) => ({ createdBy: `raw layer ${i + 1}` })),
      cmds: [],
      ...(opts.allowSetid ? { allowSetid: true } : {}),
    },
  };
  const cfg = await store.putBlob(JSON.stringify(config));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: cfg.digest, size: cfg.size },
    layers: stored.map((b) => ({ mediaType: MEDIA.layerGzip, digest: b.digest, size: b.size })),
  };
  const desc = await store.putManifest(manifest);
  await store.tag(ref, desc);
  return { digest: desc.digest, layers: stored.map((b) => b.digest) };
}
