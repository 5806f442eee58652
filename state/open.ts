/**
 * Which backend holds a cluster's state: `--backend` over the Clusterfile's `spec.backend`, over the local file.
 * The one place a backend is made, so every command (plan, apply, destroy, the state verbs) finds the state where
 * the others put it.
 */
import { StateError, UsageError } from '../engine/kernel/errors.js';
import { ETCD_CLIENT_URL, type StateBackendSpec } from '../engine/kernel/types.js';
import type { StateBackend } from './backend.js';
import { EtcdStateBackend } from './etcd.js';
import { PASSPHRASE_ENV, PassphraseKeySource, stateKeys } from './keys.js';
import { LocalStateBackend } from './local.js';
import { statePathFor } from './paths.js';

export const BACKEND_TYPES = ['local', 'etcd'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

export interface OpenBackendOptions {
  cluster: string;
  home: string;
  /** `--state`: a local state file other than the default one. */
  statePath?: string;
  /** The Clusterfile's `spec.backend`. */
  spec?: StateBackendSpec;
  /** `--backend`: overrides the Clusterfile's type. */
  choice?: string;
  env?: NodeJS.ProcessEnv;
  /** Read-only commands that show hosts: no key (and no passphrase) is needed; the backend refuses to write. */
  withoutOutputs?: boolean;
}

/** The backend spec in force: the Clusterfile's, with `--backend`'s type over it. */
export function effectiveBackend(o: Pick<OpenBackendOptions, 'spec' | 'choice' | 'env' | 'statePath'>): StateBackendSpec {
  const env = o.env ?? process.env;
  if (o.choice !== undefined && !(BACKEND_TYPES as readonly string[]).includes(o.choice)) {
    throw new UsageError(`--backend ${o.choice} is not a state backend`, `use one of: ${BACKEND_TYPES.join(', ')}`);
  }
  const type = (o.choice ?? o.spec?.type ?? 'local') as BackendType;
  if (type === 'local') return { type: 'local' };
  const fromFile = o.spec?.type === 'etcd' ? o.spec : undefined;
  const endpoints = fromFile?.endpoints.length ? fromFile.endpoints : (env.CI_ETCD_ENDPOINTS ?? '').split(',').map((e) => e.trim()).filter(Boolean);
  if (endpoints.length === 0) {
    throw new StateError(
      'the etcd state backend needs the addresses of etcd',
      'list them in the Clusterfile as spec.backend.endpoints, or set CI_ETCD_ENDPOINTS=http://host:2379,...',
    );
  }
  for (const e of endpoints) {
    if (!ETCD_CLIENT_URL.test(e)) throw new StateError(`"${e}" is not an etcd client URL`, 'write http://host:port or https://host:port');
  }
  return { ...(fromFile ?? {}), type: 'etcd', endpoints };
}

export function openStateBackend(o: OpenBackendOptions): StateBackend {
  const env = o.env ?? process.env;
  const spec = effectiveBackend(o);
  if (spec.type === 'local') {
    return new LocalStateBackend(o.statePath ?? statePathFor(o.cluster, o.home), { keys: stateKeys(o.home), withoutOutputs: o.withoutOutputs });
  }
  if (o.statePath !== undefined) {
    throw new UsageError('--state names a local state file, but this cluster\'s state is kept in etcd', 'leave out --state, or pass --backend local to use a local file');
  }
  const passphrase = env[PASSPHRASE_ENV];
  if (!o.withoutOutputs && !passphrase) {
    throw new StateError(
      `the etcd state backend keeps hook outputs (join tokens and the like) sealed with a key derived from the team's passphrase, and ${PASSPHRASE_ENV} is not set`,
      `set ${PASSPHRASE_ENV} to the passphrase your team shares for this cluster's state (a new one, for a new cluster)`,
    );
  }
  return new EtcdStateBackend({
    cluster: o.cluster,
    spec,
    env,
    ...(passphrase ? { keys: new PassphraseKeySource(passphrase, o.cluster) } : {}),
    withoutOutputs: o.withoutOutputs,
  });
}

/** Runs `fn` with the backend, and closes it (a remote backend's connections) on every exit path. */
export async function usingBackend<T>(backend: StateBackend, fn: (b: StateBackend) => Promise<T>): Promise<T> {
  try {
    return await fn(backend);
  } finally {
    await backend.close();
  }
}
