/**
 * `ci state rm`: hosts forgotten by the state, as Terraform's `state rm` forgets resources. Pure: nothing on the
 * hosts is touched, and the CLI writes the result under the state lock.
 *
 * master0 is where init-master0 ran; the planner knows the cluster is initialised by it. Forgetting it while other
 * members stay would make the next plan run init-master0 again on a running cluster, so that is refused. Forgetting
 * every host is allowed: the state then holds no cluster to re-initialise, and is left as `ci destroy` leaves one
 * (same lineage; cluster-level records of what ran on the hosts are gone with them).
 *
 * Hook outputs are one map for the whole cluster (a join token is every later hook's), not kept per host: they stay
 * while any host does.
 */
import { UsageError } from '../engine/kernel/errors.js';
import { emptyState, type ClusterState, type HostState } from './model.js';

export interface Forgotten {
  /** The state without the hosts (the one given is not changed). */
  state: ClusterState;
  /** The hosts removed, in the order named. */
  removed: HostState[];
  /** No host is left: master0, image, CMDs and apps run, and hook outputs were forgotten too. */
  emptied: boolean;
}

/** A host of the state by key, IP, name or hostname. */
export function findHost(state: ClusterState, name: string): HostState | undefined {
  return state.hosts[name] ?? Object.values(state.hosts).find((x) => x.ip === name || x.name === name || x.hostname === name);
}

/** Throws UsageError naming every host that is not in the state, and refuses to forget master0 alone. */
export function forgetHosts(state: ClusterState, names: string[], where: string): Forgotten {
  const removed: HostState[] = [];
  const unknown: string[] = [];
  for (const n of names) {
    const h = findHost(state, n);
    if (!h) unknown.push(n);
    else if (!removed.includes(h)) removed.push(h);
  }
  if (unknown.length > 0) {
    throw new UsageError(
      `${unknown.length === 1 ? 'host' : 'hosts'} ${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not in the state ${where}`,
      `run \`ci state list --state ${where}\` to see the hosts`,
    );
  }
  const gone = new Set(removed.map((h) => h.key));
  const left = Object.keys(state.hosts).filter((k) => !gone.has(k));
  if (state.master0 && gone.has(state.master0) && left.length > 0) {
    throw new UsageError(
      `${state.master0} is master0 of cluster ${state.cluster}: with it forgotten and ${left.length} other host${left.length === 1 ? '' : 's'} kept, ` +
        'the next plan would run init-master0 again on a running cluster',
      `to hand master0 over, take ${state.master0} out of the Clusterfile and apply (another master is promoted); ` +
        `to forget the whole cluster, name every host of the state`,
    );
  }
  const next = structuredClone(state);
  for (const k of gone) delete next.hosts[k];
  if (left.length > 0) return { state: next, removed, emptied: false };
  const empty = emptyState(state.cluster, state.provider, state.lineage);
  // Infrastructure is the cluster's, not a host's, and a provider's pending request must resume as it was.
  return {
    state: { ...empty, serial: state.serial, ...(next.infra ? { infra: next.infra } : {}), ...(next.pending ? { pending: next.pending } : {}) },
    removed,
    emptied: true,
  };
}
