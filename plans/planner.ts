/**
 * The planner: one pure function from (desired cluster, image, state) to the exact list of steps. No I/O, no
 * clock, no randomness: the plan a user reviews is the plan apply runs. Completed work is read from state
 * (layers held, rootfs unpacked, hooks done per image, membership seen), so after a partial failure the next plan
 * holds exactly the missing steps.
 */
import { canonicalJson, sha256, shortDigest, type Digest } from '../engine/kernel/digest.js';
import { CiError, InternalError } from '../engine/kernel/errors.js';
import type { DesiredCluster, DesiredHost, DesiredPlugin } from '../engine/clusterfile/types.js';
import type { ClusterState, HookName, HostState } from '../state/model.js';
import { byHostName } from './host-order.js';
import type { InfraResource } from '../providers/contract.js';
import {
  PLAN_VERSION,
  type Action,
  type HookAction,
  type ConfigLayerPlan,
  type ImageInfo,
  type InfraAction,
  type Impact,
  type Plan,
  type PlannedHost,
  type PlanRefresh,
  type DriftItem,
  type RootfsBase,
} from './actions.js';
import { addCleanSteps, addPluginSteps, indexed } from './plugin-steps.js';
import { ActionTable } from './action-table.js';

/** A Clusterfile change the planner refuses (e.g. removing every master). */
export class PlanRefusedError extends CiError {
  constructor(message: string, hint?: string) {
    super('PLAN_REFUSED', message, { hint });
  }
}

export interface PlanInput {
  desired: DesiredCluster;
  image: ImageInfo;
  state?: ClusterState;
  /** Cluster-level infrastructure the provider needs (from its block and the image), in dependency order. */
  infra?: InfraResource[];
  /** The cluster's config layer (Configs, rendered templates), when it has one: sent and unpacked after the image's. */
  config?: ConfigLayerPlan;
  options?: { maxUnavailable?: number };
  /**
   * The refresh this plan follows, when the hosts were asked: `state` is then already the refreshed state, and the
   * drift only names the steps it causes (their `reason`), and is kept in the plan.
   */
  refresh?: PlanRefresh;
}

export const id = {
  infra: (k: string) => `infra:${k}`,
  create: (batch: string) => `create-host:${batch}`,
  send: (k: string) => `send-layers:${k}`,
  unpack: (k: string) => `unpack:${k}`,
  prepare: (k: string) => `prepare-rootfs:${k}`,
  hook: (h: HookName, k: string) => `hook:${h}:${k}`,
  cmd: (i: number) => `run-cmd:${i}`,
  launch: (app: string) => `launch-app:${app}`,
  removeFiles: (k: string) => `remove-files:${k}`,
  deleteHost: (k: string) => `delete-host:${k}`,
  setImage: 'set-image',
} as const;

const NO_DRIFT: DriftItem[] = [];
/**
 * What a step spreads in when it has nothing to add, and the ids of no steps: one of each, not one per host and
 * step (their garbage was a tenth of a 50,000-host plan's). Never changed: `add` stores a copy of a step's deps.
 */
const NONE = Object.freeze({});
const NO_IDS: string[] = [];

const JOIN_HOOKS: HookName[] = ['init-master0', 'join-master', 'join-node'];

const isMaster = (h: { roles: string[] }) => h.roles.includes('master');

function joinedBefore(hs: HostState | undefined): boolean {
  if (!hs || hs.status === 'leaving') return false;
  // A loop, not some() with a closure: this is asked several times per host.
  for (const h of JOIN_HOOKS) if (hs.hooks[h] !== undefined) return true;
  return false;
}

/** What every member should agree on: who is in the cluster, with which roles, and who is master0. */
export function membershipDigest(hosts: { key: string; roles: string[] }[], master0: string): Digest {
  return sha256(canonicalJson({ master0, members: hosts.map((h) => ({ key: h.key, roles: [...h.roles].sort() })) }));
}

/** The image a member runs; states written before members recorded it are read from their hooks. */
function runningImage(hs: HostState, state: ClusterState | undefined): { ref: string; digest: Digest } | undefined {
  if (hs.image) return hs.image;
  const digest = hs.hooks.upgrade ?? JOIN_HOOKS.map((k) => hs.hooks[k]).find((d) => d !== undefined);
  if (!digest) return undefined;
  return { ref: state?.image?.digest === digest ? state.image.ref : digest, digest };
}

/** `v1 -> v2` within one repository, full names across repositories, short digests when the name is the same. */
function versionChange(fromRef: string, fromDigest: Digest, to: ImageInfo): string {
  const split = (r: string) => {
    const i = r.lastIndexOf(':');
    return i > r.lastIndexOf('/') ? [r.slice(0, i), r.slice(i + 1)] : [r, ''];
  };
  if (fromRef.startsWith('sha256:')) return `${shortDigest(fromDigest)} -> ${to.ref}`;
  const [repoA, tagA] = split(fromRef);
  const [repoB, tagB] = split(to.ref);
  if (fromRef === to.ref) return `${fromRef}@${shortDigest(fromDigest)} -> ${shortDigest(to.digest)}`;
  return repoA === repoB && tagA && tagB ? `${tagA} -> ${tagB}` : `${fromRef} -> ${to.ref}`;
}

export function plan(input: PlanInput): Plan {
  const { desired, image, state } = input;
  const maxUnavailable = Math.max(1, Math.floor(input.options?.maxUnavailable ?? 1));
  const hostsState = state?.hosts ?? {};
  const D = image.digest;
  const actions = new ActionTable();
  const add = (a: Action) => {
    a.deps = onlyPlanned(distinct(a.deps), actions);
    actions.set(a);
  };
  const has = (i: string) => actions.has(i);
  const present = (...ids: string[]) => ids.filter(has);

  const desiredKeys = new Set(desired.hosts.map((h) => h.key));
  const stateHosts = Object.values(hostsState);
  const removed = orderHosts(byHostName(stateHosts.filter((hs) => !desiredKeys.has(hs.key))));
  const isExisting = (h: DesiredHost) => joinedBefore(hostsState[h.key]);

  // master0: keep it while it stays a master; otherwise the first master in Clusterfile order that is already a
  // member takes over. A cluster that never finished init-master0 simply starts over on the first master.
  const masters = desired.hosts.filter(isMaster);
  const existingMasters = masters.filter(isExisting);
  const stateMasters = stateHosts.filter((hs) => isMaster(hs) && joinedBefore(hs));
  if (stateMasters.length > 0 && existingMasters.length === 0) {
    throw new PlanRefusedError(
      `the Clusterfile removes every current master (${stateMasters.map((h) => h.key).join(', ')}); the last master cannot be removed`,
      'keep at least one current master: add the new masters first, apply, then remove the old ones',
    );
  }
  const initialised = stateHosts.some((hs) => hs.hooks['init-master0'] !== undefined && joinedBefore(hs));
  const oldMaster0 = state?.master0;
  let master0: string;
  let promotion: string | undefined;
  if (initialised) {
    if (oldMaster0 && existingMasters.some((h) => h.key === oldMaster0)) master0 = oldMaster0;
    else {
      master0 = existingMasters[0].key;
      promotion = `master0 ${oldMaster0 ?? '(none)'} removed; ${master0} is promoted to master0`;
    }
  } else {
    master0 = oldMaster0 && masters.some((h) => h.key === oldMaster0) ? oldMaster0 : masters[0].key;
  }
  // The config layer is part of what hooks, CMDs and apps act on: a change of it re-runs reconfigure, the CMDs and
  // the launched apps, as a change of their own identity would. Without one, every identity is as before.
  const C = input.config?.digest;
  const withConfig = (d: Digest): Digest => (C ? sha256(canonicalJson({ of: d, config: C })) : d);
  const configChanged = state?.image !== undefined && state.image.config !== C;
  const members = withConfig(membershipDigest(desired.hosts, master0));

  const upgrading = state?.image !== undefined && state.image.digest !== D;
  const change = upgrading ? `image changed ${versionChange(state!.image!.ref, state!.image!.digest, image)}` : undefined;
  const layerSize = new Map(image.layers.map((l) => [l.digest, l.size]));
  const imageLayers = image.layers.map((l) => l.digest);
  if (input.config) layerSize.set(input.config.digest, input.config.size);
  const hostLayers = C ? [...imageLayers, C] : imageLayers;
  // Spread into every host's unpack and prepare: made once.
  const configField = C ? { config: C } : NONE;
  const needsUnpack = (hs: HostState | undefined) => hs?.rootfsImage !== D || hs.rootfsConfig !== C;
  // The rootfs a host has, when the state knows its layers: an unpack may build on what both share.
  // It depends only on the host's config layer (the image is the state's): one per config, shared by the steps
  // of every host that has it, as they share the image's layer list.
  const bases = new Map<Digest | undefined, { base: RootfsBase }>();
  const baseOf = (hs: HostState | undefined): { base: RootfsBase } | {} => {
    if (!hs?.rootfsImage || state?.image?.digest !== hs.rootfsImage) return NONE;
    const cfg = hs.rootfsConfig;
    let b = bases.get(cfg);
    if (!b) bases.set(cfg, (b = { base: { image: hs.rootfsImage, layers: [...state.image.layers, ...(cfg ? [cfg] : [])], ...(cfg ? { config: cfg } : {}) } }));
    return b;
  };
  const configOnly = (h: DesiredHost) => {
    const hs = hostsState[h.key];
    return !!hs && hs.status !== 'leaving' && hs.rootfsImage === D && hs.rootfsConfig !== C && isExisting(h) && changeFor(hs) === undefined;
  };

  // A member runs the image of its last join or upgrade. Any other image rolls `upgrade` over it: a newer one, an
  // earlier one (rollback), or the one the state names after an interrupted roll was reverted.
  // The text of a change depends only on the image a host runs: made once per image, not once per host and step
  // (an upgrade of 50,000 hosts asks it five times per host).
  const changeText = new Map<string, Map<Digest, string>>();
  const changeFor = (hs: HostState): string | undefined => {
    const current = runningImage(hs, state);
    if (!current || current.digest === D) return undefined;
    let byDigest = changeText.get(current.ref);
    if (!byDigest) changeText.set(current.ref, (byDigest = new Map()));
    let text = byDigest.get(current.digest);
    if (text === undefined) byDigest.set(current.digest, (text = `image changed ${versionChange(current.ref, current.digest, image)}`));
    return text;
  };

  // Drift the refresh found, by host: the steps it causes say so, whatever else also needs them.
  const driftOf = new Map<string, DriftItem[]>();
  for (const d of input.refresh?.drift ?? []) {
    const list = driftOf.get(d.host);
    if (list) list.push(d);
    else driftOf.set(d.host, [d]);
  }
  const layerDrift = (key: string): DriftItem[] => driftOf.get(key)?.filter((d) => d.kind === 'layer-missing' || d.kind === 'layer-changed') ?? NO_DRIFT;
  const rootfsDrift = (key: string) => (driftOf.get(key) ?? []).find((d) => d.kind === 'rootfs-missing' || d.kind === 'rootfs-changed');

  const reasonFor = (h: DesiredHost, what: 'layers' | 'rootfs' | 'hook'): string => {
    const hs = hostsState[h.key];
    if (!hs) return 'new host';
    if (hs.status === 'leaving') return 'resume: was leaving, joining again';
    const changed = isExisting(h) ? changeFor(hs) : undefined;
    if (changed) return what === 'layers' ? 'layer digest changed' : changed;
    return 'resume: not completed';
  };

  // Upgrade roll over current members: master0, other masters one at a time, then nodes in batches.
  const rollOrder = desired.hosts.filter((h) => isExisting(h) && changeFor(hostsState[h.key]) !== undefined);
  rollOrder.sort((a, b) => rank(a) - rank(b));
  function rank(h: DesiredHost): number {
    return h.key === master0 ? 0 : isMaster(h) ? 1 : 2;
  }
  const rolling = new Set(rollOrder.map((h) => h.key));

  // Phase 0: infrastructure the provider needs, made or brought up to date before any host is made.
  const infraSteps: string[] = [];
  for (const r of input.infra ?? []) {
    const current = state?.infra?.[r.key];
    const specDigest = sha256(canonicalJson(r.spec));
    if (current?.spec === specDigest) continue;
    const a: InfraAction = {
      id: id.infra(r.key),
      kind: 'infra',
      op: current ? 'update' : 'create',
      resource: r.key,
      spec: r.spec,
      specDigest,
      needs: [...r.deps],
      summary: r.summary,
      reason: current ? 'settings changed' : state?.image ? 'new infrastructure' : 'new cluster',
      deps: r.deps.map(id.infra),
    };
    add(a);
    infraSteps.push(a.id);
  }

  // Hosts the provider makes, one step per batch (a local host alone, the instances of one role together).
  const batchOf = new Map<string, string>();
  const makeBatches = new Map<string, DesiredHost[]>();
  for (const h of desired.hosts) {
    const hs = hostsState[h.key];
    if (!h.make || (hs && hs.ip)) continue;
    batchOf.set(h.key, id.create(h.make.batch));
    const list = makeBatches.get(h.make.batch);
    if (list) list.push(h);
    else makeBatches.set(h.make.batch, [h]);
  }
  for (const [batch, members] of makeBatches) {
    const alone = members.length === 1 && members[0].key === batch;
    add({
      id: id.create(batch),
      kind: 'create-host',
      ...(alone ? { host: batch } : {}),
      hosts: members.map((h) => ({ key: h.key, ...(h.name ? { name: h.name } : {}), spec: h.make!.spec })),
      summary: members[0].make!.summary,
      reason: members.some((h) => hostsState[h.key]) ? 'resume: not completed' : alone ? 'new host' : `new host${members.length === 1 ? '' : 's'}`,
      deps: infraSteps,
    });
  }
  // Only the batches above are create-host steps: without any, no host has one to wait for (asked several times per host).
  const made = (k: string): string[] => (makeBatches.size === 0 ? NO_IDS : present(batchOf.get(k) ?? id.create(k)));

  // A host's layers against the image's by position in a shared table, not a Set per host: this runs per host.
  // An image may hold the same layer twice: both positions share one slot, as they share one file.
  const layerIndex = new Map<Digest, number>();
  for (const d of hostLayers) if (!layerIndex.has(d)) layerIndex.set(d, layerIndex.size);
  const heldMark = new Uint8Array(hostLayers.length);
  // Most hosts hold what the host before them holds: comparing with it costs less than looking each layer up.
  // Hosts that lack the same layers share one list, as every unpack shares the image's (a plan's lists are never
  // changed): 50,000 copies of 50 layers were a fifth of a fresh plan's memory.
  let lastHeld: Digest[] = [];
  let lastMissing: Digest[] = [];
  const missingLayers = (held: Digest[] | undefined): Digest[] => {
    if (!held || held.length === 0) return hostLayers;
    if (held.length === lastHeld.length && held.every((d, i) => d === lastHeld[i])) return lastMissing;
    lastHeld = held;
    lastMissing = computeMissing(held);
    return lastMissing;
  };
  function computeMissing(held: Digest[]): Digest[] {
    heldMark.fill(0);
    for (const d of held) {
      const i = layerIndex.get(d);
      if (i !== undefined) heldMark[i] = 1;
    }
    return hostLayers.filter((d) => heldMark[layerIndex.get(d)!] === 0);
  }

  // Every layer, the bytes a host without any is sent (summed in the same order as for any other host).
  const allBytes = hostLayers.reduce((n, d) => n + (layerSize.get(d) ?? 0), 0);
  // Each host's send, unpack and init-host ids, made once when first asked: later phases ask whether they were
  // planned, and a fresh string is hashed afresh at every lookup (a tenth of a 50,000-host plan went to that).
  const prepIds = new Map<DesiredHost, [send: string, unpack: string, initHost: string]>();
  const idsOf = (h: DesiredHost): [string, string, string] => {
    let ids = prepIds.get(h);
    if (!ids) prepIds.set(h, (ids = [id.send(h.key), id.unpack(h.key), id.hook('init-host', h.key)]));
    return ids;
  };

  // Phase 1: every desired host gets its files: made (providers that make hosts), missing layers, rootfs, init-host.
  for (const h of desired.hosts) {
    const hs = hostsState[h.key];
    const missing = missingLayers(hs?.layers);
    if (missing.length > 0) {
      const bytes = missing.length === hostLayers.length ? allBytes : missing.reduce((n, d) => n + (layerSize.get(d) ?? 0), 0);
      const reason = reasonFor(h, 'layers');
      const usual = configOnly(h) ? 'config changed' : reason === 'layer digest changed' ? `layer digest changed (${missing.length} of ${hostLayers.length})` : reason;
      // Most hosts have no drift: nothing more to work out for them (this loop runs once per host).
      const hostDrift = layerDrift(h.key);
      let resend: Digest[] = [];
      let sendReason = usual;
      if (hostDrift.length > 0) {
        const missingSet = new Set(missing);
        const drifted = hostDrift.filter((d) => d.layers?.some((l) => missingSet.has(l)));
        const driftedLayers = new Set(drifted.flatMap((d) => d.layers ?? []));
        resend = missing.filter((l) => drifted.some((d) => d.kind === 'layer-changed' && d.layers?.includes(l)));
        // Layers only the drift asks for say only that; others needed anyway (an upgrade's) keep their reason too.
        const driftReason = [...new Set(drifted.map((d) => d.reason))].join(', ');
        if (driftReason) sendReason = missing.every((l) => driftedLayers.has(l)) ? driftReason : `${usual}; ${driftReason}`;
      }
      add({
        id: idsOf(h)[0],
        kind: 'send-layers',
        host: h.key,
        layers: missing,
        bytes,
        ...(resend.length ? { resend } : NONE),
        reason: sendReason,
        deps: made(h.key),
      });
    }
    if (needsUnpack(hs) && !rolling.has(h.key)) {
      const reason = rootfsDrift(h.key)?.reason ?? (configOnly(h) ? 'config changed' : reasonFor(h, 'rootfs'));
      const [sendId, unpackId] = idsOf(h);
      add({ id: unpackId, kind: 'unpack', host: h.key, image: D, layers: hostLayers, ...configField, ...baseOf(hs), reason, deps: [...made(h.key), ...present(sendId)] });
    }
    if (!hs?.hooks['init-host']) {
      const [sendId, unpackId] = idsOf(h);
      hook(h, 'init-host', reasonFor(h, 'hook'), [...made(h.key), ...present(sendId, unpackId)]);
    }
  }

  function hook(h: { key: string }, name: HookName, reason: string, deps: string[], img: Digest = D, withMembers = false): HookAction {
    const a: HookAction = { id: id.hook(name, h.key), kind: 'hook', host: h.key, hook: name, image: img, reason, deps };
    if (withMembers) {
      a.members = members;
      if (desired.documentsDigest) a.documents = desired.documentsDigest;
    }
    add(a);
    return a;
  }

  // Phase 2: the upgrade roll. Every member's new rootfs is staged first, all at once and beside the one it runs;
  // swapping it in changes the rootfs under a running member, so that belongs to the roll, as the hook does.
  const prepares: string[] = [];
  const prepareOf = new Map<DesiredHost, string>();
  for (const h of rollOrder) {
    const hs = hostsState[h.key];
    if (!needsUnpack(hs)) continue;
    const prepareId = id.prepare(h.key);
    add({ id: prepareId, kind: 'prepare-rootfs', host: h.key, image: D, layers: hostLayers, ...configField, ...baseOf(hs), reason: changeFor(hs)!, deps: present(idsOf(h)[0]) });
    prepares.push(prepareId);
    prepareOf.set(h, prepareId);
  }
  let previous: string[] = [];
  const batches: DesiredHost[][] = [];
  for (const h of rollOrder) {
    if (rank(h) < 2) batches.push([h]);
    else if (batches.length && rank(batches[batches.length - 1][0]) === 2 && batches[batches.length - 1].length < maxUnavailable)
      batches[batches.length - 1].push(h);
    else batches.push([h]);
  }
  const masterUpgrades: string[] = [];
  // Every host's upgrade hook, in roll order (the batches are that order).
  const allUpgrades: string[] = [];
  // Whether the batches so far swapped a rootfs in: every later step of the roll then already waits for every
  // prepare, through the batch before it, and naming them all again on each unpack made an upgrade of 50,000 hosts
  // hold 2.5 billion deps. A later unpack names its own prepare only (what it swaps in). What waits for what is
  // unchanged, so is the order; only the repeats go.
  let staged = false;
  for (const batch of batches) {
    const done: string[] = [];
    let swaps = false;
    for (const h of batch) {
      const hs = hostsState[h.key];
      const changed = changeFor(hs)!;
      const [sendId, unpackId] = idsOf(h);
      if (needsUnpack(hs)) {
        // After every prepare: a host that cannot stage its rootfs stops the roll before it starts.
        add({ id: unpackId, kind: 'unpack', host: h.key, image: D, layers: hostLayers, ...configField, ...baseOf(hs), reason: changed, deps: [...present(sendId), ...(staged ? [prepareOf.get(h)!] : prepares), ...previous] });
        swaps = true;
      }
      const a = hook(h, 'upgrade', changed, present(sendId, unpackId, ...previous));
      done.push(a.id);
      allUpgrades.push(a.id);
      if (isMaster(h)) masterUpgrades.push(a.id);
    }
    previous = done;
    staged ||= swaps;
  }

  // Phase 3: joins. master0 first (new cluster), further masters one at a time, nodes in parallel after them.
  const joins: string[] = [];
  let lastMasterJoin: string | undefined;
  const needsJoin = (h: DesiredHost) => !isExisting(h);
  const prep = (h: DesiredHost) => [...made(h.key), ...present(...idsOf(h))];
  const m0 = desired.hosts.find((h) => h.key === master0)!;
  if (!initialised && needsJoin(m0)) {
    const a = hook(m0, 'init-master0', hostsState[m0.key] ? 'resume: not completed' : 'new cluster', [...prep(m0), ...masterUpgrades], D, true);
    joins.push(a.id);
    lastMasterJoin = a.id;
  }
  for (const h of masters) {
    if (h.key === master0 && !initialised) continue;
    if (!needsJoin(h)) continue;
    const a = hook(h, 'join-master', reasonFor(h, 'hook'), [...prep(h), ...masterUpgrades, ...(lastMasterJoin ? [lastMasterJoin] : [])], D, true);
    joins.push(a.id);
    lastMasterJoin = a.id;
  }
  const masterJoins = [...joins];
  for (const h of desired.hosts) {
    if (isMaster(h) || !needsJoin(h)) continue;
    const a = hook(h, 'join-node', reasonFor(h, 'hook'), [...prep(h), ...masterUpgrades, ...masterJoins], D, true);
    joins.push(a.id);
  }

  // Phase 4: removals. Masters leave one at a time (quorum), after the new members have joined.
  const leaves: string[] = [];
  let lastMasterLeave: string | undefined;
  for (const hs of removed) {
    const reason = 'removed from Clusterfile';
    const img = hs.rootfsImage ?? state?.image?.digest ?? D;
    let prev: string[] = [];
    if (joinedBefore(hs) || (hs.status === 'leaving' && !hs.hooks.leave)) {
      if (!hs.hooks.leave) {
        const deps = [...joins, ...allUpgrades, ...(isMaster(hs) && lastMasterLeave ? [lastMasterLeave] : [])];
        const a = hook(hs, 'leave', reason, deps, img);
        leaves.push(a.id);
        if (isMaster(hs)) lastMasterLeave = a.id;
        prev = [a.id];
      }
    }
    if (hs.rootfsImage && !hs.hooks.clean) prev = [hook(hs, 'clean', reason, prev, img).id];
    add({ id: id.removeFiles(hs.key), kind: 'remove-files', host: hs.key, reason, deps: prev });
    if (desired.makesHosts || hs.machine !== undefined) {
      add({ id: id.deleteHost(hs.key), kind: 'delete-host', host: hs.key, reason, deps: [id.removeFiles(hs.key)] });
    }
  }
  const hostRemovals = removed.map((hs) => (actions.has(id.deleteHost(hs.key)) ? id.deleteHost(hs.key) : id.removeFiles(hs.key)));

  // Infrastructure no longer needed goes last, after the hosts that used it, dependants first.
  const wantedInfra = new Set((input.infra ?? []).map((r) => r.key));
  for (const a of infraDeletes(state, (k) => !wantedInfra.has(k), hostRemovals, 'no longer needed')) add(a);

  // Phase 5: current members learn the new membership (hosts added, removed, or master0 promoted) or documents.
  const reconfigures: string[] = [];
  for (const h of desired.hosts) {
    const hs = hostsState[h.key];
    if (!isExisting(h) || (hs.members === members && hs.documents === desired.documentsDigest)) continue;
    const why = hs.members !== members ? (promotion ?? (configChanged ? 'config changed' : 'membership changed')) : 'Clusterfile documents changed';
    const a = hook(h, 'reconfigure', why, [...present(id.send(h.key), id.unpack(h.key), id.hook('upgrade', h.key)), ...joins, ...leaves], D, true);
    reconfigures.push(a.id);
  }

  // Phase 6: Kubefile CMDs on master0, in order, when their identity has not run yet.
  const ran = new Set(state?.cmdsRun ?? []);
  const oldCmds = new Map((state?.image?.cmds ?? []).map((c) => [c.cmd, c.identity]));
  let lastCmd: string | undefined;
  const cmds = image.cmds.map((c) => ({ cmd: c.cmd, identity: withConfig(c.identity) }));
  cmds.forEach((c, i) => {
    if (ran.has(c.identity)) return;
    const reason = !state?.image
      ? 'new cluster'
      : configChanged && state.image.digest === D
        ? 'config changed'
      : oldCmds.has(c.cmd) && oldCmds.get(c.cmd) !== c.identity
        ? 'CMD identity changed'
        : state.image.digest === D
          ? 'resume: not completed'
          : 'new CMD';
    const deps = [...present(id.unpack(master0), id.hook('init-host', master0)), ...joins, ...allUpgrades, ...reconfigures, ...(lastCmd ? [lastCmd] : [])];
    add({ id: id.cmd(i), kind: 'run-cmd', host: master0, cmd: c.cmd, identity: c.identity, reason, deps });
    lastCmd = id.cmd(i);
  });

  // Phase 6b: LAUNCH's apps on master0 after the CMDs, in order, each when its identity differs from its last launch.
  const launched = state?.appsLaunched ?? {};
  let lastLaunch: string | undefined;
  const launch = (image.launch ?? []).map((l) => ({ ...l, identity: withConfig(l.identity) }));
  for (const l of launch) {
    if (launched[l.app] === l.identity) continue;
    const reason = !state?.image
      ? 'new cluster'
      : configChanged && state.image.digest === D
        ? 'config changed'
      : launched[l.app] !== undefined
        ? 'app changed'
        : state.image.digest === D
          ? 'resume: not completed'
          : 'new app';
    const deps = [
      ...present(id.unpack(master0), id.hook('init-host', master0)),
      ...joins,
      ...allUpgrades,
      ...reconfigures,
      ...(lastCmd ? [lastCmd] : []),
      ...(lastLaunch ? [lastLaunch] : []),
    ];
    const { identity, ...rest } = l;
    add({ id: id.launch(l.app), kind: 'launch-app', host: master0, ...rest, cmds: [...l.cmds], needs: [...l.needs], identity, reason, deps });
    lastLaunch = id.launch(l.app);
  }

  // Phase 6c: the Clusterfile's plugins, node labels and taints, and host aliases, at their points among the steps above.
  addPluginSteps({ desired, state, master0, removed }, { actions, add });

  // Phase 7: bookkeeping once everything else succeeded.
  if (state?.image?.digest !== D || configChanged || (state?.master0 !== undefined && state.master0 !== master0)) {
    const reason = !state?.image ? 'new cluster' : upgrading ? change! : promotion ?? (configChanged ? 'config changed' : 'master0 changed');
    // Every step planned, each once: set into the plan as it is, without the check `add` makes of a step's deps.
    actions.set({
      id: id.setImage,
      kind: 'set-image',
      image: {
        ref: image.ref,
        digest: D,
        layers: imageLayers,
        cmds: cmds.map((c) => ({ ...c })),
        ...(launch.length ? { launch: launch.map((l) => ({ app: l.app, identity: l.identity })) } : {}),
        ...(C ? { config: C } : {}),
      },
      master0,
      reason,
      deps: actions.ids(),
    });
  }

  const list = orderActions(actions.list(), desired.hosts.map((h) => h.key), removed.map((h) => h.key), actions.indexOf);
  // One pass over the steps for what the summary needs of them: the hosts touched, infrastructure by operation,
  // and whether any CMD or app runs.
  const touched = new Set<string | undefined>();
  const infraOps: Record<InfraAction['op'], number> = { create: 0, update: 0, delete: 0 };
  let guests = false;
  for (const a of list) {
    touched.add(a.host);
    if (a.kind === 'infra') infraOps[a.op]++;
    else if (a.kind === 'run-cmd' || a.kind === 'launch-app') guests = true;
  }
  // A member no step touches is unchanged.
  const hosts: PlannedHost[] = [
    ...desired.hosts.map((h) => planned(h.key, hostsState[h.key]?.ip ?? h.ip, h.name, h.roles, !isExisting(h) ? 'add' : touched.has(h.key) ? 'change' : 'none')),
    ...removed.map((hs) => planned(hs.key, hs.ip || undefined, hs.name, hs.roles, 'destroy')),
  ];
  // CMDs and launches of a brand-new cluster are part of adding it; on an existing one they change the cluster.
  const clusterChanged = state?.image !== undefined && guests;
  const impacts: Record<Impact, number> = { add: 0, change: 0, destroy: 0, none: 0 };
  for (const h of hosts) impacts[h.impact]++;
  return {
    version: PLAN_VERSION,
    operation: 'apply',
    cluster: desired.name,
    provider: desired.provider,
    lineage: state?.lineage ?? null,
    serial: state?.serial ?? 0,
    clusterfileDigest: desired.digest,
    image: { ref: image.ref, digest: D },
    master0,
    ...(desired.documents?.length ? { documents: { names: desired.documents.map(documentName), digest: desired.documentsDigest! } } : {}),
    actions: list,
    ...(input.config ? { config: structuredClone(input.config) } : {}),
    hosts,
    ...(input.refresh ? { refresh: structuredClone(input.refresh) } : {}),
    summary: {
      add: impacts.add + infraOps.create,
      change: impacts.change + (clusterChanged ? 1 : 0) + infraOps.update,
      destroy: impacts.destroy + infraOps.delete,
    },
  };
}

/**
 * Removal of the recorded infrastructure that `drop` selects: each after `after` (the hosts' removals) and after
 * every dropped resource that needs it, so a VPC goes after its vSwitch.
 */
function infraDeletes(state: ClusterState | undefined, drop: (key: string) => boolean, after: string[], reason: string): InfraAction[] {
  const all = state?.infra ?? {};
  // Dependants first (a vSwitch before its VPC), so the list reads in the order things go.
  const depth = (k: string, seen = new Set<string>()): number =>
    seen.has(k) ? 0 : 1 + Math.max(0, ...(all[k]?.needs ?? []).filter((n) => all[n]).map((n) => depth(n, new Set([...seen, k]))));
  const recorded = Object.entries(all)
    .filter(([k]) => drop(k))
    .sort(([a], [b]) => depth(b) - depth(a) || (a < b ? -1 : 1));
  const dropped = new Set(recorded.map(([k]) => k));
  return recorded.map(([key, r]) => ({
    id: id.infra(key),
    kind: 'infra',
    op: 'delete',
    resource: key,
    spec: {},
    specDigest: r.spec,
    needs: [...(r.needs ?? [])],
    summary: r.summary ?? key,
    reason,
    deps: [...after, ...recorded.filter(([k, o]) => (o.needs ?? []).includes(key) && dropped.has(k)).map(([k]) => id.infra(k))],
  }));
}

function planned(key: string, ip: string | undefined, name: string | undefined, roles: string[], impact: Impact): PlannedHost {
  const p: PlannedHost = { key, roles: [...roles], impact };
  if (ip) p.ip = ip;
  if (name) p.name = name;
  return p;
}

/** Masters first, each group in the order the state lists them. */
function orderHosts(hosts: HostState[]): HostState[] {
  return [...hosts.filter(isMaster), ...hosts.filter((h) => !isMaster(h))];
}

const KIND_ORDER: Record<Action['kind'], number> = {
  infra: -1,
  'create-host': 0,
  'send-layers': 1,
  'prepare-rootfs': 1.8,
  unpack: 2,
  hook: 3,
  'run-cmd': 4,
  'launch-app': 4.5,
  'host-aliases': 1.5,
  plugin: 3.5,
  'node-meta': 3.6,
  'remove-files': 5,
  'delete-host': 6,
  gate: 6.5,
  'set-image': 7,
};
const HOOK_ORDER: Record<HookName, number> = {
  'init-host': 0,
  'init-master0': 1,
  'join-master': 2,
  'join-node': 3,
  upgrade: 4,
  leave: 5,
  clean: 6,
  reconfigure: 7,
};

/**
 * A topological order (every action after its deps) that reads naturally: among the ready actions, the one of the
 * earliest host (desired, then removed) and earliest step goes first; cluster steps come when they are ready.
 * Kahn's algorithm over a heap of the ready actions by their rank in that reading order: n log n, where picking
 * the first ready action by scanning the pending ones was quadratic (33 s for 50,000 hosts).
 */
export function orderActions(
  actions: readonly Action[],
  desiredKeys: string[],
  removedKeys: string[],
  indexOf: (id: string) => number | undefined = positions(actions),
): Action[] {
  // Nothing to order (a no-op plan): no ranks of 50,000 hosts to make.
  if (actions.length === 0) return [];
  const hostRank = new Map<string, number>();
  let hostCount = 0;
  for (const k of desiredKeys) hostRank.set(k, hostCount++);
  for (const k of removedKeys) hostRank.set(k, hostCount++);
  const n = actions.length;
  // The reading order's key, (host, step kind, hook or CMD), held in flat arrays: sorting 200,000 actions by
  // key arrays looked up in a Map cost more in garbage than in comparisons. Cluster steps come after every host.
  const clusterRank = hostCount;
  const byHost = new Int32Array(n);
  const byKind = new Float64Array(n);
  const byStep = new Float64Array(n);
  actions.forEach((a, i) => {
    byHost[i] = a.kind === 'run-cmd' || a.kind === 'launch-app' || a.kind === 'set-image' || a.kind === 'gate' ? clusterRank : (hostRank.get(a.host!) ?? 0);
    byKind[i] = KIND_ORDER[a.kind];
    byStep[i] = a.kind === 'hook' ? HOOK_ORDER[a.hook] : a.kind === 'run-cmd' ? Number(a.id.split(':')[1]) : 0;
  });
  // By host first with a counting sort (stable, so equal keys keep the order the actions were made in), then each
  // host's few steps by kind and step: linear in the plan, where one comparison sort of all of it was n log n.
  const start0 = new Int32Array(clusterRank + 2);
  for (let i = 0; i < n; i++) start0[byHost[i] + 1]++;
  for (let r = 0; r <= clusterRank; r++) start0[r + 1] += start0[r];
  const next = start0.slice(0, clusterRank + 1);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[next[byHost[i]]++] = i;
  const within = (x: number, y: number) => byKind[x] - byKind[y] || byStep[x] - byStep[y] || x - y;
  for (let r = 0; r <= clusterRank; r++) {
    const from = start0[r];
    const to = start0[r + 1];
    if (to - from > 16) order.subarray(from, to).sort(within);
    else {
      for (let i = from + 1; i < to; i++) {
        const v = order[i];
        let j = i - 1;
        for (; j >= from && within(order[j], v) > 0; j--) order[j + 1] = order[j];
        order[j + 1] = v;
      }
    }
  }
  const sorted: Action[] = new Array(n);
  for (let i = 0; i < n; i++) sorted[i] = actions[order[i]];
  // A dep's rank in the reading order, from its position in `actions`.
  const rankAt = new Int32Array(n);
  for (let i = 0; i < n; i++) rankAt[order[i]] = i;
  // Dependents as one flat adjacency array (offsets per action): no small array per action to collect. A dep named
  // twice counts twice and is released twice; a dep that is no action of the plan is never done (a cycle, below).
  // Each dep's rank is looked up once, kept in `depRank` (-1: no action of the plan) for the second pass.
  const waiting = new Int32Array(n);
  const start = new Int32Array(n + 1);
  let depCount = 0;
  for (let i = 0; i < n; i++) depCount += sorted[i].deps.length;
  const depRank = new Int32Array(depCount);
  for (let i = 0, p = 0; i < n; i++) {
    const deps = sorted[i].deps;
    waiting[i] = deps.length;
    for (const d of deps) {
      const at = indexOf(d);
      const j = at === undefined ? -1 : rankAt[at];
      depRank[p++] = j;
      if (j >= 0) start[j + 1]++;
    }
  }
  for (let i = 0; i < n; i++) start[i + 1] += start[i];
  const fill = start.slice(0, n);
  const edges = new Int32Array(start[n]);
  for (let i = 0, p = 0; i < n; i++) {
    for (let e = sorted[i].deps.length; e > 0; e--) {
      const j = depRank[p++];
      if (j >= 0) edges[fill[j]++] = i;
    }
  }
  const ready = new MinHeap();
  for (let i = 0; i < n; i++) if (waiting[i] === 0) ready.push(i);
  const out: Action[] = [];
  while (ready.size > 0) {
    const i = ready.pop();
    out.push(sorted[i]);
    for (let e = start[i]; e < start[i + 1]; e++) if (--waiting[edges[e]] === 0) ready.push(edges[e]);
  }
  if (out.length < n) {
    const left = sorted.filter((_, i) => waiting[i] > 0);
    throw new InternalError(`plan has a dependency cycle among ${left.map((a) => a.id).join(', ')}`);
  }
  return out;
}

/** Where each id is in `actions` (the last of repeats), for callers that keep no table of their own. */
function positions(actions: readonly Action[]): (id: string) => number | undefined {
  const at = new Map<string, number>();
  actions.forEach((a, i) => at.set(a.id, i));
  return (id) => at.get(id);
}

/** The deps that name planned steps; most name only those, and keep their list then (no copy per step). */
function onlyPlanned(deps: string[], actions: ActionTable): string[] {
  for (let i = 0; i < deps.length; i++) if (!actions.has(deps[i])) return deps.filter((d) => actions.has(d));
  return deps;
}

/** The list without repeats, first occurrences kept; most lists are short and already distinct, so no copy then. */
function distinct(list: string[]): string[] {
  if (list.length < 2) return list;
  if (list.length <= 8) {
    let repeats = false;
    for (let i = 1; i < list.length && !repeats; i++) for (let j = 0; j < i; j++) if (list[i] === list[j]) repeats = true;
    if (!repeats) return list;
  }
  return [...new Set(list)];
}

/** A binary min-heap of numbers (ranks): the ready action that reads first is always at the top. */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  push(v: number): void {
    const h = this.items;
    h.push(v);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent] <= v) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = v;
  }

  pop(): number {
    const h = this.items;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const c = l + 1 < h.length && h[l + 1] < h[l] ? l + 1 : l;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/**
 * Tear everything down: clean on every host in parallel, then remove files, then delete LOCAL hosts.
 * `unrecorded`: hosts the provider holds that the state never recorded (a failed or killed apply); they are
 * only deleted, as nothing of the cluster ran on them.
 */
export function planDestroy(state: ClusterState, unrecorded: string[] = [], plugins: DesiredPlugin[] = []): Plan {
  let actions: Action[] = [];
  const hosts = orderHosts(byHostName(Object.values(state.hosts)));
  const strays = unrecorded.filter((k) => !state.hosts[k]);
  for (const hs of hosts) {
    const reason = 'destroy';
    let prev: string[] = [];
    const img = hs.rootfsImage ?? state.image?.digest;
    if (hs.rootfsImage && img && !hs.hooks.clean) {
      actions.push({ id: id.hook('clean', hs.key), kind: 'hook', host: hs.key, hook: 'clean', image: img, reason, deps: [] });
      prev = [id.hook('clean', hs.key)];
    }
    actions.push({ id: id.removeFiles(hs.key), kind: 'remove-files', host: hs.key, reason, deps: prev });
    if (hs.machine !== undefined) {
      actions.push({ id: id.deleteHost(hs.key), kind: 'delete-host', host: hs.key, reason, deps: [id.removeFiles(hs.key)] });
    }
  }
  // PreClean and PostClean plugins of the Clusterfile around each host's clean.
  const byId = new Map(actions.map((a) => [a.id, a]));
  const addStep = (a: Action) => {
    a.deps = [...new Set(a.deps)].filter((d) => byId.has(d));
    byId.set(a.id, a);
  };
  const shell = plugins.filter((p) => p.type === 'SHELL');
  const steps = indexed({ actions: byId, add: addStep });
  for (const hs of hosts) addCleanSteps(shell, hs, state.master0, steps);
  if (byId.size > actions.length) actions = orderActions([...byId.values()], hosts.map((h) => h.key), []);
  for (const k of strays) actions.push({ id: id.deleteHost(k), kind: 'delete-host', host: k, reason: 'not in state', deps: [] });
  const hostSteps = actions.map((a) => a.id);
  const infra = infraDeletes(state, () => true, hostSteps, 'destroy');
  actions.push(...infra);
  return {
    version: PLAN_VERSION,
    operation: 'destroy',
    cluster: state.cluster,
    provider: state.provider,
    lineage: state.lineage,
    serial: state.serial,
    clusterfileDigest: null,
    image: null,
    actions,
    hosts: [
      ...hosts.map((hs) => planned(hs.key, hs.ip || undefined, hs.name, hs.roles, 'destroy')),
      ...strays.map((k) => planned(k, undefined, undefined, [], 'destroy')),
    ],
    summary: { add: 0, change: 0, destroy: hosts.length + strays.length + infra.length },
  };
}

/** Worst impact of each host in the plan (destroy > add > change > none), for rendering and summaries. */
export function hostImpacts(p: Plan): Map<string, Impact> {
  return new Map(p.hosts.map((h) => [h.key, h.impact]));
}

/** `Kind/name`, or the kind alone for documents without a name (kubeadm's). */
function documentName(d: { kind: string; name?: string }): string {
  return d.name ? `${d.kind}/${d.name}` : d.kind;
}
