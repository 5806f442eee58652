/** Planner and renderer speed on a large synthetic cluster: fresh create, no-op, and an upgrade of one layer. */
import { plan, type PlanInput } from '../../plans/planner.js';
import { renderPlanText } from '../../plans/render/text.js';
import type { Plan } from '../../plans/actions.js';
import { simulate } from '../planner.helpers.js';
import { syntheticCluster, syntheticImage } from './synthetic.js';
import { timeSync, type Timing } from './stats.js';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecFigures } from './exec-bench.js';

export interface PlanCase {
  timing: Timing;
  actions: number;
  byKind: Record<string, number>;
  summary: Plan['summary'];
}

export interface PlanFigures {
  hosts: number;
  layers: number;
  /** peakRssMB: the process's peak RSS once the create plans were made (before rendering and the other cases). */
  create: PlanCase & { peakRssMB: number; render: Timing & { chars: number; lines: number } };
  noop: PlanCase;
  upgradeOneLayer: PlanCase;
}

function countKinds(p: Plan): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of p.actions) out[a.kind] = (out[a.kind] ?? 0) + 1;
  return out;
}

function measure(runs: number, input: PlanInput): { figures: PlanCase; plan: Plan } {
  const { timing, result } = timeSync(runs, () => plan(input));
  return { figures: { timing, actions: result.actions.length, byKind: countKinds(result), summary: result.summary }, plan: result };
}

export function benchPlan(opts: { hosts: number; layers: number; runs: number }): PlanFigures {
  const v1 = syntheticImage('v1', opts.layers);
  const v2 = syntheticImage('v2', opts.layers, opts.layers - 1);
  const desired = syntheticCluster(opts.hosts, 3, v1.ref);

  const create = measure(opts.runs, { desired, image: v1 });
  const createPeakRssMB = Math.round(process.resourceUsage().maxRSS / 1024);
  const rendered = timeSync(opts.runs, () => renderPlanText(create.plan));
  const converged = simulate(create.plan, desired, undefined);

  const noop = measure(opts.runs, { desired, image: v1, state: converged });
  if (noop.plan.actions.length !== 0) {
    throw new Error(`the no-op plan has ${noop.plan.actions.length} actions: simulating the create plan did not converge the state`);
  }
  const upgrade = measure(opts.runs, { desired: { ...desired, image: v2.ref }, image: v2, state: converged });

  return {
    hosts: opts.hosts,
    layers: opts.layers,
    create: {
      ...create.figures,
      peakRssMB: createPeakRssMB,
      render: { ...rendered.timing, chars: rendered.result.length, lines: rendered.result.split('\n').length },
    },
    noop: noop.figures,
    upgradeOneLayer: upgrade.figures,
  };
}

/**
 * One plan in a process of its own, as `ci plan` makes it: a create plan, or an upgrade of one layer on the converged
 * state read from a file (JSON.parse, as a backend reads it). Its peak RSS is what one plan costs, where the figures
 * above hold the garbage of every run made in their process.
 */
export interface OnePlan {
  kind: 'create' | 'upgrade';
  /** Reading and parsing the state file (upgrade only), then the plan. */
  stateReadMs?: number;
  ms: number;
  actions: number;
  peakRssMB: number;
}

/** Writes the state a create plan of this size converges to, for onePlan's upgrade. */
export function writeConvergedState(opts: { hosts: number; layers: number; file: string }): void {
  const v1 = syntheticImage('v1', opts.layers);
  const desired = syntheticCluster(opts.hosts, 3, v1.ref);
  writeFileSync(opts.file, JSON.stringify(simulate(plan({ desired, image: v1 }), desired, undefined)));
}

export function onePlan(opts: { hosts: number; layers: number; state?: string }): Omit<OnePlan, 'peakRssMB'> {
  const v1 = syntheticImage('v1', opts.layers);
  const v2 = syntheticImage('v2', opts.layers, opts.layers - 1);
  const desired = syntheticCluster(opts.hosts, 3, v1.ref);
  const t0 = performance.now();
  const state = opts.state ? JSON.parse(readFileSync(opts.state, 'utf8')) : undefined;
  const t1 = performance.now();
  const p = state ? plan({ desired: { ...desired, image: v2.ref }, image: v2, state }) : plan({ desired, image: v1 });
  const ms = Math.round(performance.now() - t1);
  return { kind: state ? 'upgrade' : 'create', ...(state ? { stateReadMs: Math.round(t1 - t0) } : {}), ms, actions: p.actions.length };
}

export interface ScaleFigures<T> {
  sizes: (T & { peakRssMB: number; cpuMs: number })[];
  /** Largest over smallest: hosts, and what the same work cost (x10 hosts should cost at most ~x12). */
  scaling: Record<string, number>;
}

/** Runs one size of a bench in a child process (scale-child.ts) and returns its figures. */
function child<T>(args: string[]): T {
  const script = fileURLToPath(new URL('./scale-child.js', import.meta.url));
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`bench child ${args.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
  return JSON.parse(r.stdout) as T;
}

const ratio = (a: number, b: number) => Number((b > 0 ? a / b : 0).toFixed(2));

/** The planner at several sizes, each in a fresh process: time (median of `runs`), peak RSS, and how it scales. */
export function benchPlanScale(opts: { hosts: number[]; layers: number; runs: number }): ScaleFigures<PlanFigures & { onePlan: OnePlan[] }> {
  const sizes = opts.hosts.map((h) => {
    const size = ['--hosts', String(h), '--layers', String(opts.layers)];
    const figures = child<PlanFigures & { peakRssMB: number; cpuMs: number }>(['--what', 'plan', ...size, '--runs', String(opts.runs)]);
    const dir = mkdtempSync(join(tmpdir(), 'ci-plan-bench-'));
    try {
      const file = join(dir, 'state.json');
      child(['--what', 'state', ...size, '--out', file]);
      const one = [child<OnePlan>(['--what', 'plan-once', ...size]), child<OnePlan>(['--what', 'plan-once', ...size, '--state', file])];
      return { ...figures, onePlan: one };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const [small, big] = [sizes[0], sizes[sizes.length - 1]];
  return {
    sizes,
    scaling: {
      hosts: ratio(big.hosts, small.hosts),
      create: ratio(big.create.timing.medianMs, small.create.timing.medianMs),
      noop: ratio(big.noop.timing.medianMs, small.noop.timing.medianMs),
      upgradeOneLayer: ratio(big.upgradeOneLayer.timing.medianMs, small.upgradeOneLayer.timing.medianMs),
      render: ratio(big.create.render.medianMs, small.create.render.medianMs),
    },
  };
}

/** The executor's bookkeeping (exec-bench.ts) at several sizes, each in a fresh process. */
export function benchExecutorScale(opts: { hosts: number[]; layers: number; parallelism: number }): ScaleFigures<ExecFigures> {
  const sizes = opts.hosts.map((h) =>
    child<ExecFigures & { peakRssMB: number; cpuMs: number }>(['--what', 'exec', '--hosts', String(h), '--layers', String(opts.layers), '--parallelism', String(opts.parallelism)]),
  );
  const [small, big] = [sizes[0], sizes[sizes.length - 1]];
  return {
    sizes,
    scaling: { hosts: ratio(big.hosts, small.hosts), ms: ratio(big.ms, small.ms), stateWrites: ratio(big.stateWrites, small.stateWrites) },
  };
}
