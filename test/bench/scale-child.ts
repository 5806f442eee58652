/**
 * One size of the planner and executor benches in a process of its own, so its peak RSS is its own (a heap grown by
 * a smaller size, or by the size before, would blur it). Prints one JSON object; run by plan-bench.ts.
 */
import { parseArgs } from 'node:util';
import { benchPlan, onePlan, writeConvergedState } from './plan-bench.js';
import { benchExecutor } from './exec-bench.js';

const { values } = parseArgs({
  options: {
    what: { type: 'string' },
    hosts: { type: 'string' },
    layers: { type: 'string' },
    runs: { type: 'string', default: '3' },
    parallelism: { type: 'string', default: '10' },
    state: { type: 'string' },
    out: { type: 'string' },
  },
});

async function main(): Promise<void> {
  const hosts = Number(values.hosts);
  const layers = Number(values.layers);
  const cpu0 = process.cpuUsage();
  if (values.what === 'state') {
    writeConvergedState({ hosts, layers, file: values.out! });
    process.stdout.write('{}\n');
    return;
  }
  const figures =
    values.what === 'exec'
      ? await benchExecutor({ hosts, layers, parallelism: Number(values.parallelism) })
      : values.what === 'plan-once'
        ? onePlan({ hosts, layers, state: values.state })
        : benchPlan({ hosts, layers, runs: Number(values.runs) });
  const cpu = process.cpuUsage(cpu0);
  const peakRssMB = Math.round(process.resourceUsage().maxRSS / 1024);
  process.stdout.write(JSON.stringify({ ...figures, peakRssMB, cpuMs: Math.round((cpu.user + cpu.system) / 1000) }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
