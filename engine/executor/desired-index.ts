/**
 * The Clusterfile's hosts by key. Recording each step's result and building each hook's environment look a host up;
 * a search of the list per step made an apply quadratic in its hosts. Built once per list of hosts (the desired
 * cluster is not changed during an apply) and rebuilt should the list's length change.
 */
import type { DesiredCluster, DesiredHost } from '../clusterfile/types.js';

const byList = new WeakMap<DesiredHost[], { size: number; byKey: Map<string, DesiredHost> }>();

export function desiredHost(desired: DesiredCluster | undefined, key: string): DesiredHost | undefined {
  if (!desired) return undefined;
  const hosts = desired.hosts;
  let index = byList.get(hosts);
  if (!index || index.size !== hosts.length) index = build(hosts);
  const h = index.byKey.get(key);
  // A host replaced in place since the index was built: the index is made again.
  return !h || h.key === key ? h : build(hosts).byKey.get(key);
}

function build(hosts: DesiredHost[]) {
  const byKey = new Map<string, DesiredHost>();
  // The first host of a key, as a search of the list finds it.
  for (const h of hosts) if (!byKey.has(h.key)) byKey.set(h.key, h);
  const index = { size: hosts.length, byKey };
  byList.set(hosts, index);
  return index;
}
