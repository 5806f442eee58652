/**
 * What the engine asks of a provider, and all it knows of one. A provider is a module (see registry.ts) that owns its
 * part of the Clusterfile (schema, rules, how host groups become hosts), says whether it makes hosts and which
 * cluster-level infrastructure it needs, and at run time makes and removes hosts and infrastructure and says how to
 * log in. What it records about what it made is `ProviderData`: plain JSON the engine keeps in plans and state and
 * hands back, without looking inside. The executor and the CLI use only this interface.
 */
import type { ZodType } from 'zod';
import type { Json, ProviderData, ProviderName } from '../engine/kernel/types.js';
import type { SshTarget } from './ssh/target.js';

/** A problem in the provider's part of a Clusterfile; the path is from the document root (`['spec','hosts',0,'count']`). */
export interface ProviderIssue {
  rule: string;
  path: (string | number)[];
  message: string;
  /** Point at the field's key rather than its value. */
  atKey?: boolean;
}

/** A host group as the provider reads it: its position, roles and the fields that belong to providers. */
export interface GroupInput {
  index: number;
  roles: string[];
  /** The group's provider fields that are present (the shared ones, roles, ssh, env, labels, taints, are not here). */
  fields: Record<string, unknown>;
}

/** A desired host, as the provider expands it from the groups. */
export interface ExpandedHost {
  /** Stable identity: the address of a host that exists, a name for one the provider makes. */
  key: string;
  name?: string;
  /** Known before apply: hosts that already exist. */
  ip?: string;
  /** Index of the group it comes from. */
  group: number;
  /** Hosts the provider makes: what to make, and which creation it goes in. */
  make?: MakeSpec;
}

export interface MakeSpec {
  /** Hosts with the same batch are made by one request (one RunInstances for a role); a local host is its own batch. */
  batch: string;
  /** What to make; compared by digest, so a change shows in the plan and makes a saved plan stale. */
  spec: ProviderData;
  /** What one host is, as the plan shows it: `create light host`, `create 3 × ecs.g7.large instance (node)`. */
  summary: string;
}

/** The provider's part of the Clusterfile. */
export interface ProviderClusterfile {
  /** Its block under `spec` (`local`, `cloud`), if it has one. */
  block?: { key: string; schema: ZodType };
  /** Host-group fields it reads (`ips`, `count`, `kind`...), each with its schema. */
  groupFields: Record<string, ZodType>;
  /** What to suggest when a group field of another provider is used with this one (`count` on BAREMETAL...). */
  foreignFieldHints?: Record<string, string>;
  /** Rules over its block and groups (schema-valid already); every problem, located. */
  check(input: { block: unknown; groups: GroupInput[] }): ProviderIssue[];
  /** The desired hosts, in group order. Only called on a Clusterfile whose check found nothing. */
  expand(input: { cluster: string; block: unknown; groups: GroupInput[] }): ExpandedHost[];
}

/** A piece of cluster-level infrastructure (a VPC, a security group): made once, before the hosts. */
export interface InfraResource {
  /** Stable key: `vpc`, `vswitch`, `security-group`, `key-pair`. */
  key: string;
  spec: ProviderData;
  /** How the plan shows it, e.g. `VPC 172.16.0.0/16`. */
  summary: string;
  /** Keys of the resources it needs. */
  deps: string[];
}

/** What the plan asks a provider to make in one batch. */
export interface MakeRequest {
  /** The plan's action id; also the key under which `checkpoint` data is kept. */
  id: string;
  hosts: { key: string; name?: string; spec: ProviderData }[];
  /** What an earlier, interrupted attempt wrote with `checkpoint` (a ClientToken), if anything. */
  pending?: ProviderData;
  /** Data of the cluster's infrastructure, by key. */
  infra: Record<string, ProviderData>;
}

/** What a provider reports about a host it made. */
export interface MadeHost {
  ip: string;
  hostname?: string;
  /** SSH host key fingerprint, when the provider knows it (then it is pinned, not trusted on first use). */
  hostKey?: string;
  /** Kept in the state as the host's `machine`, handed back to remove the host or log in. */
  machine: ProviderData;
}

export interface InfraRequest {
  id: string;
  op: 'create' | 'update' | 'delete';
  key: string;
  spec: ProviderData;
  /** The resource's data from the state (update and delete). */
  current?: ProviderData;
  pending?: ProviderData;
  /** Data of the other infrastructure, by key. */
  infra: Record<string, ProviderData>;
}

/** A host as the engine knows it, for logging in. */
export interface HostRef {
  key: string;
  ip: string;
  ssh: { user: string; port: number };
  machine?: ProviderData;
}

/** What a provider holds for the cluster, read without changing anything. */
export interface Held {
  /** Where it is recorded, for messages (`/root/.cloudimage/local/demo/lab.json`). */
  where: string;
  /** Keys of the hosts it holds, in the state or not (left by a failed or killed apply). */
  hosts: string[];
  /** Lineage of the state it recorded them for. */
  lineage?: string;
  /** What the user can do when these hosts exist but no state names them (e.g. rebuild the state from tags). */
  hint?: string;
}

/** What a provider finds of the cluster from its own records (tags), to rebuild a lost state. */
export interface Discovered {
  /** The lineage the resources were made for, when they say. */
  lineage?: string;
  hosts: { key: string; ip: string; hostname?: string; roles: string[]; machine: ProviderData }[];
  infra: Record<string, { data: ProviderData; needs: string[]; summary: string }>;
}

/** What a provider removed when the cluster had no host left. */
export interface Released {
  /** Hosts that were still there although the state did not list them. */
  hosts: string[];
  /** Everything else, each described for a person (a bridge, a subnet, a directory). */
  resources: string[];
}

/** Something a provider reports while it works; the CLI shows it. */
export interface ProviderEvent {
  level: 'info' | 'warning';
  message: string;
  host?: string;
}

/** What a provider is opened with, for one command. */
export interface ProviderContext {
  home: string;
  cluster: string;
  /** The state's lineage, once there is a state: a provider that keeps its own records claims them for it. */
  lineage?: string;
  /** The provider's Clusterfile block (validated), if any. */
  block?: unknown;
  /** The desired hosts with their login settings (secrets included: never store or print them). */
  hosts: { key: string; ip?: string; ssh: { user: string; port: number; password?: string; privateKeyPath?: string; passphrase?: string } }[];
  env: NodeJS.ProcessEnv;
  report?: (e: ProviderEvent) => void;
  signal?: AbortSignal;
}

/** The run-time side of a provider, for one command. Methods a provider does not need are absent. */
export interface ProviderRuntime {
  /** How to log in to a host over SSH, credentials included. */
  target(host: HostRef): Promise<SshTarget>;
  /**
   * Makes one batch of hosts and reports each by key. Must be safe to call again for the same request (an apply that
   * was killed repeats it): `checkpoint` stores data in the state, durably, before the provider acts on it, and a
   * repeated request carries it back as `pending`.
   */
  makeHosts?(request: MakeRequest, checkpoint: (data: ProviderData) => Promise<void>): Promise<Record<string, MadeHost>>;
  /** Removes a host it made (after `leave`, `clean` and the removal of its files). Removing a host that is gone succeeds. */
  removeHost?(host: { key: string; machine?: ProviderData }): Promise<void>;
  /** Makes, changes or removes a piece of infrastructure; returns its data (undefined for delete). Same rules as makeHosts. */
  applyInfra?(request: InfraRequest, checkpoint: (data: ProviderData) => Promise<void>): Promise<ProviderData | undefined>;
  /** What it holds for the cluster now, without changing anything; undefined when nothing. */
  held?(): Promise<Held | undefined>;
  /** Everything it finds of the cluster from its own records, for `ci state import --from-tags`. */
  discover?(): Promise<Discovered>;
  /** The cluster has no host left: removes whatever it still holds, and says what that was. */
  release?(): Promise<Released | undefined>;
  /** Closes connections it keeps (API clients), at the end of the command. */
  close?(): Promise<void>;
}

/** A provider, as the registry lists it. */
export interface ProviderModule {
  name: ProviderName;
  /** One line for `ci --help`-style listings and messages. */
  description: string;
  clusterfile: ProviderClusterfile;
  /** Whether it makes hosts (then it also removes them), or the hosts exist already. */
  makesHosts: boolean;
  /** Cluster-level infrastructure the cluster needs, from its block and what the image declares. Pure. */
  infrastructure?(input: { cluster: string; block: unknown; image: { labels: Record<string, string>; ports: string[] } }): InfraResource[];
  open(ctx: ProviderContext): ProviderRuntime;
}

/** A JSON value check, for providers reading back their own data. */
export function isJsonObject(v: Json | undefined): v is { [key: string]: Json } {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/**
 * The series each group's hosts are numbered in (`<cluster>-<series>-<n>`): the role, and for a second group of
 * the same role `<role>2`, and so on, so that scaling one group never renames the hosts of another.
 */
export function groupSeries(groups: readonly { roles: readonly string[] }[]): string[] {
  const perRole = new Map<string, number>();
  return groups.map((g) => {
    const role = g.roles[0];
    const nth = (perRole.get(role) ?? 0) + 1;
    perRole.set(role, nth);
    return nth === 1 ? role : `${role}${nth}`;
  });
}
