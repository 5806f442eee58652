import type { Command } from 'commander';
import { destroyCluster } from '../../executor/converge.js';
import { DEFAULT_PARALLELISM } from '../../executor/executor.js';
import { parseDuration } from '../../../state/local.js';
import { LineReporter, renderReleased, renderSummary } from '../progress.js';
import { confirmer, interruptSignal } from '../confirm.js';
import { logFileFor, type ConvergeFlags } from './apply.js';
import { positiveInt } from '../options.js';
import { useColor } from '../color.js';
import { EXIT } from '../exit-codes.js';
import { envFlags } from '../../clusterfile/env.js';
import type { Plan } from '../../../plans/actions.js';

/** The body of `ci destroy`, shared with `ci delete --all`. True when the cluster is gone with nothing failed. */
export async function runDestroy(o: ConvergeFlags & { env?: string[] }, savedPlan?: Plan): Promise<boolean> {
  const color = useColor(process.stdout);
  let reporter: LineReporter | undefined;
  const interrupt = interruptSignal();
  try {
    const done = await destroyCluster({
      clusterfile: o.file ?? 'Clusterfile',
      envOverrides: envFlags(o.env),
      statePath: o.state,
      backendChoice: o.backend,
      parallelism: positiveInt('--parallelism', o.parallelism),
      lockTimeoutMs: parseDuration(o.lockTimeout),
      savedPlan,
      // A saved plan was reviewed when it was made: running it is the approval, as for apply.
      confirm: confirmer({ autoApprove: o.autoApprove || !!savedPlan, color, verb: 'destroy this cluster' }),
      reporter: (cluster) => (reporter ??= new LineReporter(process.stdout, { color, logFile: logFileFor(cluster, 'destroy') })),
      signal: interrupt.signal,
    });
    if (!done) {
      process.stdout.write('Nothing to destroy: no hosts in state, and nothing of the cluster is left on this machine.\n');
      return true;
    }
    if (done.result) process.stdout.write('\n' + renderSummary(done.result, 'Destroy'));
    else process.stdout.write('\nDestroy complete! No hosts in state; removed what an earlier apply left.\n');
    if (done.released) process.stdout.write(renderReleased(done.released));
    if (done.result && (done.result.failed.length > 0 || done.result.interrupted)) {
      process.exitCode = done.result.interrupted ? EXIT.interrupted : EXIT.error;
      return false;
    }
    return true;
  } finally {
    interrupt.dispose();
    await reporter?.close();
  }
}

export function register(program: Command): void {
  program
    .command('destroy')
    .description('run `clean` on every host, remove cloudimage files and local hosts, and leave an empty state')
    .option('-f, --file <Clusterfile>', 'the Clusterfile', 'Clusterfile')
    .option('--state <path>', 'state file (default: $CI_HOME/clusters/<name>/state.json)')
    .option('--auto-approve', 'do not ask for confirmation')
    .option('--parallelism <n>', 'steps under way at once', String(DEFAULT_PARALLELISM))
    .option('--lock-timeout <duration>', 'wait this long for the state lock (e.g. 30s)', '0')
    .option('--backend <type>', "where the state is kept, over the Clusterfile's spec.backend: local or etcd")
    .action(async (o: ConvergeFlags) => {
      await runDestroy(o);
    });
}
