/**
 * How each finished action changes the state. Pure functions over plain data, so resume behaviour is tested
 * without hosts: whatever is recorded here is exactly what the next plan will not redo.
 */
import type { Action } from '../../plans/actions.js';
import type { Digest } from '../kernel/digest.js';
import type { DesiredCluster, DesiredHost } from '../clusterfile/types.js';
import type { ClusterState, HostState } from '../../state/model.js';
import type { ProviderData } from '../kernel/types.js';
import type { MadeHost } from '../../providers/contract.js';
import { desiredHost } from './desired-index.js';

export interface HostFacts {
  ip?: string;
  hostname?: string;
  hostKey?: string;
}

/** The state entry for a desired host, created the first time an action touches it. */
export function ensureHost(state: ClusterState, desired: DesiredCluster | undefined, key: string, facts: HostFacts = {}): HostState {
  let hs = state.hosts[key];
  if (!hs) {
    const d: DesiredHost | undefined = desiredHost(desired, key);
    hs = {
      key,
      ip: facts.ip ?? d?.ip ?? '',
      roles: [...(d?.roles ?? [])],
      ssh: { user: d?.ssh.user ?? 'root', port: d?.ssh.port ?? 22 },
      layers: [],
      hooks: {},
      status: 'creating',
    };
    if (d?.name) hs.name = d.name;
    // Made by its provider: removed by it too, even if its creation never finished.
    if (d?.make) hs.machine = structuredClone(d.make.spec);
    state.hosts[key] = hs;
  }
  if (facts.ip) hs.ip = facts.ip;
  if (facts.hostname) hs.hostname = facts.hostname;
  if (facts.hostKey && !hs.hostKey) hs.hostKey = facts.hostKey;
  return hs;
}

export interface ActionResult {
  facts?: HostFacts;
  outputs?: Record<string, string>;
  /** create-host: each host the provider made, by key. */
  made?: Record<string, MadeHost>;
  /** infra create/update: the resource's data. */
  infra?: ProviderData;
  /** A step that was not for this host after all (its address did not match): nothing is recorded. */
  skipped?: boolean;
}

const JOINS = new Set(['init-master0', 'join-master', 'join-node']);

export function recordStart(state: ClusterState, action: Action): void {
  if (action.kind === 'hook' && action.hook === 'leave' && state.hosts[action.host]) state.hosts[action.host].status = 'leaving';
}

/** `imageRef` names the plan's image, which join and upgrade hooks install. */
export function recordSuccess(
  state: ClusterState,
  desired: DesiredCluster | undefined,
  action: Action,
  result: ActionResult = {},
  imageRef?: string,
): void {
  switch (action.kind) {
    case 'infra':
      if (action.op === 'delete') {
        if (state.infra) delete state.infra[action.resource];
      } else {
        state.infra = { ...state.infra, [action.resource]: { spec: action.specDigest, data: result.infra ?? {}, needs: [...action.needs], summary: action.summary } };
      }
      clearPending(state, action.id);
      return;
    case 'create-host':
      for (const h of action.hosts) {
        const m = result.made?.[h.key];
        const hs = ensureHost(state, desired, h.key, m ? { ip: m.ip, hostname: m.hostname, hostKey: m.hostKey } : {});
        if (m) hs.machine = structuredClone(m.machine);
      }
      clearPending(state, action.id);
      return;
    case 'send-layers': {
      const hs = ensureHost(state, desired, action.host, result.facts);
      hs.layers = [...new Set([...hs.layers, ...action.layers])];
      return;
    }
    case 'prepare-rootfs':
      // Staged beside the rootfs, recorded on the host only: the state changes when its unpack swaps it in.
      ensureHost(state, desired, action.host, result.facts);
      return;
    case 'unpack': {
      const hs = ensureHost(state, desired, action.host, result.facts);
      hs.rootfsImage = action.image;
      if (action.config) hs.rootfsConfig = action.config;
      else delete hs.rootfsConfig;
      return;
    }
    case 'hook': {
      const hs = ensureHost(state, desired, action.host, result.facts);
      hs.hooks[action.hook] = action.image;
      if (action.members) {
        hs.members = action.members;
        if (action.documents) hs.documents = action.documents;
        else delete hs.documents;
      }
      if (JOINS.has(action.hook)) {
        // A host that was being removed and is joining again must leave and clean anew if removed later.
        delete hs.hooks.leave;
        delete hs.hooks.clean;
        // Its clean-time plugins run again when it is cleaned again.
        for (const k of Object.keys(hs.applied ?? {})) if (/@(pre|post)-clean$/.test(k)) applied(hs, k, undefined);
      }
      if (JOINS.has(action.hook) || action.hook === 'upgrade') {
        hs.status = 'active';
        hs.image = { ref: imageRef ?? state.image?.ref ?? action.image, digest: action.image };
        // The desired roles are the host's roles from the moment it is a member.
        const d = desiredHost(desired, action.host);
        if (d) hs.roles = [...d.roles];
      }
      if (action.hook === 'init-master0') state.master0 = action.host;
      if (result.outputs) Object.assign(state.outputs, result.outputs);
      return;
    }
    case 'run-cmd':
      if (!state.cmdsRun.includes(action.identity)) state.cmdsRun.push(action.identity);
      return;
    case 'launch-app':
      state.appsLaunched = { ...state.appsLaunched, [action.app]: action.identity };
      return;
    case 'plugin':
      if (!result.skipped) applied(ensureHost(state, desired, action.host, result.facts), action.record, action.identity);
      return;
    case 'node-meta':
      if (!result.skipped) applied(ensureHost(state, desired, action.target), action.record, action.identity);
      return;
    case 'host-aliases': {
      const hs = ensureHost(state, desired, action.host, result.facts);
      if (action.aliases.length) applied(hs, 'host-aliases', action.identity);
      else applied(hs, 'host-aliases', undefined);
      return;
    }
    case 'remove-files': {
      const hs = state.hosts[action.host];
      if (!hs) return;
      hs.layers = [];
      delete hs.rootfsImage;
      delete hs.rootfsConfig;
      // Without a host to delete afterwards (bare metal), the host is now gone from the cluster.
      if (hs.machine === undefined) delete state.hosts[action.host];
      return;
    }
    case 'delete-host':
      delete state.hosts[action.host];
      return;
    case 'set-image':
      // CMDs that ran with another config layer are forgotten, so going back to an earlier Config runs them again.
      if (state.image && state.image.config !== action.image.config) {
        const current = new Set(action.image.cmds.map((c) => c.identity));
        state.cmdsRun = state.cmdsRun.filter((i) => current.has(i));
      }
      state.image = { ...action.image, layers: [...action.image.layers], cmds: action.image.cmds.map((c) => ({ ...c })) };
      if (action.image.launch) state.image.launch = action.image.launch.map((l) => ({ ...l }));
      pruneLaunched(state, action.image.launch ?? []);
      if (action.master0) state.master0 = action.master0;
      return;
  }
}

/** An app the image no longer launches is forgotten, so launching it again later runs it again. */
function pruneLaunched(state: ClusterState, launch: { app: string }[]): void {
  if (!state.appsLaunched) return;
  const kept = Object.entries(state.appsLaunched).filter(([app]) => launch.some((l) => l.app === app));
  if (kept.length > 0) state.appsLaunched = Object.fromEntries(kept);
  else delete state.appsLaunched;
}

function applied(hs: HostState, key: string, identity: Digest | undefined): void {
  const next = { ...hs.applied };
  if (identity === undefined) delete next[key];
  else next[key] = identity;
  if (Object.keys(next).length) hs.applied = next;
  else delete hs.applied;
}

function clearPending(state: ClusterState, id: string): void {
  if (!state.pending?.[id]) return;
  delete state.pending[id];
  if (Object.keys(state.pending).length === 0) delete state.pending;
}
