/**
 * An incremental unpack: the new rootfs made from a copy of the current one (hard links, so no file content is
 * read or written), with what the old image's upper layers made taken out and only the new image's changed
 * layers applied. It is used only when the result is provably the tree a full unpack of the new layers gives:
 * the old upper layers may add entries and re-list directories of the shared lower layers, but as soon as one
 * of them removed, replaced or re-moded something the shared layers made (a whiteout, an opaque directory, a
 * directory replaced, a directory the lower layers made without listing it), the verdict is a full unpack. A file
 * written over a file (a Config's, say) is the one replacement taken back: taken out, and either written again by a
 * new layer (see settleRewrites) or extracted alone from the shared layer that made it (see restoreOf), which is
 * what removing a Config from the cluster needs. Pure: the scans come from the layer check's cache.
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
  /**
   * Files an old upper layer wrote over and no new layer writes again: after the removals, each is extracted alone
   * from the shared layer that made it (by name, so the layer holds no other entry the name could match).
   */
  restore: LayerRestore[];
  /** The new image's unpack steps above the shared layers. */
  steps: LayerStep[];
}

export interface LayerRestore {
  digest: Digest;
  compression: 'gzip' | 'none';
  paths: string[];
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
      // A file written over a file (a Config's, say) is taken out like an added one; then a new layer writes it
      // again, or it is extracted alone from the shared layer that made it (both checked below).
      if (m.kind !== 'dir' && !isDir(n)) {
        if (!rewritten.has(m.path)) rewritten.set(m.path, which);
        continue;
      }
      if (m.kind !== 'dir' || !isDir(n)) return { full: `${which} replaced "${m.path}" of the layers below` };
      if (n.kind === 'implied') return { full: `${which} listed "${m.path}", which the layers below made without listing it` };
      if (m.mode !== n.mode) modes.set(m.path, n.mode);
    }
  }
  let restore: LayerRestore[] = [];
  if (rewritten.size > 0) {
    const newUpper = scanned(layers.slice(keep), 'layer');
    if (!Array.isArray(newUpper)) return newUpper;
    const settled = settleRewrites(rewritten, newUpper);
    if ('full' in settled) return settled;
    const restored = restoreOf(settled.pending, rewritten, shared);
    if ('full' in restored) return restored;
    restore = restored.restore;
    for (const p of rewritten.keys()) remove.add(p);
  }
  // A removed directory takes what is inside it.
  const within = (p: string) => ancestorIn(p, remove);
  return {
    plan: {
      keep,
      remove: [...remove].filter((p) => !within(p)).sort(),
      modes: [...modes].filter(([p]) => !remove.has(p) && !within(p)).map(([path, mode]) => ({ path, mode })),
      restore,
      steps: next.steps.slice(keep),
    },
  };
}

/**
 * Which files an old upper layer wrote over a file of the shared layers no new layer settles: taken out, such a file
 * is missing where a full unpack has the shared layers' file, until a new layer writes that path again (any entry
 * there replaces it whole) or removes it (a whiteout, an opaque directory above it). The ones never settled are
 * restored from the shared layers before the new layers are unpacked (restoreOf). A new hard link to a file settled
 * only later would join the missing file: that is a full unpack.
 */
function settleRewrites(rewritten: Map<string, string>, newUpper: ScannedLayer[]): { pending: string[] } | { full: string } {
  const removedBy = (p: string, hidden: Set<string>) => hidden.has('') || hidden.has(p) || ancestorIn(p, hidden);
  // A walk follows the new layers in order and says which files none of them settles; with `linkFails`, a new link
  // to a file not settled yet is a full unpack.
  const walk = (start: Iterable<string>, linkFails: boolean): { left: Set<string> } | { full: string } => {
    const pending = new Set(start);
    for (const l of newUpper) {
      if (pending.size === 0) break;
      // A layer's whiteouts and opaque markers apply before its entries.
      const hidden = new Set([...l.whiteouts, ...l.opaques]);
      if (hidden.size > 0) for (const p of pending) if (removedBy(p, hidden)) pending.delete(p);
      for (const m of l.members) {
        if (linkFails && m.kind === 'hardlink' && m.target !== undefined && pending.has(m.target)) {
          return { full: `${rewritten.get(m.target)} wrote over "${m.target}" of the layers below, and a new layer links to it before writing it again` };
        }
        pending.delete(m.path);
      }
    }
    return { left: pending };
  };
  // Files no new layer settles are restored before the new layers run, so they are never missing; the others are
  // missing until their settling entry, and a link to one of them before it is a full unpack.
  const first = walk(rewritten.keys(), false);
  if ('full' in first) return first;
  const never = first.left;
  const second = walk([...rewritten.keys()].filter((p) => !never.has(p)), true);
  if ('full' in second) return second;
  return { pending: [...never] };
}

/**
 * Where each pending file is extracted alone from: the highest shared layer with an entry of that name (the one the
 * shared tree has it from). GNU tar is asked for the name unanchored, which also matches the `./`-prefixed forms
 * writers emit; it is used only when no other entry of that layer could match it or lie under it. A file that is a
 * hard link, or that a shared entry links to, shares its inode in a full unpack and cannot be extracted alone.
 */
function restoreOf(pending: string[], rewritten: Map<string, string>, shared: ScannedLayer[]): { restore: LayerRestore[] } | { full: string } {
  if (pending.length === 0) return { restore: [] };
  const want = new Set(pending);
  const why = (p: string) => `${rewritten.get(p)} replaced "${p}" of the layers below, and no new layer writes it again`;
  // One pass over the shared layers: which one each file is from last, and what any of them links to.
  const from = new Map<string, number>();
  const linked = new Set<string>();
  shared.forEach((l, i) => {
    for (const m of l.members) {
      if (want.has(m.path)) from.set(m.path, i);
      if (m.kind === 'hardlink' && m.target !== undefined && want.has(m.target)) linked.add(m.target);
    }
  });
  const byLayer = new Map<number, string[]>();
  for (const p of pending) {
    if (linked.has(p)) return { full: `${why(p)}: a layer below links to it, so it cannot be extracted alone` };
    const i = from.get(p);
    if (i === undefined) return { full: `${why(p)}: no layer below holds it` };
    const list = byLayer.get(i);
    if (list) list.push(p);
    else byLayer.set(i, [p]);
  }
  // In each source layer, an entry the unanchored name would also match: a name ending in `/<name>`, or one under
  // it (`<name>/...`, `.../<name>/...`). Found by the name's last component, so a layer is read once whatever the
  // number of files.
  for (const [i, paths] of byLayer) {
    const byBase = new Map<string, { p: string; depth: number }[]>();
    for (const p of paths) {
      const parts = p.split('/');
      const list = byBase.get(parts[parts.length - 1]);
      if (list) list.push({ p, depth: parts.length });
      else byBase.set(parts[parts.length - 1], [{ p, depth: parts.length }]);
    }
    for (const m of shared[i].members) {
      const parts = m.path.split('/');
      for (let k = 0; k < parts.length; k++) {
        for (const { p, depth } of byBase.get(parts[k]) ?? []) {
          const j = k + 1 - depth;
          if (j < 0 || parts.slice(j, k + 1).join('/') !== p) continue;
          const itself = j === 0 && k === parts.length - 1;
          if (!itself || m.kind === 'dir' || m.kind === 'hardlink') {
            return { full: `${why(p)}: it cannot be extracted alone from ${shared[i].digest} (its entry "${m.path}" would come along)` };
          }
        }
      }
    }
  }
  return {
    restore: [...byLayer.keys()].sort((x, y) => x - y).map((i) => ({ digest: shared[i].digest, compression: shared[i].compression, paths: byLayer.get(i)!.sort() })),
  };
}

/** Whether a directory above `path` (not the root, not `path` itself) is in `set`. */
function ancestorIn(path: string, set: Set<string>): boolean {
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) if (set.has(path.slice(0, i))) return true;
  return false;
}
