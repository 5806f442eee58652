/**
 * `npm run bench`: prints one JSON document of figures (never pass/fail on time). Progress goes to stderr.
 *   --hosts 1,5,20          local host counts for the apply figures (the no-op figures beside parallel-ssh true)
 *   --plan-hosts 5000,50000 --plan-layers 50     --runs 5    (each size in its own process; 0 skips)
 *   --exec-hosts 5000,50000 --exec-parallelism 10   (the executor on a fake instant transport; 0 skips)
 *   --big-layer-mb 20       --no-apply           (plan figures only)
 *   --fanout-hosts 2,4,8,16 --link-mbit 100      --fanout-mb 200  (fresh apply with every link shaped both ways,
 *                           beside parallel scp to the same hosts; 0 skips)
 *                           --fanout-rss-mb 1024 (peak RSS of an apply of an image that big; 0 skips)
 *   --fanout-only           (only the fan-out figures)     --fanout-no-scp (without the parallel scp beside it)
 *   --aliyun-masters 3      --aliyun-nodes 3     (ALI_CLOUD on the emulator, realistic latencies; 0 masters skips)
 *   --upgrade-hosts 8       --upgrade-layer-mb 10  (one changed layer over a --big-layer-mb base; 0 hosts skips)
 *   --refresh-hosts 20      --refresh-synthetic-hosts 5000   (refresh over SSH on local hosts, 0 skips; and on
 *                           generated host answers, no SSH)
 */
import { parseArgs } from 'node:util';
import { machineFacts } from './machine.js';
import { benchExecutorScale, benchPlanScale } from './plan-bench.js';
import { benchApply } from './apply-bench.js';
import { benchUpgrade } from './upgrade-bench.js';
import { benchFanout } from './fanout-bench.js';
import { benchAliyun } from './aliyun-bench.js';
import { benchRefreshLocal, benchRefreshSynthetic } from './refresh-bench.js';

function positiveInts(flag: string, text: string): number[] {
  const out = text.split(',').map((s) => Number(s.trim()));
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`${flag} takes whole numbers of at least 1 separated by commas, got "${text}"`);
  }
  return out;
}

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '1,5,20' },
    'plan-hosts': { type: 'string', default: '5000,50000' },
    'exec-hosts': { type: 'string', default: '5000,50000' },
    'exec-parallelism': { type: 'string', default: '10' },
    'plan-layers': { type: 'string', default: '50' },
    runs: { type: 'string', default: '5' },
    'big-layer-mb': { type: 'string', default: '20' },
    'no-apply': { type: 'boolean', default: false },
    'fanout-hosts': { type: 'string', default: '2,4,8,16' },
    'link-mbit': { type: 'string', default: '100' },
    'fanout-mb': { type: 'string', default: '200' },
    'fanout-rss-mb': { type: 'string', default: '1024' },
    'fanout-only': { type: 'boolean', default: false },
    'fanout-no-scp': { type: 'boolean', default: false },
    'aliyun-masters': { type: 'string', default: '3' },
    'aliyun-nodes': { type: 'string', default: '3' },
    'refresh-hosts': { type: 'string', default: '20' },
    'upgrade-hosts': { type: 'string', default: '8' },
    'upgrade-layer-mb': { type: 'string', default: '10' },
    'refresh-synthetic-hosts': { type: 'string', default: '5000' },
  },
});

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

async function main(): Promise<void> {
  const machine = machineFacts();
  const planHosts = values['plan-hosts'] === '0' ? [] : positiveInts('--plan-hosts', values['plan-hosts']!);
  const execHosts = values['exec-hosts'] === '0' ? [] : positiveInts('--exec-hosts', values['exec-hosts']!);
  const [execParallelism] = positiveInts('--exec-parallelism', values['exec-parallelism']!);
  const [planLayers] = positiveInts('--plan-layers', values['plan-layers']!);
  const [runs] = positiveInts('--runs', values.runs!);
  const hostCounts = positiveInts('--hosts', values.hosts!);
  const [bigMb] = positiveInts('--big-layer-mb', values['big-layer-mb']!);

  const only = values['fanout-only'];
  let plan: unknown = { skipped: '--fanout-only' };
  let executor: unknown = { skipped: '--fanout-only' };
  const refresh: Record<string, unknown> = { skipped: '--fanout-only' };
  if (!only) {
    log(`planning ${planHosts.join(', ')} hosts x ${planLayers} layers, ${runs} runs per case`);
    plan = planHosts.length ? benchPlanScale({ hosts: planHosts, layers: planLayers, runs }) : { skipped: '--plan-hosts 0' };
    log(`executing plans of ${execHosts.join(', ')} hosts on a fake instant transport`);
    executor = execHosts.length ? benchExecutorScale({ hosts: execHosts, layers: planLayers, parallelism: execParallelism }) : { skipped: '--exec-hosts 0' };
    const [refreshHosts] = positiveInts('--refresh-synthetic-hosts', values['refresh-synthetic-hosts']!);
    log(`refresh: comparing ${refreshHosts} generated host answers`);
    refresh.synthetic = benchRefreshSynthetic({ hosts: refreshHosts, layers: planLayers, runs });
    refresh.local = { skipped: 'needs root or --refresh-hosts 0' };
    delete refresh.skipped;
  }

  let apply: unknown;
  let fanout: unknown = { skipped: 'needs root or --fanout-hosts 0' };
  let aliyun: unknown = { skipped: 'needs root or --aliyun-masters 0' };
  let upgrade: unknown = { skipped: 'needs root or --upgrade-hosts 0' };
  if (values['no-apply']) apply = { skipped: '--no-apply' };
  else if (!machine.root) apply = { skipped: 'needs root' };
  else {
    // Ctrl-C stops scheduling new steps; the case in progress is then destroyed before the process exits.
    const interrupt = new AbortController();
    const onSignal = () => {
      log('interrupted: finishing running steps and destroying the bench cluster');
      interrupt.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      if (!only) {
        const figures = await benchApply({ hostCounts, bigLayerBytes: bigMb * 1_000_000, log, signal: interrupt.signal });
        if (figures.error) process.exitCode = 1;
        apply = figures;
        const upgradeHosts = Number(values['upgrade-hosts']);
        if (upgradeHosts > 0 && !interrupt.signal.aborted) {
          const [layerMb] = positiveInts('--upgrade-layer-mb', values['upgrade-layer-mb']!);
          const up = await benchUpgrade({ hosts: upgradeHosts, baseLayerBytes: bigMb * 1_000_000, changedLayerBytes: layerMb * 1_000_000, log, signal: interrupt.signal });
          if (up.error) process.exitCode = 1;
          upgrade = up;
        }
      } else apply = { skipped: '--fanout-only' };
      if (values['fanout-hosts'] !== '0' && !interrupt.signal.aborted) {
        const [linkMbit] = positiveInts('--link-mbit', values['link-mbit']!);
        const [fanoutMb] = positiveInts('--fanout-mb', values['fanout-mb']!);
        const rssMb = Number(values['fanout-rss-mb']);
        const f = await benchFanout({
          hostCounts: positiveInts('--fanout-hosts', values['fanout-hosts']!),
          linkMbit,
          bigLayerBytes: fanoutMb * 1_000_000,
          scp: !values['fanout-no-scp'],
          rssImageBytes: rssMb > 0 ? rssMb * 1024 * 1024 : undefined,
          log,
        });
        if (f.error) process.exitCode = 1;
        fanout = f;
      }
      if (only) {
        process.stdout.write(JSON.stringify({ machine, fanout }, null, 2) + '\n');
        return;
      }
      const localRefresh = Number(values['refresh-hosts']);
      if (localRefresh > 0 && !interrupt.signal.aborted) {
        refresh.local = await benchRefreshLocal({ hosts: localRefresh, runs: Math.min(runs, 3), log });
        if ((refresh.local as { error?: string }).error) process.exitCode = 1;
      }
      const masters = Number(values['aliyun-masters']);
      if (masters > 0 && !interrupt.signal.aborted) {
        const [nodes] = positiveInts('--aliyun-nodes', values['aliyun-nodes']!);
        const figures = await benchAliyun({ masters, nodes, bigLayerBytes: bigMb * 1_000_000, log, signal: interrupt.signal });
        if (figures.error) process.exitCode = 1;
        aliyun = figures;
      }
    } catch (err) {
      apply = { ...(apply as object), error: (err as Error).message };
      process.exitCode = 1;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    if (interrupt.signal.aborted) process.exitCode = 130;
  }
  process.stdout.write(JSON.stringify({ machine, plan, executor, apply, upgrade, fanout, aliyun, refresh }, null, 2) + '\n');
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
