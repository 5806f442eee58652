/**
 * Before any plan is made: is this state the state of the cluster it is used on? A state of another cluster, or no
 * state while the cluster plainly exists (its local hosts, or hosts holding its files), would otherwise plan every
 * host as new and initialise a running cluster again. These checks refuse that; the planner stays pure.
 */
import pLimit from 'p-limit';
import { HostClaimedError, StateIdentityError } from '../kernel/errors.js';
import type { DesiredCluster, DesiredHost } from '../clusterfile/types.js';
import { connectSsh } from '../../providers/ssh/session.js';
import type { ClusterState } from '../../state/model.js';
import type { ProviderRuntime } from '../../providers/contract.js';
import { judgeMark, markScript, parseMark, stateKnowsHost } from './host-claim.js';

export interface IdentityWarning {
  host?: string;
  message: string;
}

export interface IdentityInput {
  desired: DesiredCluster;
  state: ClusterState | undefined;
  statePath: string;
  provider: ProviderRuntime;
  /** Look at hosts the state does not know yet (one SSH round trip each, in parallel); off for destroy. */
  probe?: { timeoutMs: number; parallelism?: number };
}

export const DEFAULT_PROBE = { timeoutMs: 5000, parallelism: 32 };

/** Throws StateIdentityError or HostClaimedError when the state must not be used; returns what could not be checked. */
export async function checkIdentity(input: IdentityInput): Promise<IdentityWarning[]> {
  checkStateCluster(input.desired, input.state, input.statePath);
  await checkProviderHosts(input);
  return input.probe ? probeUnknownHosts(input, input.probe) : [];
}

function checkStateCluster(desired: DesiredCluster, state: ClusterState | undefined, statePath: string): void {
  if (!state || state.cluster === desired.name) return;
  throw new StateIdentityError(
    `the state ${statePath} is the state of cluster ${state.cluster}, but the Clusterfile is for cluster ${desired.name}`,
    `if state.json was replaced by mistake, put its backup back with \`ci state restore --state ${statePath}\`; ` +
      `otherwise name the state of cluster ${desired.name} with --state`,
  );
}

/** LOCAL: the cluster's lab is the proof of the hosts this machine made for it, and of whose state they are. */
async function checkProviderHosts({ desired, state, statePath, provider }: IdentityInput): Promise<void> {
  const held = await provider.held?.();
  if (!held || held.hosts.length === 0) return;
  const hosts = `${held.hosts.length} host(s) (${held.hosts.slice(0, 5).join(', ')}${held.hosts.length > 5 ? ', ...' : ''})`;
  if (!state) {
    throw new StateIdentityError(
      `there is no state at ${statePath}, but ${held.where} holds ${hosts} of cluster ${desired.name}: the cluster exists`,
      held.hint ?? `put its state back at ${statePath} (or pass it with --state); a plan without it would initialise the running cluster again`,
    );
  }
  if (held.lineage && held.lineage !== state.lineage) {
    throw new StateIdentityError(
      `the state ${statePath} has lineage ${state.lineage}, but ${held.where} holds ${hosts} of the state with lineage ${held.lineage}`,
      `the state was replaced: put its backup back with \`ci state restore --state ${statePath}\`, or pass the right state with --state`,
    );
  }
}

/** Hosts that exist before ci makes them (BAREMETAL) and that the state has not worked on yet. */
function unknownHosts(desired: DesiredCluster, state: ClusterState | undefined): DesiredHost[] {
  if (desired.makesHosts) return [];
  return desired.hosts.filter((h) => !h.make && !stateKnowsHost(state?.hosts[h.key]));
}

async function probeUnknownHosts(input: IdentityInput, probe: { timeoutMs: number; parallelism?: number }): Promise<IdentityWarning[]> {
  const { desired, state, provider } = input;
  const hosts = unknownHosts(desired, state);
  const limit = pLimit(probe.parallelism ?? DEFAULT_PROBE.parallelism);
  const warnings: IdentityWarning[] = [];
  const refusals: HostClaimedError[] = [];
  await Promise.all(
    hosts.map((h) =>
      limit(async () => {
        let stdout: string;
        try {
          const target = await provider.target({ key: h.key, ip: h.ip ?? '', ssh: { user: h.ssh.user, port: h.ssh.port } });
          const session = await connectSsh(target, { timeoutMs: probe.timeoutMs, attempts: 1, keepaliveIntervalMs: probe.timeoutMs });
          try {
            stdout = (await session.execChecked(markScript(desired.name), { what: 'checking for files of this cluster', timeoutMs: probe.timeoutMs })).stdout;
          } finally {
            await session.close().catch(() => undefined);
          }
        } catch (err) {
          warnings.push({
            host: h.key,
            message: `could not check ${h.key} for files of another state of cluster ${desired.name} (${(err as Error).message.split('\n')[0]}); apply checks it again before changing anything there`,
          });
          return;
        }
        const mark = parseMark(stdout);
        const refusal = mark && judgeMark(h.key, desired.name, mark, state?.lineage, false);
        if (refusal) refusals.push(refusal);
        else if (!mark) warnings.push({ host: h.key, message: `${h.key}: the check for files of another state gave no answer; apply checks it again` });
      }),
    ),
  );
  if (refusals.length === 1) throw refusals[0];
  if (refusals.length > 1) {
    const order = new Map(hosts.map((h, i) => [h.key, i]));
    refusals.sort((a, b) => (order.get(a.host) ?? 0) - (order.get(b.host) ?? 0));
    throw new StateIdentityError(
      `${refusals.length} hosts hold files of cluster ${desired.name} that this state does not own:\n` + refusals.map((r) => `  ${r.message}`).join('\n'),
      refusals[0].hint!,
    );
  }
  return warnings.sort((a, b) => (a.host ?? '').localeCompare(b.host ?? ''));
}
