/**
 * Everything between "user typed ci plan/apply" and a Plan: read the Clusterfile, resolve its image in the local
 * store, read state, call the pure planner. `ci apply` uses exactly this path, so what plan shows is what apply does.
 */
import { ciHome } from '../engine/home.js';
import { ImageStore, type ResolvedImage } from '../engine/image/store.js';
import { ImageNotFoundError } from '../engine/errors.js';
import { loadClusterfile } from '../engine/clusterfile/parse.js';
import type { DesiredCluster } from '../engine/clusterfile/types.js';
import type { StateBackend } from '../state/backend.js';
import { LocalStateBackend } from '../state/local.js';
import type { ClusterState } from '../state/model.js';
import { statePathFor } from '../state/paths.js';
import { stateKeys } from '../state/keys.js';
import type { ImageInfo, Plan } from './actions.js';
import { imageInfoFromResolved } from './image-info.js';
import { plan } from './planner.js';

export interface PrepareOptions {
  clusterfile: string;
  statePath?: string;
  home?: string;
  maxUnavailable?: number;
  env?: NodeJS.ProcessEnv;
  /** The Clusterfile already loaded by the caller (it is then not read again). */
  desired?: DesiredCluster;
  /** A backend the caller already holds (and maybe locked); default: the local file at statePath. */
  backend?: StateBackend;
}

export interface PreparedPlan {
  desired: DesiredCluster;
  resolved: ResolvedImage;
  image: ImageInfo;
  state?: ClusterState;
  statePath: string;
  backend: StateBackend;
  plan: Plan;
}

export async function preparePlan(opts: PrepareOptions): Promise<PreparedPlan> {
  const home = opts.home ?? ciHome(opts.env);
  const desired = opts.desired ?? (await loadClusterfile(opts.clusterfile, opts.env ?? process.env));
  const resolved = await resolveImage(new ImageStore(home), desired.image);
  const image = imageInfoFromResolved(resolved);
  const statePath = opts.statePath ?? statePathFor(desired.name, home);
  const backend = opts.backend ?? new LocalStateBackend(statePath, { keys: stateKeys(home) });
  const state = await backend.read();
  const p = plan({ desired, image, state, options: { maxUnavailable: opts.maxUnavailable ?? 1 } });
  return { desired, resolved, image, state, statePath, backend, plan: p };
}

async function resolveImage(store: ImageStore, ref: string): Promise<ResolvedImage> {
  try {
    return await store.resolve(ref);
  } catch (err) {
    if (err instanceof ImageNotFoundError) {
      throw new ImageNotFoundError(
        ref,
        `the Clusterfile's spec.image is not in the local store at ${store.root}: build it with \`ci build\` or fetch it with \`ci pull ${ref}\``,
      );
    }
    throw err;
  }
}
