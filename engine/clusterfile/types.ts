/** The normalised, validated Clusterfile: what the planner and executor consume. */
import type { Digest } from '../kernel/digest.js';
import type { ProviderName } from '../kernel/types.js';
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
  /** The group's `labels` and `taints`, as written. */
  labels?: Record<string, string>;
  taints?: string[];
  ssh: DesiredSsh;
  /** Hosts the provider makes: what to make, in which batch, and how the plan shows it. */
  make?: MakeSpec;
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
  /** `spec.hostAliases`, as written (only when given). */
  hostAliases?: { ip: string; hostnames: string[] }[];
  /** Masters in file order first, then the other hosts in file order. */
  hosts: DesiredHost[];
  plugins: ExtraDocument[];
  configs: ExtraDocument[];
  /** Documents of other kinds, in file order. */
  documents: KeptDocument[];
  /** Digest of `documents` as hooks get them (secrets masked); absent without documents. */
  documentsDigest?: Digest;
  /** sha256 of the normalised cluster without secrets, for stale-plan checks. */
  digest: Digest;
}

export function isMaster(h: { roles: string[] }): boolean {
  return h.roles.includes('master');
}
