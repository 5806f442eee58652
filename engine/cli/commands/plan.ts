/** `ci plan`: show (and optionally save) what apply (or, with --destroy, destroy) would do. */
import type { Command } from 'commander';
import { positiveInt, refreshMode } from '../options.js';
import { planCluster, planDestroyCluster } from '../../executor/converge.js';
import { UsageError } from '../../kernel/errors.js';
import { redact } from '../../kernel/redact.js';
import { savePlanFile } from '../../../plans/planfile.js';
import { renderPlanJson, renderPlanText, renderRefreshText } from '../../../plans/render/index.js';
import { actedDrift, type Plan } from '../../../plans/actions.js';
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
  destroy?: boolean;
  target?: string[];
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
    .option('--destroy', 'show what `ci destroy` would do instead')
    .option('--target <host>', 'only the steps of this host (key, IP or name) and what they need (repeatable)', collect)
    .action(async (flags: PlanFlags) => {
      if (flags.destroy && flags.target) throw new UsageError('--target cannot be given with --destroy: a destroy plan removes the whole cluster');
      if (flags.destroy && flags.refreshOnly) throw new UsageError('--refresh-only cannot be given with --destroy', 'drop one of them');
      const refresh = refreshMode(flags.refresh);
      if (flags.refreshOnly && refresh === 'off') throw new UsageError('--refresh-only needs a refresh', 'drop --refresh=false');
      if (flags.refreshOnly && flags.out) throw new UsageError('--refresh-only shows drift and saves no plan', 'drop --out, or --refresh-only to save the plan');
      const maxUnavailable = positiveInt('--max-unavailable', flags.maxUnavailable);
      let plan: Plan;
      if (flags.destroy) {
        plan = (await planDestroyCluster({ clusterfile: flags.file, envOverrides: envFlags(flags.env), statePath: flags.state, backendChoice: flags.backend })).plan;
      } else {
        const prepared = await planCluster({
          clusterfile: flags.file,
          envOverrides: envFlags(flags.env),
          statePath: flags.state,
          backendChoice: flags.backend,
          maxUnavailable,
          targets: flags.target,
          refresh,
        });
        plan = prepared.plan;
        for (const w of prepared.warnings) process.stderr.write(`warning: ${redact(w.message)}\n`);
        if (flags.refreshOnly) {
          const r = plan.refresh ?? { depth: refresh, drift: [], unreachable: [] };
          process.stdout.write(redact(flags.json ? JSON.stringify({ cluster: plan.cluster, refresh: r }, null, 2) + '\n' : renderRefreshText(plan, { color: useColor(process.stdout) })));
          if (flags.detailedExitcode && actedDrift(r.drift).length > 0) process.exitCode = EXIT.changes;
          return;
        }
      }
      process.stdout.write(flags.json ? renderPlanJson(plan) : renderPlanText(plan, { color: useColor(process.stdout) }));
      if (flags.out) {
        await savePlanFile(flags.out, plan);
        const same = flags.env ? ' with the same --env flags' : '';
        const what = plan.operation === 'destroy' ? 'to destroy the cluster with exactly these actions' : 'to perform exactly these actions';
        if (!flags.json) process.stdout.write(`\nSaved the plan to ${flags.out}; run \`ci apply -f ${flags.file} ${flags.out}\`${same} ${what}.\n`);
      }
      if (flags.detailedExitcode && plan.actions.length > 0) process.exitCode = EXIT.changes;
    });
}
