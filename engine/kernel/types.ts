/** Types every layer shares: lifecycle hook names, provider names, and the opaque data providers keep. */

/** A provider as named in a Clusterfile's `spec.provider` (BAREMETAL, LOCAL, ALI_CLOUD...). */
export type ProviderName = string;

export type HookName =
  | 'init-host'
  | 'init-master0'
  | 'join-master'
  | 'join-node'
  | 'reconfigure'
  | 'upgrade'
  | 'leave'
  | 'clean';

export const HOOK_NAMES: readonly HookName[] = [
  'init-host',
  'init-master0',
  'join-master',
  'join-node',
  'reconfigure',
  'upgrade',
  'leave',
  'clean',
];

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * What a provider keeps in plans and state about what it makes (a host's kind, an instance id, a ClientToken): plain
 * JSON that only the provider reads. The engine stores and passes it on, and never looks inside.
 */
export type ProviderData = { [key: string]: Json };

/** An etcd client URL as the state backend takes it: `http(s)://host:port`. */
export const ETCD_CLIENT_URL = /^https?:\/\/[^/\s:]+:\d{1,5}\/?$/;

/**
 * Where a cluster's state is kept, as the Clusterfile's `spec.backend` (or `--backend`) says: the local file
 * (default), or an etcd cluster the team shares. TLS file paths are absolute by the time they get here.
 */
export type StateBackendSpec =
  | { type: 'local' }
  | {
      type: 'etcd';
      /** `http(s)://host:port`; empty means "from CI_ETCD_ENDPOINTS". */
      endpoints: string[];
      /** Key prefix under which the cluster's keys live (default `/cloudimage`). */
      prefix?: string;
      tls?: { ca?: string; cert?: string; key?: string };
      /** The lock lease's time to live, in seconds (default 30). */
      lockTtlSeconds?: number;
      /** How many earlier versions of the state are kept (default 20). */
      history?: number;
    };
