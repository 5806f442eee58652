/**
 * What an image's layers may do to a root filesystem, decided in one place and without I/O. Each layer's entries
 * are first checked on their own (names, types), then applied in order to a model of the tree the layers build,
 * with OCI semantics (whiteouts, opaque directories, replacement), so an entry that would be written through a
 * symlink some layer made, a hard link to something that is not a file of the image, or a whiteout that reaches
 * outside, is refused before anything is written anywhere. Applying a layer yields exactly the paths to remove
 * before it is extracted, so no host ever interprets whiteouts itself.
 */
import { CiError } from '../kernel/errors.js';
import { shortDigest, type Digest } from '../kernel/digest.js';

export const WHITEOUT = '.wh.';
export const OPAQUE = '.wh..wh..opq';
/** Whiteout-style names that are aufs bookkeeping (`.wh..wh.plnk`, ...): never part of the rootfs. */
const AUFS_META = '.wh..wh.';

export const MAX_PATH_BYTES = 4095;
export const MAX_NAME_BYTES = 255;

export type MemberKind = 'file' | 'dir' | 'symlink' | 'hardlink';

/** What a tar entry's type is in an image; undefined for devices, fifos and the rest, which no image may hold. */
export const TAR_KINDS: Readonly<Record<string, MemberKind | undefined>> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'dir',
  SymbolicLink: 'symlink',
  Link: 'hardlink',
};

/** One entry of a layer, its name already canonical. */
export interface LayerMember {
  path: string;
  kind: MemberKind;
  mode: number;
  /** Symlink text, or the path a hard link points to (canonical). */
  target?: string;
}

/** A layer read and checked on its own; `applyLayer` then checks it against the layers below. */
export interface ScannedLayer {
  digest: Digest;
  /** How the blob is stored, so the host's extractor reads it the same way. */
  compression: 'gzip' | 'none';
  members: LayerMember[];
  /** Paths hidden by `.wh.<name>` entries. */
  whiteouts: string[];
  /** Directories whose lower content `.wh..wh..opq` hides. */
  opaques: string[];
}

/** What unpacking one layer takes: the paths to remove first (whiteouts, replaced entries), then extraction. */
export interface LayerStep {
  digest: Digest;
  compression: 'gzip' | 'none';
  remove: string[];
  /** Files whose set-user-ID or set-group-ID bit is stripped at unpack (unless the image allows them). */
  setid: string[];
  entries: number;
}

/** Where a refused entry is, for the message: the layer (1-based in the image) and the entry's name. */
export interface EntryWhere {
  layer: number;
  digest: Digest;
  entry?: string;
}

/** An image layer that would write outside its rootfs, or that no extractor reads the same way. */
export class UnsafeLayerError extends CiError {
  readonly where: EntryWhere;
  readonly reason: string;
  constructor(where: EntryWhere, reason: string, image?: string) {
    const at = `layer ${where.layer} (${shortDigest(where.digest)})` + (where.entry !== undefined ? `, entry ${JSON.stringify(where.entry)}` : '');
    super('IMAGE_LAYER_UNSAFE', `${image ? `image ${image}: ` : ''}${at}: ${reason}`, {
      source: 'external',
      hint: 'nothing was written: the image cannot be used as it is; rebuild it, or get it again from a trusted source',
    });
    this.where = where;
    this.reason = reason;
  }

  /** The same refusal, naming the image it was found in. */
  inImage(image: string): UnsafeLayerError {
    return new UnsafeLayerError(this.where, this.reason, image);
  }
}

/** A refusal reason without a location yet; the caller adds layer and entry. */
export class EntryRefused extends Error {}

const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The canonical, relative form of an entry name: leading `./` and a trailing `/` are accepted (common writers
 * emit them); absolute names, `..`, empty or `.` components, control characters, undecodable bytes and names
 * over Linux's limits are refused. Returns '' for the root itself.
 */
export function canonicalName(raw: string, what = 'name'): string {
  if (CONTROL.test(raw)) throw new EntryRefused(`the ${what} contains a control character`);
  if (raw.includes('\ufffd')) throw new EntryRefused(`the ${what} is not valid UTF-8`);
  if (raw.startsWith('/')) throw new EntryRefused(`absolute ${what}: names in a layer are relative to the rootfs`);
  let p = raw;
  while (p.startsWith('./')) p = p.slice(2);
  if (p === '.' || p === '') return '';
  if (p.endsWith('/')) p = p.slice(0, -1);
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) throw new EntryRefused(`the ${what} is ${Buffer.byteLength(p)} bytes long; at most ${MAX_PATH_BYTES} are allowed`);
  for (const part of p.split('/')) {
    if (part === '..') throw new EntryRefused(`the ${what} leaves the rootfs through ".."`);
    if (part === '' || part === '.') throw new EntryRefused(`the ${what} is not canonical (empty or "." component)`);
    if (Buffer.byteLength(part) > MAX_NAME_BYTES) throw new EntryRefused(`a component of the ${what} is ${Buffer.byteLength(part)} bytes long; at most ${MAX_NAME_BYTES} are allowed`);
  }
  return p;
}

export type EntryClass =
  | { kind: 'member'; path: string }
  | { kind: 'whiteout'; target: string }
  | { kind: 'opaque'; dir: string }
  | { kind: 'skip' }
  | { kind: 'root' };

/** Sorts a canonical name into a rootfs entry, a whiteout, an opaque marker, or aufs bookkeeping to skip. */
export function classifyName(path: string, isRegularFile: boolean): EntryClass {
  if (path === '') return { kind: 'root' };
  const parts = path.split('/');
  const base = parts[parts.length - 1];
  const dir = parts.slice(0, -1).join('/');
  // aufs bookkeeping (`.wh..wh.plnk/...`): extractors skip it, so the model must too.
  if (parts.some((p, i) => p.startsWith(AUFS_META) && !(i === parts.length - 1 && p === OPAQUE))) return { kind: 'skip' };
  if (parts.slice(0, -1).some((p) => p.startsWith(WHITEOUT))) throw new EntryRefused('a whiteout name is used as a directory');
  if (base === OPAQUE) {
    if (!isRegularFile) throw new EntryRefused('an opaque whiteout must be a regular file');
    return { kind: 'opaque', dir };
  }
  if (base.startsWith(WHITEOUT)) {
    if (!isRegularFile) throw new EntryRefused('a whiteout must be a regular file');
    const name = base.slice(WHITEOUT.length);
    if (name === '' || name === '.' || name === '..') throw new EntryRefused('the whiteout names no entry');
    return { kind: 'whiteout', target: dir ? `${dir}/${name}` : name };
  }
  return { kind: 'member', path };
}

interface Node {
  kind: 'dir' | 'file' | 'symlink';
  /** Index of the layer that made it (-1: the rootfs itself). */
  layer: number;
  target?: string;
  children?: Map<string, Node>;
}

const describeNode = (n: Node, layerOffset: number) =>
  n.kind === 'symlink' ? `a symlink to ${JSON.stringify(n.target)} (made by layer ${n.layer + layerOffset})` : n.kind === 'file' ? `a file (made by layer ${n.layer + layerOffset})` : 'a directory';

/**
 * The tree the layers build so far. `apply` checks one layer against it and returns that layer's unpack step;
 * a refused layer leaves the model as it was only up to the refusal, so callers discard the tree on error.
 */
export class LayerTree {
  private readonly root: Node = { kind: 'dir', layer: -1, children: new Map() };
  private count = 0;

  /** Number of layers applied. */
  get layers(): number {
    return this.count;
  }

  apply(layer: ScannedLayer, opts: { allowSetid?: boolean } = {}): LayerStep {
    const index = this.count;
    const where = (entry?: string): EntryWhere => ({ layer: index + 1, digest: layer.digest, entry });
    const refuse = (entry: string | undefined, reason: string): never => {
      throw new UnsafeLayerError(where(entry), reason);
    };
    const remove: string[] = [];
    const seen = new Set<string>();

    // Whiteouts hide what lower layers made, whatever their order in the archive.
    for (const dir of layer.opaques) {
      const node = this.lookup(dir, `${dir ? dir + '/' : ''}${OPAQUE}`, refuse, true);
      if (!node) continue;
      if (node.kind !== 'dir') refuse(`${dir}/${OPAQUE}`, `the opaque whiteout's directory "${dir}" is ${describeNode(node, 1)}`);
      for (const name of node.children!.keys()) remove.push(dir ? `${dir}/${name}` : name);
      node.children!.clear();
    }
    for (const target of layer.whiteouts) {
      const parent = this.lookupParent(target, whiteoutName(target), refuse);
      const name = baseName(target);
      if (parent?.children!.has(name)) {
        parent.children!.delete(name);
        remove.push(target);
      }
    }

    const setid: string[] = [];
    for (const m of layer.members) {
      if (seen.has(m.path)) refuse(m.path, 'the entry appears twice in the layer');
      seen.add(m.path);
      const parent = this.ensureParents(m.path, index, refuse);
      const name = baseName(m.path);
      const existing = parent.children!.get(name);
      let node: Node;
      if (m.kind === 'hardlink') {
        if (m.target === m.path) refuse(m.path, 'the hard link points to itself');
        const target = this.lookup(m.target!, m.path, refuse, false);
        if (!target || target.kind !== 'file') {
          refuse(m.path, `the hard link points to ${JSON.stringify(m.target)}, which is ${target ? describeNode(target, 1) : 'not in the image'}; hard links may only point to files of the image`);
        }
        node = { kind: 'file', layer: index };
      } else if (m.kind === 'dir') {
        node = existing?.kind === 'dir' ? existing : { kind: 'dir', layer: index, children: new Map() };
      } else {
        node = m.kind === 'symlink' ? { kind: 'symlink', layer: index, target: m.target } : { kind: 'file', layer: index };
      }
      if (existing && existing !== node) {
        if (existing.layer === index && existing.kind === 'dir') {
          refuse(m.path, 'the entry is both a directory (entries inside it come earlier in the layer) and a non-directory');
        }
        // Replaced: it goes before extraction, so no extractor ever opens or follows what was there.
        remove.push(m.path);
      }
      parent.children!.set(name, node);
      if (m.kind !== 'symlink' && m.kind !== 'dir' && (m.mode & 0o6000) !== 0 && !opts.allowSetid) setid.push(m.path);
    }
    this.count++;
    return { digest: layer.digest, compression: layer.compression, remove: dedupe(remove), setid, entries: layer.members.length };
  }

  /** The node at `path`, reached only through real directories; undefined when a component is missing. */
  private lookup(path: string, entry: string, refuse: (e: string, r: string) => never, forWhiteout: boolean): Node | undefined {
    if (path === '') return this.root;
    const parent = this.lookupParent(path, entry, refuse, forWhiteout);
    return parent?.children!.get(baseName(path));
  }

  private lookupParent(path: string, entry: string, refuse: (e: string, r: string) => never, forWhiteout = true): Node | undefined {
    const parts = path.split('/');
    let node = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const next = node.children!.get(parts[i]);
      if (!next) return undefined;
      if (next.kind !== 'dir') {
        const at = parts.slice(0, i + 1).join('/');
        refuse(entry, `${forWhiteout ? 'the whiteout' : 'the link target'} is reached through "${at}", ${describeNode(next, 1)}`);
      }
      node = next;
    }
    return node;
  }

  private ensureParents(path: string, layer: number, refuse: (e: string, r: string) => never): Node {
    const parts = path.split('/');
    let node = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      let next = node.children!.get(parts[i]);
      if (!next) {
        next = { kind: 'dir', layer, children: new Map() };
        node.children!.set(parts[i], next);
      } else if (next.kind !== 'dir') {
        refuse(path, `it is reached through "${parts.slice(0, i + 1).join('/')}", ${describeNode(next, 1)}`);
      }
      node = next;
    }
    return node;
  }
}

function baseName(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

function whiteoutName(target: string): string {
  const i = target.lastIndexOf('/');
  return i < 0 ? `${WHITEOUT}${target}` : `${target.slice(0, i)}/${WHITEOUT}${target.slice(i + 1)}`;
}

/** Drops paths inside another removed path (removing the parent takes them). */
function dedupe(paths: string[]): string[] {
  const sorted = [...new Set(paths)].sort();
  const out: string[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && p.startsWith(last + '/')) continue;
    out.push(p);
  }
  return out;
}
