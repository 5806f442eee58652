/** Flags `ci run`, `ci join` and `ci delete` share with `ci apply`, and how they become apply's. */
import type { Command } from 'commander';
import { collect, type ApplyFlags } from './apply.js';
import { DEFAULT_PARALLELISM, DEFAULT_TRANSFERS } from '../../executor/executor.js';

export interface ShortcutFlags {
  name: string;
  masters?: string;
  nodes?: string;
  env?: string[];
  autoApprove?: boolean;
  parallelism: string;
  transfers?: string;
  lockTimeout: string;
  relay: boolean;
  backend?: string;
}

export function convergeOptions(c: Command): Command {
  return c
    .option('-e, --env <KEY=VALUE>', 'set a cluster env value (repeatable)', collect)
    .option('--auto-approve', 'do not ask for confirmation')
    .option('--parallelism <n>', 'steps under way at once', String(DEFAULT_PARALLELISM))
    .option('--transfers <n>', `hosts receiving layers from other hosts at once, apart from --parallelism (default: the larger of --parallelism and ${DEFAULT_TRANSFERS})`)
    .option('--lock-timeout <duration>', 'wait this long for the state lock (e.g. 30s)', '0')
    .option('--backend <type>', "where the state is kept, over the Clusterfile's spec.backend: local or etcd")
    .option('--no-relay', 'send every layer from this machine instead of letting hosts pass layers on to each other');
}

export function applyFlags(o: ShortcutFlags, file: string, extra: Partial<ApplyFlags> = {}): ApplyFlags {
  return {
    file,
    autoApprove: o.autoApprove,
    parallelism: o.parallelism,
    transfers: o.transfers,
    lockTimeout: o.lockTimeout,
    maxUnavailable: '1',
    relay: o.relay,
    env: o.env,
    backend: o.backend,
    ...extra,
  };
}
