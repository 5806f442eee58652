/**
 * Where COPY and ADD put their sources in the image, with Docker's rules, decided against the tree the image's
 * layers build so far (base image included, whiteouts honoured):
 * - a destination ending in `/` (or `.`), one that is a directory in the image (through symlinks), or one that
 *   receives several sources is a directory: a file source goes into it under its own name;
 * - otherwise a single file source is written at the destination itself, replacing a file or symlink there;
 * - a directory source copies its contents (not itself) into the destination directory, merging with what is
 *   there; an ADDed archive is unpacked into it;
 * - several sources need a directory destination, or it is an error (Docker's rule);
 * - a destination directory that already exists keeps its mode and owner; one that is created, and every missing
 *   parent, gets mode 0755 and the `--chown` owner (root otherwise);
 * - entries copied from the context take `--chmod` and `--chown` when given; an archive's entries keep their own
 *   mode and owner;
 * - a path inside a copied directory that the image has as a symlink or a file is replaced, never written
 *   through, as an archive extraction does.
 * Relative destinations start at `/` (there is no WORKDIR).
 */
import { posix } from 'node:path';
import { canonicalJson, sha256, type Digest } from '../kernel/digest.js';
import type { Owner } from './copy-owner.js';
import type { ImageTree } from './image-tree.js';
import { comparePaths, type LayerEntry } from './layer-writer.js';

export interface SourceMember {
  /** Path below the source's root; '' is the root itself (archives only: the `./` entry). */
  rel: string;
  kind: 'file' | 'dir' | 'symlink';
  mode: number;
  /** Archives keep their entries' owners; context files take `--chown` or root. */
  uid?: number;
  gid?: number;
  size?: number;
  /** The file in the build context with the content. */
  source?: string;
  /** sha256 of the content, for the cache key. */
  hash?: string;
  linkname?: string;
  /** Content that is read out of an archive when the layer is written. */
  archive?: ArchiveRef;
}

export interface ArchiveRef {
  file: string;
  /** Index of the entry in the archive (in reading order). */
  ordinal: number;
}

export interface SourceItem {
  kind: 'file' | 'dir' | 'archive';
  /** As the Kubefile names it, for messages. */
  shown: string;
  /** The name a file source gets inside a destination directory. */
  name: string;
  members: SourceMember[];
}

export interface PlaceOptions {
  op?: 'COPY' | 'ADD';
  owner?: Owner;
  chmod?: number;
}

export interface Placement {
  entries: LayerEntry[];
  /** Entries whose content comes out of an archive, by layer path. */
  fromArchive: Map<string, ArchiveRef>;
  contentDigest: Digest;
}

/** A destination that cannot take the sources; the caller adds the Kubefile line. */
export class PlaceProblem extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** A destination written as a directory: ends in `/`, or is `.`/`..` or ends in `/.`/`/..`. */
export function isDirSyntax(dest: string): boolean {
  return /(^|\/)\.{0,2}$/.test(dest);
}

/** The destination as a path below the image root ('' is the root); relative ones start at `/`, `..` stops at `/`. */
export function destPath(dest: string): string {
  return posix.normalize('/' + dest.replace(/\\/g, '/')).replace(/^\/+/, '').replace(/\/+$/, '');
}

const shownDest = (p: string) => '/' + p;

export function placeSources(tree: ImageTree, items: SourceItem[], dest: string, opts: PlaceOptions = {}): Placement {
  const op = opts.op ?? 'COPY';
  const rel = destPath(dest);
  const dirSyntax = isDirSyntax(dest);
  const followed = tree.resolve(rel, true);
  const unfollowed = tree.resolve(rel, false);
  for (const r of [followed, unfollowed]) {
    if (!r.ok) {
      throw new PlaceProblem(
        r.why === 'loop'
          ? `destination ${dest}: "${shownDest(r.at)}" is a symlink loop in the image`
          : `destination ${dest}: "${shownDest(r.at)}" is a file in the image, so nothing can be put below it`,
        'choose a destination whose parents are directories in the image',
      );
    }
  }
  if (!followed.ok || !unfollowed.ok) throw new Error('unreachable');
  const destIsDir = followed.node?.kind === 'dir';
  const multiple = items.length > 1;
  if (multiple && !dirSyntax && !destIsDir) {
    const names = items.map((i) => i.shown).slice(0, 4).join(', ') + (items.length > 4 ? ', ...' : '');
    throw new PlaceProblem(
      `${op} has ${items.length} sources (${names}), so the destination must be a directory, and ${dest} is ${followed.node ? 'a file in the image' : 'not one'}`,
      followed.node ? 'choose a directory as destination' : `end the destination with / (${dest}/) to copy them into that directory`,
    );
  }

  const uid = opts.owner?.uid ?? 0;
  const gid = opts.owner?.gid ?? 0;
  const out = new Map<string, LayerEntry>();
  const fromArchive = new Map<string, ArchiveRef>();
  const hashes = new Map<string, string>();
  /** Directories the sources go into that the image lacks: created 0755 with the owner. */
  const created = new Set<string>();

  const set = (e: LayerEntry, m?: SourceMember) => {
    if (e.type !== 'dir') {
      // A later non-directory replaces an earlier directory of the same layer and all it held.
      for (const k of [...out.keys()]) if (k.startsWith(e.path + '/')) out.delete(k);
    }
    out.set(e.path, e);
    if (m?.hash) hashes.set(e.path, m.hash);
    else hashes.delete(e.path);
    if (m?.archive) fromArchive.set(e.path, m.archive);
    else fromArchive.delete(e.path);
  };

  const entryFor = (path: string, m: SourceMember, fromContext: boolean): LayerEntry => {
    const owner = fromContext ? { uid, gid } : { uid: m.uid ?? 0, gid: m.gid ?? 0 };
    const mode = fromContext && opts.chmod !== undefined ? opts.chmod : m.mode;
    if (m.kind === 'dir') return { type: 'dir', path, mode, ...owner };
    if (m.kind === 'symlink') return { type: 'symlink', path, linkname: m.linkname!, ...owner };
    return { type: 'file', path, mode, size: m.size ?? 0, source: m.source, ...owner };
  };

  const intoDir = (what: string): string => {
    const node = followed.node;
    if (node && node.kind !== 'dir') {
      throw new PlaceProblem(
        `destination ${dest} is a file in the image; ${what} can only be copied into a directory`,
        'choose another destination, or remove that file in an earlier step',
      );
    }
    if (!node && followed.path !== '') created.add(followed.path);
    return followed.path;
  };

  for (const item of items) {
    if (item.kind === 'file') {
      const m = item.members[0];
      if (!dirSyntax && !destIsDir && !multiple) {
        if (unfollowed.path === '') throw new PlaceProblem('a file cannot replace the image root', 'give the file a name: COPY file /name, or copy it into / with COPY file /');
        set(entryFor(unfollowed.path, m, true), m);
      } else {
        const dir = intoDir(`the file ${item.shown}`);
        set(entryFor(join(dir, item.name), m, true), m);
      }
      continue;
    }
    const dir = intoDir(item.kind === 'dir' ? `the directory ${item.shown}` : `the archive ${item.shown}`);
    for (const m of item.members) {
      if (m.rel === '') {
        // An archive's own `./` entry sets the destination directory's mode and owner, as extraction does.
        if (m.kind === 'dir' && dir !== '') {
          set(entryFor(dir, m, false));
          created.delete(dir);
        }
        continue;
      }
      set(entryFor(join(dir, m.rel), m, item.kind === 'dir'), m);
    }
  }

  // Missing parents, and parents the image has as something other than a directory, become directories.
  const parents = new Set<string>(created);
  for (const p of out.keys()) {
    for (let d = posix.dirname(p); d !== '.' && d !== ''; d = posix.dirname(d)) parents.add(d);
  }
  for (const d of parents) {
    if (out.has(d)) continue;
    if (tree.lookup(d)?.kind === 'dir') continue;
    out.set(d, { type: 'dir', path: d, mode: 0o755, uid, gid });
  }

  const entries = [...out.values()].sort((a, b) => comparePaths(a.path, b.path));
  const fingerprint = entries.map((e) => [
    e.type,
    e.path,
    e.type === 'symlink' ? e.linkname : e.mode,
    e.uid ?? 0,
    e.gid ?? 0,
    e.type === 'file' ? (hashes.get(e.path) ?? '') : '',
  ]);
  return { entries, fromArchive, contentDigest: sha256(canonicalJson(fingerprint)) };
}

function join(dir: string, rel: string): string {
  return dir ? `${dir}/${rel}` : rel;
}
