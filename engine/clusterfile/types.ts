/** The normalised, validated Clusterfile: what the planner and executor consume. */
import type { Digest } from '../kernel/digest.js';
import type { ProviderName, StateBackendSpec } from '../kernel/types.js';
import type { MakeSpec } from '../../providers/contract.js';

export interface DesiredSsh {
  user: string;
  port: number;
  /** Secrets: registered with `registerSecret`, excluded from the cluster digest. */
  password?: string;
  privateKeyPath?: string;
  passphrase?: string;
}

export interface DesiredHost {
  /** IP for BAREMETAL hosts, the stable local name (`<cluster>-<role>-<n>`) for LOCAL ones. */
  key: string;
  ip?: string;
  name?: string;
  roles: string[];
  /** Cluster env overlaid with the group's env; a key given several times is a list, here joined with spaces. */
  env: Record<string, string>;
  /** The keys of `env` that are lists, item by item (only when there are some). */
  envLists?: Record<string, string[]>;
  ssh: DesiredSsh;
  /** Hosts the provider makes: what to make, in which batch, and how the plan shows it. */
  make?: MakeSpec;
  /** Kubernetes node labels and taints of the host's group (`hosts[].labels`, `hosts[].taints`). */
  labels?: Record<string, string>;
  taints?: string[];
}

/** Other kinds in the same file, kept as written (sealer shape). */
export interface ExtraDocument {
  apiVersion: string;
  kind: string;
  name: string;
  spec: Record<string, unknown>;
  /** Where the document is (its `kind` line), for errors found when it acts; not part of the cluster digest. */
  at?: { file: string; line: number };
}

/** A document of another kind (Application, kubeadm's ClusterConfiguration...), kept whole as written. */
export interface KeptDocument {
  apiVersion: string;
  kind: string;
  name?: string;
  /** The whole document; secrets are masked only where it leaves the process (documents.ts). */
  body: Record<string, unknown>;
}

/** One entry of a host selector (see selector.ts); `name` is a role name or a host's name. */
export type SelectorToken =
  | { kind: 'master0' }
  | { kind: 'ip'; ip: string }
  | { kind: 'range'; from: string; to: string }
  | { kind: 'label'; key: string; value: string }
  | { kind: 'name'; name: string };

/** Where in a plan a plugin runs (see plugins.ts for sealer's names of each). */
export type PluginPoint =
  | 'originally'
  | 'pre-install'
  | 'pre-init'
  | 'post-init'
  | 'pre-join'
  | 'post-join'
  | 'pre-guest'
  | 'post-install'
  | 'upgrade'
  | 'pre-clean'
  | 'post-clean';

/** Node labels and taints a LABEL or TAINT plugin sets on the hosts one line of its data selects. */
export interface NodeMetaLine {
  select: SelectorToken;
  labels: Record<string, string>;
  /** Keys to remove (`key-`). */
  unlabel: string[];
  /** kubectl taint arguments: `key=value:Effect`, `key:Effect`, or with a trailing `-` to remove. */
  taints: string[];
}

/** A Plugin document that acts: a SHELL script, or node labels/taints, at one or more points of the plan. */
export interface DesiredPlugin {
  name: string;
  type: 'SHELL' | 'LABEL' | 'TAINT' | 'HOSTNAME';
  points: PluginPoint[];
  /** Absent: the point's default hosts (all, or master0 for the cluster-scoped points). */
  on?: SelectorToken[];
  /** SHELL: the script, run with sh. */
  data: string;
  /** LABEL and TAINT: what to set where. */
  nodes?: NodeMetaLine[];
  /** HOSTNAME: the name each selected host gets. */
  hostnames?: { select: SelectorToken; hostname: string }[];
  /** Digest of what it does (type and data): a plugin whose identity changed runs again. */
  identity: Digest;
}

export interface HostAlias {
  ip: string;
  hostnames: string[];
}

export interface DesiredCluster {
  name: string;
  apiVersion: string;
  image: string;
  provider: ProviderName;
  /** Whether the provider makes the hosts (and removes them), or they exist already. */
  makesHosts: boolean;
  /** The provider's block of the Clusterfile (`spec.local`, `spec.cloud`), as validated. */
  providerBlock?: unknown;
  env: Record<string, string>;
  /** The keys of `env` that are lists (only when there are some). */
  envLists?: Record<string, string[]>;
  /** `spec.cmd_args`: extra env for the Kubefile's CMDs and LAUNCH commands (only when given). */
  cmdArgs?: Record<string, string>;
  /** Masters in file order first, then the other hosts in file order. */
  hosts: DesiredHost[];
  plugins: ExtraDocument[];
  /** The Plugin documents as they act, in name order. */
  pluginSteps?: DesiredPlugin[];
  /** `spec.hostAliases`: written to each host's /etc/hosts in a block of its own. */
  hostAliases?: HostAlias[];
  configs: ExtraDocument[];
  /** Documents of other kinds, in file order. */
  documents: KeptDocument[];
  /** Digest of `documents` as hooks get them (secrets masked); absent without documents. */
  documentsDigest?: Digest;
  /** `spec.backend`: where the state is kept (absent: the local file). Not part of `digest`: moving a state changes no plan. */
  backend?: StateBackendSpec;
  /** sha256 of the normalised cluster without secrets, for stale-plan checks. */
  digest: Digest;
}

export function isMaster(h: { roles: string[] }): boolean {
  return h.roles.includes('master');
}
