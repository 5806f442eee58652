/**
 * The refresh's pure half: what each host answered (plain data, parsed by engine/executor/refresh.ts) compared
 * with what the state says, giving the drift items and the refreshed state the planner plans from. No I/O here, so
 * every case (a deleted layer, a replaced rootfs, a rebuilt machine, 5,000 hosts) is tested with plain data.
 */
import { digestHex, type Digest } from '../engine/kernel/digest.js';
import type { ClusterState, HookName, HostState } from '../state/model.js';
import { byHostName } from './host-order.js';
import type { DriftItem, PlanRefresh, RefreshDepth } from './actions.js';

/** What one host holds of the cluster, as its one-round-trip answer said. */
export interface HostFound {
  /** The cluster's ownership mark: none (no cluster directory), unmarked, or the lineage written there. */
  mark: { kind: 'none' } | { kind: 'unmarked' } | { kind: 'marked'; lineage: string };
  /** Files of the layer store by hex digest: size in bytes, mtime in seconds, sha256 (hex) when read deeply. */
  layers: Record<string, { size: number; mtime: number; sha256?: string }>;
  /** The cluster's rootfs directory and its inode number (a replaced directory has another). */
  rootfs: { present: boolean; inode?: string };
  /** What the last unpack recorded having unpacked (absent: no record on the host). */
  marker?: { image?: string; config?: string; inode?: string };
  /** Hooks recorded as done on the host, with the image they ran for (absent: the host keeps no such records). */
  hooks?: Record<string, string>;
}

/** One host's answer, or why there was none. */
export type HostAnswer = { host: string; found: HostFound } | { host: string; error: string };

export interface CompareOptions {
  depth: RefreshDepth;
  /** The size each layer's blob has here, when known: a file of another size on the host is not that layer. */
  sizeOf?: (d: Digest) => number | undefined;
}

const REASON = {
  'layer-missing': 'drift: layer missing on host',
  'layer-changed': 'drift: layer changed on host',
  'rootfs-missing': 'drift: rootfs missing',
  'rootfs-changed': 'drift: rootfs changed',
  'hooks-missing': 'drift: hook records missing on host',
} as const satisfies Record<DriftItem['kind'], string>;

/** The drift of one host, and its state entry as the host shows it to be (a copy; `hs` is not changed). */
export function compareHost(hs: HostState, found: HostFound, opts: CompareOptions): { items: DriftItem[]; host: HostState } {
  const items: DriftItem[] = [];
  const host = structuredClone(hs);
  const item = (kind: DriftItem['kind'], extra: Omit<DriftItem, 'host' | 'kind' | 'reason'> = {}) =>
    items.push({ host: hs.key, kind, reason: REASON[kind], ...extra });

  const missing: Digest[] = [];
  const changed: Digest[] = [];
  const why: string[] = [];
  for (const d of hs.layers) {
    const hex = digestHex(d);
    const f = found.layers[hex];
    if (!f) {
      missing.push(d);
      continue;
    }
    const size = opts.sizeOf?.(d);
    if (size !== undefined && f.size !== size) {
      changed.push(d);
      why.push(`${hex.slice(0, 12)} is ${f.size} bytes, not ${size}`);
    } else if (opts.depth === 'deep' && f.sha256 !== undefined && f.sha256 !== hex) {
      changed.push(d);
      why.push(`${hex.slice(0, 12)} hashes to ${f.sha256.slice(0, 12)}`);
    }
  }
  if (missing.length) item('layer-missing', { layers: missing, detail: `${missing.length} of ${hs.layers.length} recorded layer(s) not in the host's store` });
  if (changed.length) item('layer-changed', { layers: changed, detail: why.join('; ') });
  if (missing.length || changed.length) {
    const gone = new Set([...missing, ...changed]);
    host.layers = hs.layers.filter((d) => !gone.has(d));
  }

  if (hs.rootfsImage) {
    const m = found.marker;
    let detail: string | undefined;
    let kind: DriftItem['kind'] = 'rootfs-changed';
    if (!found.rootfs.present) {
      kind = 'rootfs-missing';
      detail = 'the rootfs directory is gone';
    } else if (!m) detail = 'no record on the host of what was unpacked';
    else if (m.image !== hs.rootfsImage) detail = `the host's record says image ${short(m.image)}, the state ${short(hs.rootfsImage)}`;
    else if ((m.config || undefined) !== hs.rootfsConfig) detail = `the host's record says config ${short(m.config)}, the state ${short(hs.rootfsConfig)}`;
    else if (m.inode !== undefined && found.rootfs.inode !== undefined && m.inode !== found.rootfs.inode) detail = 'the rootfs directory was replaced since it was unpacked';
    if (detail) {
      item(kind, { detail });
      delete host.rootfsImage;
      delete host.rootfsConfig;
    }
  }

  // Hooks are never planned again from here: init-master0 on a running cluster because a file vanished would be a
  // disaster. Missing records are reported, and the state keeps them.
  const recorded = (Object.keys(hs.hooks) as HookName[]).filter((h) => hs.hooks[h] !== undefined);
  if (recorded.length) {
    if (found.hooks) {
      const lost = recorded.filter((h) => found.hooks![h] === undefined);
      if (lost.length) item('hooks-missing', { hooks: lost, detail: `no record on the host of ${lost.join(', ')}` });
    } else if (found.mark.kind === 'none') {
      item('hooks-missing', { hooks: recorded, detail: 'the host holds no files of this cluster at all (rebuilt?)' });
    }
  }
  return { items, host };
}

function short(d: string | undefined): string {
  if (!d) return '(none)';
  return d.startsWith('sha256:') ? d.slice(7, 19) : d.slice(0, 12);
}

export interface RefreshOutcome {
  /** The state as the hosts show it; hosts without an answer are kept as they were. */
  state: ClusterState;
  refresh: PlanRefresh;
}

/** Every answer applied to the state: drift in host-name order, unreachable hosts named, their entries untouched. */
export function refreshState(state: ClusterState, answers: HostAnswer[], opts: CompareOptions): RefreshOutcome {
  const next: ClusterState = { ...state, hosts: { ...state.hosts } };
  const drift: DriftItem[] = [];
  const unreachable: PlanRefresh['unreachable'] = [];
  const byHost = new Map(answers.map((a) => [a.host, a]));
  for (const { key } of byHostName(Object.values(state.hosts))) {
    const a = byHost.get(key);
    if (!a) continue;
    if ('error' in a) {
      unreachable.push({ host: key, why: a.error });
      continue;
    }
    // Files of another state are not this state's to compare with (and every contact with the host refuses it).
    if (a.found.mark.kind === 'marked' && a.found.mark.lineage !== state.lineage) {
      unreachable.push({ host: key, why: `its files of cluster ${state.cluster} belong to another state (lineage ${a.found.mark.lineage})` });
      continue;
    }
    const { items, host } = compareHost(state.hosts[key], a.found, opts);
    if (items.length) {
      drift.push(...items);
      next.hosts[key] = host;
    }
  }
  return { state: next, refresh: { depth: opts.depth, drift, unreachable } };
}

/** The hosts worth asking: known to hold something, reachable by a pinned key (a refresh never pins a new one). */
export function hostsToRefresh(state: ClusterState): { ask: HostState[]; unpinned: HostState[] } {
  const ask: HostState[] = [];
  const unpinned: HostState[] = [];
  for (const hs of Object.values(state.hosts)) {
    const holds = hs.layers.length > 0 || !!hs.rootfsImage || Object.keys(hs.hooks).length > 0;
    if (!holds || !hs.ip) continue;
    (hs.hostKey ? ask : unpinned).push(hs);
  }
  return { ask, unpinned };
}
