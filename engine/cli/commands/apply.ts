import type { Command } from 'commander';
import { join } from 'node:path';
import { ciHome } from '../../kernel/home.js';
import { applyCluster } from '../../executor/converge.js';
import { DEFAULT_PARALLELISM, DEFAULT_TRANSFERS } from '../../executor/executor.js';
import { loadPlanFile } from '../../../plans/planfile.js';
import { parseDuration } from '../../../state/local.js';
import { positiveInt, refreshMode } from '../options.js';
import { renderRefreshText } from '../../../plans/render/text.js';
import { UsageError } from '../../kernel/errors.js';
import { LineReporter, renderReleased, renderSummary } from '../progress.js';
import { confirmer, interruptSignal } from '../confirm.js';
import { ensureImageHook } from '../ensure-image.js';
import { useColor } from '../color.js';
import { EXIT } from '../exit-codes.js';
import { envFlags } from '../../clusterfile/env.js';
import type { Plan } from '../../../plans/actions.js';
import { runDestroy } from './destroy.js';

export interface ConvergeFlags {
  file?: string;
  state?: string;
  autoApprove?: boolean;
  parallelism: string;
  transfers?: string;
  lockTimeout: string;
  backend?: string;
}

export type ApplyFlags = ConvergeFlags & {
  maxUnavailable: string;
  relay: boolean;
  insecure?: boolean;
  caFile?: string;
  env?: string[];
  refresh?: string | boolean;
  refreshOnly?: boolean;
  target?: string[];
};

/** Commander's way to take a flag more than once. */
export function collect(v: string, list: string[] | undefined): string[] {
  return [...(list ?? []), v];
}

/**
 * The body of `ci apply`, shared with `ci run` and `ci join`/`ci delete` (which pass the Clusterfile's new text and
 * write it once the plan is approved): one way to converge, whatever the command.
 */
export async function runApply(
  o: ApplyFlags,
  extra: { savedPlan?: Plan; text?: string; approved?: () => Promise<void> } = {},
): Promise<void> {
  const { savedPlan } = extra;
  const color = useColor(process.stdout);
  let reporter: LineReporter | undefined;
  const interrupt = interruptSignal();
  // A saved plan was reviewed when it was made: running it is the approval, as in Terraform.
  const refresh = refreshMode(o.refresh);
  if (o.refreshOnly && (refresh === 'off' || savedPlan)) {
    throw new UsageError('--refresh-only records what a refresh finds, so it takes neither --refresh=false nor a saved plan', 'run `ci apply --refresh-only` alone');
  }
  const ask = o.refreshOnly
    ? confirmer({ autoApprove: o.autoApprove, color, verb: 'record this drift in the state', render: (p, r) => renderRefreshText(p, r) })
    : confirmer({ autoApprove: o.autoApprove || !!savedPlan, color, verb: 'apply these actions' });
  try {
    const { plan, result, released, recorded } = await applyCluster({
      clusterfile: o.file ?? 'Clusterfile',
      text: extra.text,
      envOverrides: envFlags(o.env),
      statePath: o.state,
      backendChoice: o.backend,
      parallelism: positiveInt('--parallelism', o.parallelism),
      transfers: o.transfers === undefined ? undefined : positiveInt('--transfers', o.transfers),
      maxUnavailable: positiveInt('--max-unavailable', o.maxUnavailable),
      lockTimeoutMs: parseDuration(o.lockTimeout),
      savedPlan,
      targets: o.target,
      confirm: async (p) => {
        const yes = await ask(p);
        if (yes) await extra.approved?.();
        return yes;
      },
      reporter: (cluster) => (reporter ??= new LineReporter(process.stdout, { color, logFile: logFileFor(cluster, 'apply') })),
      signal: interrupt.signal,
      relay: o.relay,
      ensureImage: ensureImageHook({ insecure: o.insecure, caFile: o.caFile }),
      refresh,
      refreshOnly: o.refreshOnly,
    });
    if (o.refreshOnly) {
      if (recorded) process.stdout.write(`Recorded the drift in the state of cluster ${plan.cluster}; no host was changed.\n`);
      else process.stdout.write(renderRefreshText(plan, { color }) + `Nothing to record in the state of cluster ${plan.cluster}.\n`);
      return;
    }
    if (!result) {
      await extra.approved?.();
      if (plan.targets) process.stdout.write(`No changes for ${plan.targets.join(', ')} of cluster ${plan.cluster}; other hosts were not looked at (--target).\n`);
      else process.stdout.write(`No changes. Cluster ${plan.cluster} matches the Clusterfile.\n`);
      return;
    }
    process.stdout.write('\n' + renderSummary(result, 'Apply'));
    if (plan.targets) process.stdout.write(`Only ${plan.targets.join(', ')} and what they need were applied (--target); run \`ci plan\` to see what else differs.\n`);
    if (released) process.stdout.write(`No host was created. ${renderReleased(released)}`);
    if (result.failed.length > 0 || result.interrupted) process.exitCode = result.interrupted ? EXIT.interrupted : EXIT.error;
  } finally {
    interrupt.dispose();
    await reporter?.close();
  }
}

export function logFileFor(cluster: string, verb: string): string {
  return join(ciHome(), 'clusters', cluster, 'logs', `${verb}-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
}

export function register(program: Command): void {
  program
    .command('apply')
    .description('converge the cluster to the Clusterfile (or run a saved plan)')
    .argument('[planfile]', 'a plan saved by `ci plan --out`')
    .option('-f, --file <Clusterfile>', 'the Clusterfile', 'Clusterfile')
    .option('--state <path>', 'state file (default: $CI_HOME/clusters/<name>/state.json)')
    .option('--auto-approve', 'do not ask for confirmation')
    .option('--parallelism <n>', 'steps under way at once', String(DEFAULT_PARALLELISM))
    .option('--transfers <n>', `hosts receiving layers from other hosts at once, apart from --parallelism (default: the larger of --parallelism and ${DEFAULT_TRANSFERS})`)
    .option('--max-unavailable <n>', 'nodes upgraded at once', '1')
    .option('--lock-timeout <duration>', 'wait this long for the state lock (e.g. 30s)', '0')
    .option('--backend <type>', "where the state is kept, over the Clusterfile's spec.backend: local or etcd")
    .option('--no-relay', 'send every layer from this machine instead of letting hosts pass layers on to each other')
    .option('--insecure', 'pull the image over plain HTTP when the store lacks it')
    .option('--ca-file <file>', 'extra CA certificate for pulling the image')
    .option('-e, --env <KEY=VALUE>', 'set a cluster env value for this run, over the Clusterfile\'s (repeatable)', collect)
    .option('--refresh [mode]', 'first ask every host what it holds: true (names, sizes), deep (also re-hash layers) or false', 'true')
    .option('--refresh-only', 'record in the state what differs on the hosts, changing no host')
    .option('--target <host>', 'only the steps of this host (key, IP or name) and what they need (repeatable)', collect)
    .action(async (planfile: string | undefined, o: ApplyFlags) => {
      // Checked before the plan file is read: the flags alone are wrong.
      if (planfile && o.target) throw new UsageError('--target cannot be given with a saved plan: the plan file records the targets it was made with');
      const savedPlan = planfile ? await loadPlanFile(planfile) : undefined;
      // A saved destroy plan is run as `ci destroy` runs it, as Terraform's apply of a destroy plan does.
      if (savedPlan?.operation === 'destroy') await runDestroy(o, savedPlan);
      else await runApply(o, { savedPlan });
    });
}
