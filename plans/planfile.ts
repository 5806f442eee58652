/**
 * Saved plans (`ci plan --out`). A plan is only valid against the exact state, Clusterfile and image it was made
 * from; `checkPlanFresh` refuses it when any of them moved on.
 */
import { promises as fs } from 'node:fs';
import { InputError, StalePlanError } from '../engine/kernel/errors.js';
import { writeFileAtomic } from '../engine/kernel/fsutil.js';
import type { DesiredCluster } from '../engine/clusterfile/types.js';
import type { ClusterState } from '../state/model.js';
import { canonicalJson } from '../engine/kernel/digest.js';
import { PLAN_VERSION, type ImageInfo, type Plan, type PlanRefresh } from './actions.js';

const FORMAT = 'cloudimage-plan';

export class PlanFileError extends InputError {
  constructor(file: string, message: string) {
    super('PLAN_FILE_INVALID', { file }, message, 'make a new one with `ci plan -f Clusterfile --out FILE`');
  }
}

export async function savePlanFile(path: string, plan: Plan): Promise<void> {
  // Plans hold no secrets, but they describe the cluster: keep them private like the state.
  await writeFileAtomic(path, JSON.stringify({ format: FORMAT, plan }, null, 2) + '\n', 0o600);
}

export async function loadPlanFile(path: string): Promise<Plan> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err: any) {
    throw new PlanFileError(path, `cannot read the plan file: ${err?.code === 'ENOENT' ? 'no such file' : (err?.message ?? err)}`);
  }
  let doc: any;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new PlanFileError(path, 'not a plan file (not JSON)');
  }
  const plan = doc?.plan as Plan | undefined;
  if (doc?.format !== FORMAT || !plan || !Array.isArray(plan.actions)) throw new PlanFileError(path, 'not a cloudimage plan file');
  if (plan.version !== PLAN_VERSION) throw new PlanFileError(path, `plan format version ${plan.version} is not supported (expected ${PLAN_VERSION})`);
  return plan;
}

/** Throws StalePlanError naming what changed since the plan was made. */
export function checkPlanFresh(
  plan: Plan,
  now: {
    state?: ClusterState;
    desired?: DesiredCluster;
    image?: Pick<ImageInfo, 'digest' | 'ref'>;
    config?: { digest?: string };
    /** The refresh made before applying it, at the plan's own depth (absent: the plan was made without one). */
    refresh?: PlanRefresh;
  },
): void {
  const lineage = now.state?.lineage ?? null;
  const serial = now.state?.serial ?? 0;
  if (lineage !== plan.lineage) {
    throw new StalePlanError(`the saved plan was made against state lineage ${plan.lineage ?? '(no state)'}, but the state now has lineage ${lineage ?? '(no state)'}`);
  }
  if (serial !== plan.serial) {
    throw new StalePlanError(`the state changed since the plan was made (serial ${plan.serial} -> ${serial})`);
  }
  if (now.desired && now.desired.name !== plan.cluster) {
    throw new StalePlanError(`the saved plan is for cluster ${plan.cluster}, not ${now.desired.name}`);
  }
  if (plan.clusterfileDigest !== null && now.desired && now.desired.digest !== plan.clusterfileDigest) {
    throw new StalePlanError('the Clusterfile changed since the plan was made');
  }
  if (plan.image && now.image && now.image.digest !== plan.image.digest) {
    throw new StalePlanError(`image ${plan.image.ref} changed since the plan was made (${plan.image.digest} -> ${now.image.digest})`);
  }
  if (plan.operation === 'apply' && now.config && now.config.digest !== plan.config?.digest) {
    throw new StalePlanError('the files the Configs and templates write changed since the plan was made');
  }
  // The state says the same, but the hosts may not: the plan's drift steps are right only for the drift it saw.
  if (plan.refresh && now.refresh && canonicalJson(driftKey(plan.refresh)) !== canonicalJson(driftKey(now.refresh))) {
    throw new StalePlanError(
      `the hosts changed since the plan was made (drift then: ${plan.refresh.drift.length} item(s), now: ${now.refresh.drift.length})`,
    );
  }
}

/** What the drift check compares: which hosts differ how (the wording of a detail, or why a host was unreachable, may change). */
function driftKey(r: PlanRefresh): unknown {
  return r.drift.map((d) => ({ host: d.host, kind: d.kind, layers: d.layers ?? [], hooks: d.hooks ?? [] }));
}
