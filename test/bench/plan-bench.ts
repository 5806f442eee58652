/** Planner and renderer speed on a large synthetic cluster: fresh create, no-op, and an upgrade of one layer. */
import { plan, type PlanInput } from '../../plans/planner.js';
import { renderPlanText } from '../../plans/render/text.js';
import type { Plan } from '../../plans/actions.js';
import { simulate } from '../planner.helpers.js';
import { syntheticCluster, syntheticImage } from './synthetic.js';
import { timeSync, type Timing } from './stats.js';

export interface PlanCase {
  timing: Timing;
  actions: number;
  byKind: Record<string, number>;
  summary: Plan['summary'];
}

export interface PlanFigures {
  hosts: number;
  layers: number;
  create: PlanCase & { render: Timing & { chars: number; lines: number } };
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
      render: { ...rendered.timing, chars: rendered.result.length, lines: rendered.result.split('\n').length },
    },
    noop: noop.figures,
    upgradeOneLayer: upgrade.figures,
  };
}
