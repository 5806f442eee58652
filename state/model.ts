/**
 * The state file: what cloudimage believes is on each host. The planner diffs the Clusterfile against it; the
 * executor updates it after every completed step so a failed apply resumes with exactly the missing steps.
 * It holds no passwords or keys. Hook outputs are kept here in clear in memory; at rest they are sealed
 * (state/codec.ts), and wherever text is printed they are masked.
 */
import type { Digest } from '../engine/kernel/digest.js';
import type { HookName, ProviderData, ProviderName } from '../engine/kernel/types.js';

/** Version 2: hook outputs sealed at rest. Version 1 files (outputs in clear) are still read. */
export const STATE_VERSION = 2 as const;

export type { HookName, ProviderName } from '../engine/kernel/types.js';
export { HOOK_NAMES } from '../engine/kernel/types.js';
export type HostStatus = 'creating' | 'active' | 'leaving';

/** The image last fully applied to the cluster. */
export interface StateImage {
  ref: string;
  digest: Digest;
  layers: Digest[];
  cmds: { cmd: string; identity: Digest }[];
  /** The apps its LAUNCH runs, with their identities (absent: none). */
  launch?: { app: string; identity: Digest }[];
  /** The cluster's config layer (Configs and rendered templates) applied with it (absent: none). */
  config?: Digest;
}

export interface HostState {
  /** IP for BAREMETAL hosts, the stable local name for LOCAL ones. */
  key: string;
  /** Known once the host exists (LOCAL hosts get theirs when created). */
  ip: string;
  name?: string;
  hostname?: string;
  roles: string[];
  /** Connection facts only: never a password or key. */
  ssh: { user: string; port: number };
  /** Pinned SSH host key fingerprint (SHA256:...), set on first contact. */
  hostKey?: string;
  /** Layer digests held in the host's layer store. */
  layers: Digest[];
  /** Image whose rootfs is currently unpacked on the host. */
  rootfsImage?: Digest;
  /** The config layer unpacked last into that rootfs (absent: none). */
  rootfsConfig?: Digest;
  /**
   * The image this member runs: the one its last join or upgrade ran with. Any other image in the Clusterfile,
   * earlier ones included, rolls `upgrade` over it.
   */
  image?: { ref: string; digest: Digest };
  /** Hooks that completed on this host, with the image digest they ran for. */
  hooks: Partial<Record<HookName, Digest>>;
  /**
   * Digest of the cluster membership this host was last configured for (set from a hook action's `members`
   * after init-master0, join-* or reconfigure). A differing digest means it needs `reconfigure`.
   */
  members?: Digest;
  /** Digest of the Clusterfile documents this host's hooks last got, recorded with `members`; differing means `reconfigure`. */
  documents?: Digest;
  status: HostStatus;
  /**
   * What the Clusterfile's plugins, node labels/taints and host aliases last applied here, by record key
   * (`plugin:<name>@<point>`, `node-meta`, `plugin-node:<name>`, `host-aliases`) with the identity applied.
   */
  applied?: Record<string, Digest>;
  /**
   * For hosts a provider makes: what it made, as the provider recorded it (a local host's kind, an instance's id).
   * A host with this is removed by its provider when it leaves the cluster; one without (bare metal) stays.
   */
  machine?: ProviderData;
}

/** Infrastructure a provider made for the cluster (a VPC, a security group): its settings' digest and its data. */
export interface InfraState {
  /** Digest of the settings it was made or last updated with. */
  spec: Digest;
  data: ProviderData;
  /** Keys of the resources it needs: it is removed before them. */
  needs?: string[];
  /** How plans show it. */
  summary?: string;
}

export interface ClusterState {
  version: typeof STATE_VERSION;
  /** Made once when the state is first created; a state with another lineage is another cluster. */
  lineage: string;
  /** Incremented on every write. */
  serial: number;
  cluster: string;
  provider: ProviderName;
  image?: StateImage;
  /** Key of the first master (where init-master0 ran and CMDs run). */
  master0?: string;
  /** Identities of CMDs that completed. */
  cmdsRun: Digest[];
  /** Each launched app's identity when its launch last completed, by app name (absent: none yet). */
  appsLaunched?: Record<string, Digest>;
  /** Hook outputs: secrets (join tokens...), sealed in the file and masked in everything printed. */
  outputs: Record<string, string>;
  hosts: Record<string, HostState>;
  /** Cluster-level infrastructure by resource key; absent for providers that make none. */
  infra?: Record<string, InfraState>;
  /**
   * What a provider wrote before it acted, by action id (a ClientToken before a create), so an apply killed in the
   * middle resumes with the same request and never makes anything twice. Removed when the action succeeds.
   */
  pending?: Record<string, ProviderData>;
}

/** A fresh, empty state for a cluster not yet applied. `lineage` is passed in so this stays pure. */
export function emptyState(cluster: string, provider: ProviderName, lineage: string): ClusterState {
  return { version: STATE_VERSION, lineage, serial: 0, cluster, provider, cmdsRun: [], outputs: {}, hosts: {} };
}
