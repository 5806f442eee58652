/** `ci plan`: show (and optionally save) what apply would do. */
import type { Command } from 'commander';
import { positiveInt, refreshMode } from '../options.js';
import { planCluster } from '../../executor/converge.js';
import { redact } from '../../kernel/redact.js';
import { savePlanFile } from '../../../plans/planfile.js';
import { renderPlanJson, renderPlanText, renderRefreshText } from '../../../plans/render/index.js';
import { actedDrift } from '../../../plans/actions.js';
import { UsageError } from '../../kernel/errors.js';
import { useColor } from '../color.js';
import { EXIT } from '../exit-codes.js';
import { envFlags } from '../../clusterfile/env.js';
import { collect } from './apply.js';

interface PlanFlags {
  file: string;
  state?: string;
  backend?: string;
  json?: boolean;
  out?: string;
  detailedExitcode?: boolean;
  maxUnavailable: string;
  env?: string[];
  refresh?: string | boolean;
  refreshOnly?: boolean;
}

export function register(program: Command): void {
  program
    .command('plan')
    .description('show what `ci apply` would change on the cluster, without changing anything')
    .option('-f, --file <Clusterfile>', 'the Clusterfile', 'Clusterfile')
    .option('--state <path>', 'state file (default: $CI_HOME/clusters/<name>/state.json)')
    .option('--backend <type>', "where the state is kept, over the Clusterfile's spec.backend: local or etcd")
    .option('--json', 'print the plan as JSON')
    .option('--out <file>', 'save the plan for `ci apply <file>`')
    .option('--detailed-exitcode', 'exit 0 when there are no changes, 2 when there are, 1 on errors (64 on a usage error)')
    .option('--max-unavailable <n>', 'nodes upgraded at the same time', '1')
    .option('-e, --env <KEY=VALUE>', 'set a cluster env value, over the Clusterfile\'s (repeatable; give apply the same)', collect)
    .option('--refresh [mode]', 'first ask every host what it holds: true (names, sizes), deep (also re-hash layers) or false', 'true')
    .option('--refresh-only', 'show only what differs between the hosts and the state')
    .action(async (flags: PlanFlags) => {
      const refresh = refreshMode(flags.refresh);
      if (flags.refreshOnly && refresh === 'off') throw new UsageError('--refresh-only needs a refresh', 'drop --refresh=false');
      if (flags.refreshOnly && flags.out) throw new UsageError('--refresh-only shows drift and saves no plan', 'drop --out, or --refresh-only to save the plan');
      const prepared = await planCluster({
        clusterfile: flags.file,
        envOverrides: envFlags(flags.env),
        statePath: flags.state,
        backendChoice: flags.backend,
        maxUnavailable: positiveInt('--max-unavailable', flags.maxUnavailable),
        refresh,
      });
      const { plan } = prepared;
      for (const w of prepared.warnings) process.stderr.write(`warning: ${redact(w.message)}\n`);
      if (flags.refreshOnly) {
        const r = plan.refresh ?? { depth: refresh, drift: [], unreachable: [] };
        process.stdout.write(redact(flags.json ? JSON.stringify({ cluster: plan.cluster, refresh: r }, null, 2) + '\n' : renderRefreshText(plan, { color: useColor(process.stdout) })));
        if (flags.detailedExitcode && actedDrift(r.drift).length > 0) process.exitCode = EXIT.changes;
        return;
      }
      process.stdout.write(flags.json ? renderPlanJson(plan) : renderPlanText(plan, { color: useColor(process.stdout) }));
      if (flags.out) {
        await savePlanFile(flags.out, plan);
        const same = flags.env ? ' with the same --env flags' : '';
        if (!flags.json) process.stdout.write(`\nSaved the plan to ${flags.out}; run \`ci apply -f ${flags.file} ${flags.out}\`${same} to perform exactly these actions.\n`);
      }
      if (flags.detailedExitcode && plan.actions.length > 0) process.exitCode = EXIT.changes;
    });
}
