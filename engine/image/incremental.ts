/**
 * An incremental unpack: the new rootfs made from a copy of the current one (hard links, so no file content is
 * read or written), with what the old image's upper layers made taken out and only the new image's changed
 * layers applied. It is used only when the result is provably the tree a full unpack of the new layers gives:
 * the old upper layers may add entries and re-list directories of the shared lower layers, but as soon as one
 * of them removed, replaced or re-moded something the shared layers made (a whiteout, an opaque directory, a
 * file written over, a directory the lower layers made without listing it), the verdict is a full unpack.
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
  const shared: ScannedLayer[] = [];
  for (const d of layers.slice(0, keep)) {
    const s = scans(d);
    if (!s) return { full: `what layer ${d} holds is not known on this machine` };
    shared.push(s);
  }
  const oldUpper: ScannedLayer[] = [];
  for (const d of oldLayers.slice(keep)) {
    const s = scans(d);
    if (!s) return { full: `what the old layer ${d} holds is not known on this machine` };
    oldUpper.push(s);
  }
  const tree = treeOf(shared);
  const remove = new Set<string>();
  const modes = new Map<string, number>();
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
      if (m.kind !== 'dir' || !isDir(n)) return { full: `${which} replaced "${m.path}" of the layers below` };
      if (n.kind === 'implied') return { full: `${which} listed "${m.path}", which the layers below made without listing it` };
      if (m.mode !== n.mode) modes.set(m.path, n.mode);
    }
  }
  // A removed directory takes what is inside it.
  const within = (p: string) => {
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) if (remove.has(p.slice(0, i))) return true;
    return false;
  };
  return {
    plan: {
      keep,
      remove: [...remove].filter((p) => !within(p)).sort(),
      modes: [...modes].filter(([p]) => !remove.has(p) && !within(p)).map(([path, mode]) => ({ path, mode })),
      steps: next.steps.slice(keep),
    },
  };
}
