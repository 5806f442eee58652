/**
 * An incremental unpack: the new rootfs made from a copy of the current one (hard links, so no file content is
 * read or written), with what the old image's upper layers made taken out and only the new image's changed
 * layers applied. It is used only when the result is provably the tree a full unpack of the new layers gives:
 * the old upper layers may add entries and re-list directories of the shared lower layers, but as soon as one
 * of them removed, replaced or re-moded something the shared layers made (a whiteout, an opaque directory, a
 * directory replaced, a directory the lower layers made without listing it), the verdict is a full unpack. A file
 * written over a file is the one replacement taken back, when the new layers write it again (see unsettledRewrites).
 * Pure: the scans come from the layer check's cache.
 */
import type { Digest } from '../kernel/digest.js';
import type { CheckedImage } from './layer-check.js';
import type { LayerStep, MemberKind, ScannedLayer } from './layer-tree.js';

export interface IncrementalPlan {
  /** How many layers, from the bottom, the old and the new rootfs share. */
  keep: number;
  /** Entries the old upper layers made where the shared layers had nothing: removed from the copy first. */
  remove: string[];
  /** Directories the shared layers listed and an old upper layer listed again: their mode is set back. */
  modes: { path: string; mode: number }[];
  /** The new image's unpack steps above the shared layers. */
  steps: LayerStep[];
}

export type IncrementalVerdict = { plan: IncrementalPlan } | { full: string };

interface Node {
  kind: MemberKind | 'implied';
  mode: number;
  children?: Map<string, Node>;
}

const isDir = (n: Node) => n.kind === 'dir' || n.kind === 'implied';

/** The tree the shared layers make (names, kinds, modes), with whiteouts, opaque directories and replacement. */
function treeOf(layers: ScannedLayer[]): Node {
  const root: Node = { kind: 'dir', mode: 0o755, children: new Map() };
  const parentOf = (path: string, make: boolean): Node | undefined => {
    const parts = path.split('/');
    let n = root;
    for (let i = 0; i < parts.length - 1; i++) {
      let next = n.children!.get(parts[i]);
      if (!next || !isDir(next)) {
        if (!make) return undefined;
        next = { kind: 'implied', mode: 0o755, children: new Map() };
        n.children!.set(parts[i], next);
      }
      n = next;
    }
    return n;
  };
  for (const l of layers) {
    for (const d of l.opaques) {
      const n = d === '' ? root : parentOf(d, false)?.children!.get(base(d));
      if (n && isDir(n)) n.children!.clear();
    }
    for (const w of l.whiteouts) parentOf(w, false)?.children!.delete(base(w));
    for (const m of l.members) {
      const parent = parentOf(m.path, true)!;
      const existing = parent.children!.get(base(m.path));
      if (m.kind === 'dir' && existing && isDir(existing)) {
        existing.kind = 'dir';
        existing.mode = m.mode;
      } else {
        parent.children!.set(base(m.path), { kind: m.kind, mode: m.mode, ...(m.kind === 'dir' ? { children: new Map() } : {}) });
      }
    }
  }
  return root;
}

function base(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

/** The node at `path` and, when it is not there, the shortest leading part of it that is missing. */
function find(root: Node, path: string): { node?: Node; missing?: string; through?: string } {
  const parts = path.split('/');
  let n = root;
  for (let i = 0; i < parts.length; i++) {
    if (!isDir(n)) return { through: parts.slice(0, i).join('/') };
    const next = n.children!.get(parts[i]);
    if (!next) return { missing: parts.slice(0, i + 1).join('/') };
    n = next;
  }
  return { node: n };
}

/**
 * What turns the rootfs of `oldLayers` into the rootfs of `next`. `scans` gives a layer's scan (from the cache or
 * the store), undefined when it is not to be had: then, as for every case it cannot prove, the verdict is full.
 */
export function planIncremental(next: CheckedImage, oldLayers: Digest[], scans: (d: Digest) => ScannedLayer | undefined): IncrementalVerdict {
  const layers = next.steps.map((s) => s.digest);
  let keep = 0;
  while (keep < layers.length && keep < oldLayers.length && layers[keep] === oldLayers[keep]) keep++;
  if (keep === 0) return { full: 'no layer of the rootfs on the host is one of the new image' };
  const scanned = (ds: Digest[], which: string): ScannedLayer[] | { full: string } => {
    const out: ScannedLayer[] = [];
    for (const d of ds) {
      const s = scans(d);
      if (!s) return { full: `what ${which} ${d} holds is not known on this machine` };
      out.push(s);
    }
    return out;
  };
  const shared = scanned(layers.slice(0, keep), 'layer');
  if (!Array.isArray(shared)) return shared;
  const oldUpper = scanned(oldLayers.slice(keep), 'the old layer');
  if (!Array.isArray(oldUpper)) return oldUpper;
  const tree = treeOf(shared);
  const remove = new Set<string>();
  const modes = new Map<string, number>();
  const rewritten = new Map<string, string>();
  for (const [i, l] of oldUpper.entries()) {
    const which = `the old layer ${keep + i + 1} (${l.digest})`;
    for (const d of l.opaques) {
      const f = d === '' ? { node: tree } : find(tree, d);
      if (f.node && isDir(f.node) && f.node.children!.size > 0) return { full: `${which} hid the content of "${d || '/'}" of the layers below` };
    }
    for (const w of l.whiteouts) {
      if (find(tree, w).node) return { full: `${which} removed "${w}" of the layers below` };
    }
    for (const m of l.members) {
      const f = find(tree, m.path);
      if (f.through !== undefined) return { full: `${which} replaced "${f.through}" of the layers below` };
      if (f.missing !== undefined) {
        remove.add(f.missing);
        continue;
      }
      const n = f.node!;
      // A file written over a file (a Config's, say) is taken out like an added one when a new layer writes it
      // again before anything reads it; which the new layers are checked for below.
      if (m.kind !== 'dir' && !isDir(n)) {
        if (!rewritten.has(m.path)) rewritten.set(m.path, which);
        continue;
      }
      if (m.kind !== 'dir' || !isDir(n)) return { full: `${which} replaced "${m.path}" of the layers below` };
      if (n.kind === 'implied') return { full: `${which} listed "${m.path}", which the layers below made without listing it` };
      if (m.mode !== n.mode) modes.set(m.path, n.mode);
    }
  }
  if (rewritten.size > 0) {
    const newUpper = scanned(layers.slice(keep), 'layer');
    if (!Array.isArray(newUpper)) return newUpper;
    const unsettled = unsettledRewrites(rewritten, newUpper);
    if (unsettled) return { full: unsettled };
    for (const p of rewritten.keys()) remove.add(p);
  }
  // A removed directory takes what is inside it.
  const within = (p: string) => ancestorIn(p, remove);
  return {
    plan: {
      keep,
      remove: [...remove].filter((p) => !within(p)).sort(),
      modes: [...modes].filter(([p]) => !remove.has(p) && !within(p)).map(([path, mode]) => ({ path, mode })),
      steps: next.steps.slice(keep),
    },
  };
}

/**
 * Why some file an old upper layer wrote over a file of the shared layers cannot simply be taken out (undefined
 * when every one can). Taken out, it is missing where a full unpack has the shared layers' file, until a new layer
 * writes that path again (any entry there replaces it whole) or removes it (a whiteout, an opaque directory above
 * it). Until then nothing may read it: a hard link to it would join the missing file, so that is a full unpack,
 * as is a file no new layer writes again (its shared content would have to be extracted alone).
 */
function unsettledRewrites(rewritten: Map<string, string>, newUpper: ScannedLayer[]): string | undefined {
  const pending = new Set(rewritten.keys());
  const removedBy = (p: string, hidden: Set<string>) => hidden.has('') || hidden.has(p) || ancestorIn(p, hidden);
  for (const l of newUpper) {
    if (pending.size === 0) break;
    // A layer's whiteouts and opaque markers apply before its entries.
    const hidden = new Set([...l.whiteouts, ...l.opaques]);
    if (hidden.size > 0) for (const p of pending) if (removedBy(p, hidden)) pending.delete(p);
    for (const m of l.members) {
      if (m.kind === 'hardlink' && m.target !== undefined && pending.has(m.target)) {
        return `${rewritten.get(m.target)} wrote over "${m.target}" of the layers below, and a new layer links to it before writing it again`;
      }
      pending.delete(m.path);
    }
  }
  const [left] = pending;
  return left === undefined ? undefined : `${rewritten.get(left)} replaced "${left}" of the layers below, and no new layer writes it again`;
}

/** Whether a directory above `path` (not the root, not `path` itself) is in `set`. */
function ancestorIn(path: string, set: Set<string>): boolean {
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) if (set.has(path.slice(0, i))) return true;
  return false;
}
