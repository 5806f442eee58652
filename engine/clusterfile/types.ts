/** The normalised, validated Clusterfile: what the planner and executor consume. */
import type { Digest } from '../kernel/digest.js';
import type { LocalKind, Provider } from '../../state/model.js';

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
  /** Cluster env overlaid with the group's env. */
  env: Record<string, string>;
  ssh: DesiredSsh;
  local?: { kind: LocalKind };
}

/** Other kinds in the same file, kept as written (sealer shape). */
export interface ExtraDocument {
  apiVersion: string;
  kind: string;
  name: string;
  spec: Record<string, unknown>;
}

export interface DesiredCluster {
  name: string;
  apiVersion: string;
  image: string;
  provider: Provider;
  env: Record<string, string>;
  /** Masters in file order first, then the other hosts in file order. */
  hosts: DesiredHost[];
  plugins: ExtraDocument[];
  configs: ExtraDocument[];
  /** sha256 of the normalised cluster without secrets, for stale-plan checks. */
  digest: Digest;
}

export function isMaster(h: { roles: string[] }): boolean {
  return h.roles.includes('master');
}
