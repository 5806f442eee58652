/**
 * What a plan is made of: plain, serialisable data. The planner produces it without I/O; `ci plan --out` saves it;
 * the executor runs it, honouring `deps` (ids that must finish first). Ids are stable across runs so a saved plan,
 * its rendering and the executor's progress lines all name the same step the same way.
 */
import type { Digest } from '../engine/kernel/digest.js';
import type { HookName, ProviderData, ProviderName } from '../engine/kernel/types.js';
import type { HostAlias, PluginPoint, SelectorToken } from '../engine/clusterfile/types.js';

export const PLAN_VERSION = 1 as const;

/** Image metadata the planner needs; the executor builds it from `ImageStore.resolve`. */
export interface ImageInfo {
  ref: string;
  digest: Digest;
  layers: { digest: Digest; size: number; createdBy: string }[];
  cmds: { cmd: string; identity: Digest }[];
  /** The apps the image's LAUNCH runs, in order (absent: none). */
  launch?: LaunchInfo[];
}

/** A launched app as the planner and executor need it: where it is, what runs, what it needs, its identity. */
export interface LaunchInfo {
  app: string;
  /** The app's folder, relative to the rootfs. */
  dir: string;
  /** What its commands come from: `appcmds`, or the file type (`shell`, `kubectl`, `helm`). */
  by: string;
  cmds: string[];
  /** Programs master0 must have (kubectl, helm); checked before any command runs. */
  needs: string[];
  identity: Digest;
}

interface ActionBase {
  /** Stable id, e.g. `hook:join-master:10.0.0.3`. */
  id: string;
  /** Host key (IP, or local name for LOCAL hosts); absent for cluster-level actions. */
  host?: string;
  /** Why this step is needed, for humans: `new host`, `image changed v1 -> v2`, `resume: not completed`. */
  reason: string;
  /** Ids of actions that must finish successfully first. */
  deps: string[];
}

/**
 * Make hosts, for providers that make them: one action per batch the provider asks for (a local host alone; the
 * instances of one role, in one request). On success each host's address, host key and `machine` data are recorded.
 */
export interface CreateHostAction extends ActionBase {
  kind: 'create-host';
  /** Set when the batch is this one host: the plan shows the step under it. */
  host?: string;
  hosts: { key: string; name?: string; spec: ProviderData }[];
  /** What one host is, in the provider's words (`light host`, `ecs.g7.large instance (node)`). */
  summary: string;
}

/** Make, change or remove a piece of cluster-level infrastructure (a VPC, a security group) through the provider. */
export interface InfraAction extends ActionBase {
  kind: 'infra';
  op: 'create' | 'update' | 'delete';
  /** The resource's key (`vpc`, `security-group`). */
  resource: string;
  spec: ProviderData;
  /** Digest of `spec`, recorded with the resource so a later change of settings shows as an update. */
  specDigest: Digest;
  /** Keys of the resources it needs (recorded too, so destroy removes them in the reverse order). */
  needs: string[];
  summary: string;
}

/** Stream the layers the host lacks into its layer store. */
export interface SendLayersAction extends ActionBase {
  kind: 'send-layers';
  host: string;
  layers: Digest[];
  bytes: number;
  /** Layers the refresh found changed on the host (size or content): sent again although a file of that name is there. */
  resend?: Digest[];
}

/** The rootfs a host has now, as the state knows it: what an incremental unpack may start from. */
export interface RootfsBase {
  image: Digest;
  /** Its layers, then its config layer when it had one. */
  layers: Digest[];
  config?: Digest;
}

/**
 * Put the host's rootfs for `image` in place from its layer store; host-local, no network cost. When a
 * prepare-rootfs staged it, this only swaps it in; otherwise it is staged here first (see prepare-rootfs).
 */
export interface UnpackAction extends ActionBase {
  kind: 'unpack';
  host: string;
  image: Digest;
  /** The image's layers, then the cluster's config layer when it has one. */
  layers: Digest[];
  /** The config layer unpacked last (absent: none). */
  config?: Digest;
  /** The host's current rootfs (absent: none known): only the layers above those it shares are unpacked, when the host proves it is that rootfs unchanged. */
  base?: RootfsBase;
}

/**
 * Stage the rootfs for `image` beside the host's current one, before the upgrade roll starts (every host at once),
 * so the roll's unpack only swaps it in. Incremental from `base` when the host proves its rootfs is that one,
 * unchanged; a full unpack otherwise. Changes nothing a running member uses, and nothing in the state.
 */
export interface PrepareRootfsAction extends ActionBase {
  kind: 'prepare-rootfs';
  host: string;
  image: Digest;
  layers: Digest[];
  config?: Digest;
  base?: RootfsBase;
}

/** Run a lifecycle hook from the image's rootfs `hooks/` (a missing hook file is skipped by the executor). */
export interface HookAction extends ActionBase {
  kind: 'hook';
  host: string;
  hook: HookName;
  /** The image whose rootfs provides the hook (the old one for leave/clean). On success: hooks[hook] := image. */
  image: Digest;
  /** init-master0, join-* and reconfigure: on success the executor stores it as the host's `members`. */
  members?: Digest;
  /** With `members`: the documents handed to hooks (none: undefined), stored likewise as the host's `documents`. */
  documents?: Digest;
}

/** A Kubefile CMD, run on master0 after the joins, in image order. */
export interface RunCmdAction extends ActionBase {
  kind: 'run-cmd';
  host: string;
  cmd: string;
  identity: Digest;
}

/** An app of the image's LAUNCH, run on master0 in its folder after the joins and CMDs, in LAUNCH order. */
export interface LaunchAppAction extends ActionBase, Omit<LaunchInfo, 'identity'> {
  kind: 'launch-app';
  host: string;
  identity: Digest;
}

/**
 * A SHELL plugin at its point: the script runs with sh in the cluster's directory, the hook environment on stdin.
 * On success the host records `applied[record] := identity`, so an unchanged plugin does not run again.
 */
export interface PluginAction extends ActionBase {
  kind: 'plugin';
  host: string;
  plugin: string;
  point: PluginPoint;
  data: string;
  identity: Digest;
  /** The key it is recorded under in the host's `applied`. */
  record: string;
  /** HOSTNAME plugins: the name the host gets (recorded as its hostname). */
  hostname?: string;
  /**
   * Set when the host's address was not known when planned (a host still to be made) and the plugin selects by
   * address: it runs only if the address is one of these; otherwise it is skipped and nothing is recorded.
   */
  ifAddress?: SelectorToken[];
}

/** Kubernetes labels and taints set on one node with kubectl on master0 (a LABEL/TAINT plugin or hosts[].labels/taints). */
export interface NodeMetaAction extends ActionBase {
  kind: 'node-meta';
  /** master0, where kubectl runs. */
  host: string;
  /** The host whose node is labelled. */
  target: string;
  /** What asks for it: `plugin <name>` or `hosts[].labels/taints`. */
  source: string;
  labels: Record<string, string>;
  unlabel: string[];
  taints: string[];
  identity: Digest;
  /** The key it is recorded under in the target's `applied`. */
  record: string;
  ifAddress?: SelectorToken[];
}

/** Write (or, with no aliases, remove) the cluster's marked block of the host's /etc/hosts. */
export interface HostAliasesAction extends ActionBase {
  kind: 'host-aliases';
  host: string;
  aliases: HostAlias[];
  identity: Digest;
}

/** Delete the host's cloudimage files after leave/clean. */
export interface RemoveFilesAction extends ActionBase {
  kind: 'remove-files';
  host: string;
}

/** Remove a host its provider made. After it (or after remove-files for a host that stays) the host is dropped from state. */
export interface DeleteHostAction extends ActionBase {
  kind: 'delete-host';
  host: string;
}

/**
 * Waits for its deps and does nothing else. Where many steps each wait for the same many others (every host's
 * join for every host's pre-install plugin step, every host's post-install step for every member), they wait for
 * one gate instead, and the plan grows with the hosts, not with their square. What runs after what is unchanged.
 * Not a change to anything: the text plan leaves it out and the summary does not count it.
 */
export interface GateAction extends ActionBase {
  kind: 'gate';
}

/** Final bookkeeping: state.image := the desired image. Depends on everything else. */
export interface SetImageAction extends ActionBase {
  kind: 'set-image';
  image: { ref: string; digest: Digest; layers: Digest[]; cmds: { cmd: string; identity: Digest }[]; launch?: { app: string; identity: Digest }[]; config?: Digest };
  /** The new master0 when it changes (first master removed), else the current one. */
  master0?: string;
}

export type Action =
  | InfraAction
  | CreateHostAction
  | SendLayersAction
  | UnpackAction
  | PrepareRootfsAction
  | HookAction
  | RunCmdAction
  | LaunchAppAction
  | PluginAction
  | NodeMetaAction
  | HostAliasesAction
  | RemoveFilesAction
  | DeleteHostAction
  | GateAction
  | SetImageAction;

export type ActionKind = Action['kind'];

/** How a host is affected, worst first: destroy > add > change > none. */
export type Impact = 'add' | 'change' | 'destroy' | 'none';

export interface PlannedHost {
  key: string;
  ip?: string;
  name?: string;
  roles: string[];
  impact: Impact;
}

/** The cluster's config layer: the files its Configs and the image's templates write, computed before planning. */
export interface ConfigLayerPlan {
  digest: Digest;
  size: number;
  /** Every file the layer holds. */
  files: string[];
  /** Files hosts will see change, with masked unified diffs from what they have now. */
  changes: { path: string; by: string[]; diff: string }[];
}

/** How far a refresh looks: names, sizes and markers (`shallow`), or also every layer file's sha256 (`deep`). */
export type RefreshDepth = 'shallow' | 'deep';

/**
 * One difference the refresh found between the state and a host. Layer and rootfs items became the refreshed state
 * the plan was made from (so their steps carry `reason`); hook records are reported only, never acted on.
 */
export interface DriftItem {
  host: string;
  kind: 'layer-missing' | 'layer-changed' | 'rootfs-missing' | 'rootfs-changed' | 'hooks-missing';
  /** `drift: layer missing on host`, `drift: rootfs changed`: what the steps it causes say. */
  reason: string;
  /** What exactly was seen, for humans. */
  detail?: string;
  layers?: Digest[];
  hooks?: HookName[];
}

/** What the refresh before a plan did: its depth, what differed, and the hosts it could not ask (kept as they were). */
export interface PlanRefresh {
  depth: RefreshDepth;
  drift: DriftItem[];
  unreachable: { host: string; why: string }[];
}

export interface Plan {
  version: typeof PLAN_VERSION;
  operation: 'apply' | 'destroy';
  cluster: string;
  provider: ProviderName;
  /** Lineage and serial of the state this plan was made against (null lineage: no state yet). */
  lineage: string | null;
  serial: number;
  /** Digest of the normalised Clusterfile (secrets excluded); null for destroy plans made from state alone. */
  clusterfileDigest: string | null;
  /** The desired image (null for destroy). */
  image: { ref: string; digest: Digest } | null;
  /** master0 after this plan completes. */
  master0?: string;
  /** The Clusterfile's documents of other kinds handed to hooks (CI_CLUSTER_DOCUMENTS): `Kind/name` each, and their digest. */
  documents?: { names: string[]; digest: Digest };
  actions: Action[];
  /** The config layer hosts unpack last (absent: the cluster has none). */
  config?: ConfigLayerPlan;
  /** Hosts touched or kept, in display order (masters first), with their worst impact. */
  hosts: PlannedHost[];
  /**
   * `--target`: the host keys this plan was cut down to (plans/target.ts). Present means partial: other hosts and the
   * cluster-level steps may still differ from the Clusterfile.
   */
  targets?: string[];
  summary: { add: number; change: number; destroy: number };
  /** Set when the hosts were asked what they hold before planning (`--refresh`, on by default). */
  refresh?: PlanRefresh;
}

/** Drift items that changed what the state says (layers, rootfs); hook records are only reported. */
export function actedDrift(items: DriftItem[]): DriftItem[] {
  return items.filter((d) => d.kind !== 'hooks-missing');
}

export function actionsForHost(plan: Plan, key: string): Action[] {
  return plan.actions.filter((a) => a.host === key);
}

export function isEmptyPlan(plan: Plan): boolean {
  return plan.actions.length === 0;
}
