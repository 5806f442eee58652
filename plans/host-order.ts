import type { HostState } from '../state/model.js';

// Host names read as people number them: node-2 before node-10, 10.0.0.9 before 10.0.0.10. Made on first use:
// making a collator costs every command that loads the planner about 10 ms, and most never sort hosts.
let hostNames: Intl.Collator | undefined;

/**
 * Hosts of a state in name order. The record's own key order is the order an apply first wrote each host, which
 * differs from run to run with parallel steps, so nothing shown to a user may follow it.
 */
export function byHostName(hosts: HostState[]): HostState[] {
  const names = (hostNames ??= new Intl.Collator('en', { numeric: true }));
  return [...hosts].sort((a, b) => names.compare(a.key, b.key));
}
