/**
 * ADD of a local tar archive: the archive is recognised by its content (as Docker does, whatever its name), read
 * and checked entry by entry before anything is written, and its entries become members of the layer below the
 * destination directory. Plain and gzip-compressed tars are unpacked (what node's zlib reads); bzip2, xz and zstd
 * ones are refused with a way out. Entry names must stay inside the destination (no absolute names, no `..`), a
 * relative symlink may not point above it, a hard link must point to a file earlier in the archive, and nothing
 * may be reached through a symlink or a file of the archive itself. Content is read again when the layer is written.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import type { ArchiveRef, SourceMember } from './copy-dest.js';
import type { LayerEntry } from './layer-writer.js';
import { TAR_KINDS } from './layer-tree.js';

export type ArchiveKind = 'tar' | 'gzip' | { refused: string };

/** A problem with one archive entry (or the archive); the caller names the Kubefile line. */
export class ArchiveProblem extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

const OTHER: { bytes: number[]; name: string; tool: string }[] = [
  { bytes: [0x42, 0x5a, 0x68], name: 'bzip2', tool: 'bunzip2' },
  { bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], name: 'xz', tool: 'unxz' },
  { bytes: [0x28, 0xb5, 0x2f, 0xfd], name: 'zstd', tool: 'unzstd' },
];

/** A 512-byte block is a tar header when its checksum is right (what Go's tar reader, and so Docker, accepts). */
function isTarHeader(block: Buffer): boolean {
  if (block.length < 512 || block.every((b) => b === 0)) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return parseInt(field, 8) === sum;
}

async function head(file: string, bytes: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function gunzippedHead(file: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  const gz = createGunzip();
  const src = createReadStream(file);
  try {
    await pipeline(src, gz, async function* (input: AsyncIterable<Buffer>) {
      for await (const c of input) {
        chunks.push(c);
        total += c.length;
        if (total >= 512) break;
      }
    });
  } catch {
    // A truncated or odd stream: what was read decides.
  } finally {
    src.destroy();
  }
  return Buffer.concat(chunks);
}

/** What ADD does with a local file: unpack it (tar, gzip), refuse it (other compressions), or copy it (undefined). */
export async function archiveKind(file: string): Promise<ArchiveKind | undefined> {
  const h = await head(file, 512);
  if (h.length >= 2 && h[0] === 0x1f && h[1] === 0x8b) return isTarHeader(await gunzippedHead(file)) ? 'gzip' : undefined;
  const other = OTHER.find((m) => h.length >= m.bytes.length && m.bytes.every((b, i) => h[i] === b));
  if (other) return { refused: `${other.name}-compressed; ADD unpacks plain and gzip-compressed tar archives only (decompress it in the build context with ${other.tool}, or COPY it to keep it as it is)` };
  return isTarHeader(h) ? 'tar' : undefined;
}

/** The entry's name below the destination: `./` prefixes and a trailing `/` dropped; '' is the archive's root. */
function entryName(raw: string): string {
  if (raw.startsWith('/')) throw new ArchiveProblem('the entry name is absolute; entries must be relative to the destination');
  if (/[\u0000-\u001f\u007f\ufffd]/.test(raw)) throw new ArchiveProblem('the entry name contains a control character or is not valid UTF-8');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new ArchiveProblem('the entry name climbs out of the destination through ".."');
  return parts.join('/');
}

/** True when a relative symlink at `rel` with target `t` points above the archive's root. */
function climbsAbove(rel: string, t: string): boolean {
  if (t.startsWith('/')) return false;
  let depth = rel.split('/').length - 1;
  for (const p of t.split('/')) {
    if (p === '..') depth--;
    else if (p !== '' && p !== '.') depth++;
    if (depth < 0) return true;
  }
  return false;
}

/** Reads every entry (content hashed, not kept) and checks it; returns the members in archive order. */
export async function scanArchive(file: string): Promise<SourceMember[]> {
  const byName = new Map<string, SourceMember>();
  let problem: ArchiveProblem | undefined;
  let ordinal = -1;
  const fail = (entry: string, why: string, hint?: string) => {
    problem ??= new ArchiveProblem(`entry ${JSON.stringify(entry)}: ${why}`, hint);
  };
  const pending: Promise<void>[] = [];
  const onEntry = (e: ReadEntry) => {
    ordinal++;
    const raw = e.path;
    if (problem) return void e.resume();
    try {
      const type = TAR_KINDS[e.type];
      if (!type) throw new ArchiveProblem(`entries of type ${e.type} cannot be added to an image; only files, directories and links`);
      const rel = entryName(raw);
      // Nothing goes through a symlink or a file the archive made, as no extractor could write it safely.
      for (let d = posix.dirname(rel); rel && d !== '.'; d = posix.dirname(d)) {
        const above = byName.get(d);
        if (above && above.kind !== 'dir') throw new ArchiveProblem(`the entry is reached through "${d}", which the archive makes a ${above.kind === 'symlink' ? 'symlink' : 'file'}`);
      }
      if (rel === '' && type !== 'dir') throw new ArchiveProblem('an entry that is not a directory names the destination itself');
      const base = { rel, mode: (e.mode ?? 0o644) & 0o7777, uid: e.uid ?? 0, gid: e.gid ?? 0 };
      let member: SourceMember;
      if (type === 'dir') {
        member = { ...base, kind: 'dir' };
        e.resume();
      } else if (type === 'symlink') {
        const t = e.linkpath ?? '';
        if (!t) throw new ArchiveProblem('the symlink has no target');
        if (/[\u0000-\u001f\u007f\ufffd]/.test(t)) throw new ArchiveProblem('the symlink target contains a control character or is not valid UTF-8');
        if (climbsAbove(rel, t)) throw new ArchiveProblem(`the symlink points to "${t}", above the destination directory`);
        member = { ...base, kind: 'symlink', linkname: t };
        e.resume();
      } else if (type === 'hardlink') {
        const target = entryName(e.linkpath ?? '');
        const to = byName.get(target);
        if (!to || to.kind !== 'file') throw new ArchiveProblem(`the hard link points to "${e.linkpath}", which is not a file earlier in the archive`);
        // One inode: the link's mode and owner are the file's too, as extraction leaves them.
        Object.assign(to, { mode: base.mode, uid: base.uid, gid: base.gid });
        member = { ...base, kind: 'file', size: to.size, hash: to.hash, archive: to.archive };
        e.resume();
      } else {
        const h = createHash('sha256');
        member = { ...base, kind: 'file', size: e.size ?? 0, archive: { file, ordinal } };
        const m = member;
        pending.push(
          new Promise<void>((done) => {
            e.on('data', (c: Buffer) => h.update(c));
            e.on('end', () => {
              m.hash = h.digest('hex');
              done();
            });
          }),
        );
      }
      if (rel !== '' && byName.get(rel)?.kind === 'dir' && member.kind !== 'dir') {
        for (const k of [...byName.keys()]) if (k.startsWith(rel + '/')) byName.delete(k);
      }
      byName.delete(rel); // a later entry of the same name wins, and keeps the archive's order
      byName.set(rel, member);
    } catch (err) {
      e.resume();
      if (err instanceof ArchiveProblem) fail(raw, err.message, err.hint);
      else throw err;
    }
  };
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({ strict: true, maxDecompressionRatio: Number.MAX_SAFE_INTEGER });
    parser.on('entry', onEntry);
    parser.on('ignoredEntry', (e: ReadEntry) => {
      ordinal++;
      e.resume();
      fail(e.path, `entries of type ${e.type} cannot be added to an image; only files, directories and links`);
    });
    parser.on('error', (err: Error) => {
      problem ??= new ArchiveProblem(`the archive cannot be read: ${err.message}`, 'check that the file is a complete tar archive');
      resolve();
    });
    parser.on('end', () => resolve());
    const s = createReadStream(file);
    s.on('error', reject);
    s.pipe(parser as unknown as NodeJS.WritableStream);
  });
  await Promise.all(pending);
  if (problem) throw problem;
  return [...byName.values()];
}

/**
 * Writes the content of the entries that come out of archives into `dir` (one file per entry, named by its
 * position, never by the archive's name) and points the layer entries at them.
 */
export async function materializeArchives(entries: LayerEntry[], fromArchive: Map<string, ArchiveRef>, dir: string): Promise<void> {
  const wanted = new Map<string, Map<number, string>>();
  let n = 0;
  for (const ref of fromArchive.values()) {
    if (!wanted.has(ref.file)) wanted.set(ref.file, new Map());
    const byOrdinal = wanted.get(ref.file)!;
    if (!byOrdinal.has(ref.ordinal)) byOrdinal.set(ref.ordinal, join(dir, String(n++)));
  }
  await fs.mkdir(dir, { recursive: true });
  for (const [file, ordinals] of wanted) {
    let ordinal = -1;
    const writes: Promise<void>[] = [];
    await new Promise<void>((resolve, reject) => {
      const parser = new Parser({ strict: true, maxDecompressionRatio: Number.MAX_SAFE_INTEGER });
      const next = (e: ReadEntry) => {
        ordinal++;
        const out = ordinals.get(ordinal);
        if (!out) return void e.resume();
        writes.push(pipeline(e as unknown as NodeJS.ReadableStream, createWriteStream(out, { mode: 0o600 })));
      };
      parser.on('entry', next);
      parser.on('ignoredEntry', (e: ReadEntry) => {
        ordinal++;
        e.resume();
      });
      parser.on('error', reject);
      parser.on('end', () => resolve());
      const s = createReadStream(file);
      s.on('error', reject);
      s.pipe(parser as unknown as NodeJS.WritableStream);
    });
    await Promise.all(writes);
  }
  for (const e of entries) {
    const ref = e.type === 'file' ? fromArchive.get(e.path) : undefined;
    if (ref && e.type === 'file') e.source = wanted.get(ref.file)!.get(ref.ordinal)!;
  }
}
