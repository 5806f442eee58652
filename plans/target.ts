/**
 * `--target HOST`: a plan cut down to the steps of some hosts and what those steps depend on, as Terraform's
 * `-target` does. A pure function of a plan and the names given: the planner still makes the whole plan, so what a
 * partial plan holds is exactly a part of what the full one would run, ids and deps unchanged.
 *
 * Cluster-level steps (CMDs, LAUNCH apps, set-image) are never part of a partial plan: they depend on every host's
 * join, and set-image records the image as applied to the whole cluster, which a partial apply has not done. The
 * next full plan shows them.
 */
import { UsageError } from '../engine/kernel/errors.js';
import type { Action, Plan, PlannedHost } from './actions.js';

/** The host an action works on for targeting: a node's labels are set from master0, but they are the node's. */
function targetOf(a: Action): string | undefined {
  if (a.kind === 'node-meta') return a.target;
  if (a.kind === 'run-cmd' || a.kind === 'launch-app' || a.kind === 'set-image') return undefined;
  return a.host;
}

/** The hosts a create step makes, so a host made in a batch with others can be targeted by its own name. */
function madeBy(a: Action): string[] {
  return a.kind === 'create-host' ? a.hosts.map((h) => h.key) : [];
}

/**
 * The plan's host keys for names given by key, IP or name (as `ci plan` shows them), in the order given, each once.
 * A name that is no host of the plan (Clusterfile or state) is a usage error naming it.
 */
export function resolveTargets(plan: Pick<Plan, 'cluster' | 'hosts'>, names: string[]): string[] {
  const keys: string[] = [];
  const unknown: string[] = [];
  for (const n of names) {
    const h: PlannedHost | undefined = plan.hosts.find((x) => x.key === n) ?? plan.hosts.find((x) => x.ip === n || x.name === n);
    if (!h) unknown.push(n);
    else if (!keys.includes(h.key)) keys.push(h.key);
  }
  if (unknown.length > 0) {
    const known = plan.hosts.map((h) => h.key);
    throw new UsageError(
      `--target ${unknown.join(', ')}: no such host in the Clusterfile or the state of cluster ${plan.cluster}`,
      known.length
        ? `name a host by its key, IP or name; the hosts are ${known.slice(0, 10).join(', ')}${known.length > 10 ? ', ...' : ''}`
        : 'the Clusterfile names no hosts and the state holds none',
    );
  }
  return keys;
}

/**
 * The part of `plan` that works on `targets` (host keys, see resolveTargets) plus every step those steps depend
 * on, in the plan's order. Its hosts, summary and `targets` describe that part only.
 */
export function targetPlan(plan: Plan, targets: string[]): Plan {
  const wanted = new Set(targets);
  const byId = new Map(plan.actions.map((a) => [a.id, a]));
  const keep = new Set<string>();
  const visit = (id: string) => {
    if (keep.has(id)) return;
    const a = byId.get(id);
    if (!a) return;
    keep.add(id);
    for (const d of a.deps) visit(d);
  };
  for (const a of plan.actions) {
    const t = targetOf(a);
    if ((t !== undefined && wanted.has(t)) || madeBy(a).some((k) => wanted.has(k))) visit(a.id);
  }
  const actions = plan.actions.filter((a) => keep.has(a.id)).map((a) => structuredClone(a));
  const touched = new Set(actions.flatMap((a) => [targetOf(a), ...madeBy(a)]).filter((k): k is string => k !== undefined));
  const hosts = plan.hosts.filter((h) => touched.has(h.key)).map((h) => ({ ...h, roles: [...h.roles] }));
  const infra = (op: string) => actions.filter((a) => a.kind === 'infra' && a.op === op).length;
  return {
    ...structuredClone(plan),
    actions,
    hosts,
    targets: [...targets],
    summary: {
      add: hosts.filter((h) => h.impact === 'add').length + infra('create'),
      change: hosts.filter((h) => h.impact === 'change').length + infra('update'),
      destroy: hosts.filter((h) => h.impact === 'destroy').length + infra('delete'),
    },
  };
}
