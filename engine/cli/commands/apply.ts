import type { Command } from 'commander';
import { join } from 'node:path';
import { ciHome } from '../../kernel/home.js';
import { applyCluster } from '../../executor/converge.js';
import { loadPlanFile } from '../../../plans/planfile.js';
import { parseDuration } from '../../../state/local.js';
import { positiveInt } from '../options.js';
import { LineReporter, renderReleased, renderSummary } from '../progress.js';
import { confirmer, interruptSignal } from '../confirm.js';
import { ensureImageHook } from '../ensure-image.js';
import { useColor } from '../color.js';
import { EXIT } from '../exit-codes.js';

export interface ConvergeFlags {
  file?: string;
  state?: string;
  autoApprove?: boolean;
  parallelism: string;
  lockTimeout: string;
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
    .option('--parallelism <n>', 'hosts worked on at once', '10')
    .option('--max-unavailable <n>', 'nodes upgraded at once', '1')
    .option('--lock-timeout <duration>', 'wait this long for the state lock (e.g. 30s)', '0')
    .option('--no-relay', 'send every layer from this machine instead of letting hosts pass layers on to each other')
    .option('--insecure', 'pull the image over plain HTTP when the store lacks it')
    .option('--ca-file <file>', 'extra CA certificate for pulling the image')
    .action(async (planfile: string | undefined, o: ConvergeFlags & { maxUnavailable: string; relay: boolean; insecure?: boolean; caFile?: string }) => {
      const savedPlan = planfile ? await loadPlanFile(planfile) : undefined;
      const color = useColor(process.stdout);
      let reporter: LineReporter | undefined;
      const interrupt = interruptSignal();
      try {
        const { plan, result, released } = await applyCluster({
          clusterfile: o.file ?? 'Clusterfile',
          statePath: o.state,
          parallelism: positiveInt('--parallelism', o.parallelism),
          maxUnavailable: positiveInt('--max-unavailable', o.maxUnavailable),
          lockTimeoutMs: parseDuration(o.lockTimeout),
          savedPlan,
          // A saved plan was reviewed when it was made: running it is the approval, as in Terraform.
          confirm: confirmer({ autoApprove: o.autoApprove || !!savedPlan, color, verb: 'apply these actions' }),
          reporter: (cluster) => (reporter ??= new LineReporter(process.stdout, { color, logFile: logFileFor(cluster, 'apply') })),
          signal: interrupt.signal,
          relay: o.relay,
          ensureImage: ensureImageHook({ insecure: o.insecure, caFile: o.caFile }),
        });
        if (!result) {
          process.stdout.write(`No changes. Cluster ${plan.cluster} matches the Clusterfile.\n`);
          return;
        }
        process.stdout.write('\n' + renderSummary(result, 'Apply'));
        if (released) process.stdout.write(`No host was created. ${renderReleased(released)}`);
        if (result.failed.length > 0 || result.interrupted) process.exitCode = result.interrupted ? EXIT.interrupted : EXIT.error;
      } finally {
        interrupt.dispose();
        await reporter?.close();
      }
    });
}
