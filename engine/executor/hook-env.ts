/** The environment every hook and CMD gets: who the cluster is, who this host is, and earlier hooks' outputs. */
import type { Action, Plan } from '../../plans/actions.js';
import type { DesiredCluster } from '../clusterfile/types.js';
import type { ClusterState } from '../../state/model.js';
import { byHostName } from '../../plans/host-order.js';
import { remoteDocumentsFile, remoteRootfs } from './remote-layout.js';
import { desiredHost } from './desired-index.js';

export interface EnvContext {
  plan: Plan;
  desired?: DesiredCluster;
  state: ClusterState;
  /**
   * Kept by the executor for one apply: the member lists every hook gets, worked out once rather than per step (they
   * list every host). The executor drops them whenever a step may change an address (a host made or removed).
   */
  envCache?: EnvCache;
}

export interface EnvCache {
  lists?: { masters: string; nodes: string };
}

const ipOf = (ctx: EnvContext, key: string) => ctx.state.hosts[key]?.ip || desiredHost(ctx.desired, key)?.ip || '';

function memberLists(ctx: EnvContext): { masters: string; nodes: string } {
  const { desired, state } = ctx;
  // Membership is the cluster as it will be: the Clusterfile's hosts (or, on destroy, the state's).
  const members = desired ? desired.hosts.map((h) => ({ key: h.key, roles: h.roles })) : byHostName(Object.values(state.hosts));
  const list = (role: 'master' | 'node') =>
    members
      .filter((m) => (role === 'master' ? m.roles.includes('master') : !m.roles.includes('master')))
      .map((m) => ipOf(ctx, m.key))
      .filter(Boolean)
      .join(',');
  return { masters: list('master'), nodes: list('node') };
}

export function hookEnv(ctx: EnvContext, action: Action & { host: string }): Record<string, string> {
  const { plan, desired, state } = ctx;
  const host = state.hosts[action.host];
  const d = desiredHost(desired, action.host);
  const lists = ctx.envCache ? (ctx.envCache.lists ??= memberLists(ctx)) : memberLists(ctx);
  const master0 = plan.master0 ?? state.master0 ?? '';
  const image = action.kind === 'hook' && (action.hook === 'leave' || action.hook === 'clean') ? state.image : plan.image;
  const env: Record<string, string> = {
    ...state.outputs,
    ...(desired?.env ?? {}),
    ...(d?.env ?? {}),
    // sealer's cmd_args: values for the Kubefile's CMDs (and LAUNCH commands) to read as $NAME; never over CI_*.
    ...(action.kind === 'run-cmd' || action.kind === 'launch-app' ? (desired?.cmdArgs ?? {}) : {}),
    CI_CLUSTER: plan.cluster,
    CI_HOST: host?.ip || d?.ip || '',
    CI_HOSTNAME: host?.hostname ?? host?.name ?? '',
    CI_ROLES: (d?.roles ?? host?.roles ?? []).join(','),
    CI_MASTER0: master0 ? ipOf(ctx, master0) : '',
    CI_MASTERS: lists.masters,
    CI_NODES: lists.nodes,
    CI_ROOTFS: remoteRootfs(plan.cluster),
    CI_IMAGE: image?.ref ?? '',
    CI_IMAGE_DIGEST: image?.digest ?? '',
  };
  if (action.kind === 'hook' && desired?.documents?.length) env.CI_CLUSTER_DOCUMENTS = remoteDocumentsFile(plan.cluster);
  if (action.kind === 'hook' && action.hook === 'upgrade') {
    // What this host ran until now, which after an interrupted roll or a rollback may differ from the state's image.
    const previous = host?.image?.ref ?? state.image?.ref;
    if (previous) env.CI_PREVIOUS_IMAGE = previous;
  }
  env.PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  return env;
}
