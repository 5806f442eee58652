import { recordStart, recordSuccess } from '../engine/executor/record.js';
/** Plain-data builders for planner tests, and a simulator that applies a plan to state the way the executor does. */
import { sha256, type Digest } from '../engine/kernel/digest.js';
import { parseClusterfile } from '../engine/clusterfile/parse.js';
import type { DesiredCluster } from '../engine/clusterfile/types.js';
import type { Action, ImageInfo, Plan } from '../plans/actions.js';
import { emptyState, type ClusterState } from '../state/model.js';

export const layer = (name: string): Digest => sha256(`layer:${name}`);

export function makeImage(tag: string, layerNames: string[], cmds: string[] = []): ImageInfo {
  const layers = layerNames.map((n, i) => ({ digest: layer(n), size: 1_000_000 * (i + 1) + 234_567, createdBy: `COPY ${n} .` }));
  const digest = sha256(`image:${tag}:${layerNames.join(',')}:${cmds.join(',')}`);
  return {
    ref: `etcd-example:${tag}`,
    digest,
    layers,
    cmds: cmds.map((cmd, i) => ({ cmd, identity: sha256(`${i}|${cmd}|${layerNames.join(',')}`) })),
  };
}

export function clusterYaml(groups: { ips?: string[]; count?: number; roles: string[] }[], opts: { provider?: string; image?: string } = {}): string {
  const hosts = groups
    .map((g) => `  - roles: [${g.roles.join(', ')}]\n` + (g.ips ? `    ips: [${g.ips.join(', ')}]\n` : '') + (g.count ? `    count: ${g.count}\n` : ''))
    .join('');
  return `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: demo}
spec:
  image: ${opts.image ?? 'etcd-example:v1'}
${opts.provider ? `  provider: ${opts.provider}\n` : ''}  ssh: {user: root, passwd: hunter22}
  hosts:
${hosts}`;
}

export function desired(groups: Parameters<typeof clusterYaml>[0], opts: Parameters<typeof clusterYaml>[1] = {}): DesiredCluster {
  return parseClusterfile(clusterYaml(groups, opts), 'Clusterfile', {});
}

/** Executes the first `limit` actions of the plan against a copy of the state, as the executor records them. */
export function simulate(plan: Plan, d: DesiredCluster | undefined, state: ClusterState | undefined, limit = Infinity): ClusterState {
  // The executor's own bookkeeping, so planner tests check exactly what a real apply records.
  const s: ClusterState = structuredClone(state ?? emptyState(plan.cluster, plan.provider, 'lineage-1'));
  plan.actions.slice(0, limit).forEach((a: Action, i) => {
    recordStart(s, a);
    // What a provider would report: an address per host made, an id per piece of infrastructure.
    const made =
      a.kind === 'create-host'
        ? Object.fromEntries(a.hosts.map((h, j) => [h.key, { ip: `192.168.77.${10 + Object.keys(s.hosts).length + i + j}`, machine: { ...h.spec, id: `m-${h.key}` } }]))
        : undefined;
    const infra = a.kind === 'infra' && a.op !== 'delete' ? { id: `${a.resource}-1` } : undefined;
    recordSuccess(s, d, a, { ...(made ? { made } : {}), ...(infra ? { infra } : {}) }, plan.image?.ref);
  });
  s.serial++;
  return s;
}

/** Every dependency names an action in the plan, and the deps form a DAG (checked by listing order). */
export function assertDag(plan: Plan): void {
  const ids = new Set(plan.actions.map((a) => a.id));
  if (ids.size !== plan.actions.length) throw new Error('duplicate action ids');
  const seen = new Set<string>();
  for (const a of plan.actions) {
    for (const d of a.deps) {
      if (!ids.has(d)) throw new Error(`${a.id} depends on missing ${d}`);
      if (!seen.has(d)) throw new Error(`${a.id} depends on ${d}, which is listed later (cycle or bad order)`);
    }
    seen.add(a.id);
  }
}

/** Whether step `id` waits for step `dep`, directly or through the steps (and gates) it waits for. */
export function waitsFor(plan: Plan, id: string, dep: string): boolean {
  const byId = new Map(plan.actions.map((a) => [a.id, a]));
  const seen = new Set<string>();
  const todo = [...(byId.get(id)?.deps ?? [])];
  while (todo.length) {
    const d = todo.pop()!;
    if (d === dep) return true;
    if (seen.has(d)) continue;
    seen.add(d);
    todo.push(...(byId.get(d)?.deps ?? []));
  }
  return false;
}
