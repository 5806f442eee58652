/**
 * Everything between "user typed ci plan/apply" and a Plan: read the Clusterfile, resolve its image in the local
 * store, read state, call the pure planner. `ci apply` uses exactly this path, so what plan shows is what apply does.
 */
import { ciHome } from '../engine/kernel/home.js';
import { ImageStore, type ResolvedImage } from '../engine/image/store.js';
import { checkStoredLayers, type CheckedImage } from '../engine/image/layer-check.js';
import { ImageNotFoundError } from '../engine/kernel/errors.js';
import { loadClusterfile } from '../engine/clusterfile/parse.js';
import type { DesiredCluster } from '../engine/clusterfile/types.js';
import type { StateBackend } from '../state/backend.js';
import { openStateBackend } from '../state/open.js';
import type { ClusterState } from '../state/model.js';
import type { ImageInfo, Plan, PlanRefresh } from './actions.js';
import { imageInfoFromResolved } from './image-info.js';
import { plan } from './planner.js';
import { providerNamed } from '../providers/registry.js';
import { buildConfigLayer } from '../engine/config/layer.js';
import { toConfigSpec } from '../engine/clusterfile/config-spec.js';
import type { InfraResource } from '../providers/contract.js';

export interface PrepareOptions {
  clusterfile: string;
  statePath?: string;
  home?: string;
  maxUnavailable?: number;
  env?: NodeJS.ProcessEnv;
  /** `--env K=V`: over the Clusterfile's env. */
  envOverrides?: Record<string, string>;
  /** The Clusterfile already loaded by the caller (it is then not read again). */
  desired?: DesiredCluster;
  /** A backend the caller already holds (and maybe locked); default: the one `--backend`/spec.backend names, closed once read. */
  backend?: StateBackend;
  /** `--backend`: local or etcd, over the Clusterfile's spec.backend. */
  backendChoice?: string;
  /**
   * Runs once the state is read and before the planner: checks that need I/O beyond this module (that the state
   * is this cluster's, that no host belongs to another state) live in the executor layer and refuse by throwing.
   * It may return the state as the hosts show it (a refresh): that state is planned from, and returned.
   */
  beforePlan?: (
    desired: DesiredCluster,
    state: ClusterState | undefined,
    statePath: string,
  ) => Promise<void | { state: ClusterState; refresh: PlanRefresh }>;
}

export interface PreparedPlan {
  desired: DesiredCluster;
  resolved: ResolvedImage;
  image: ImageInfo;
  /** The image's layers as checked against the layer rules: what every host's unpack follows. */
  checked: CheckedImage;
  /** The cluster-level infrastructure its provider needs. */
  infra: InfraResource[];
  state?: ClusterState;
  /** Where the state is kept, for messages (a file, or an etcd location). */
  statePath: string;
  plan: Plan;
}

export async function preparePlan(opts: PrepareOptions): Promise<PreparedPlan> {
  const home = opts.home ?? ciHome(opts.env);
  const desired = opts.desired ?? (await loadClusterfile(opts.clusterfile, opts.env ?? process.env, { envOverrides: opts.envOverrides }));
  const store = new ImageStore(home);
  const resolved = await resolveImage(store, desired.image);
  // An image that breaks the layer rules is refused before any plan is shown, whoever put it in the store.
  const imageChecked = await checkStoredLayers(store, {
    ref: resolved.ref,
    layers: resolved.manifest.layers.map((l) => l.digest),
    allowSetid: resolved.config.cloudimage?.allowSetid,
  });
  const image = imageInfoFromResolved(resolved);
  const backend = opts.backend ?? openStateBackend({ cluster: desired.name, home, statePath: opts.statePath, spec: desired.backend, choice: opts.backendChoice, env: opts.env });
  const statePath = backend.location;
  let read: ClusterState | undefined;
  try {
    read = await backend.read();
  } finally {
    // One opened here serves only this read: a plan holds no lock, and a refresh-only apply passes its own.
    if (!opts.backend) await backend.close();
  }
  const refreshed = await opts.beforePlan?.(desired, read, statePath);
  const state = refreshed ? refreshed.state : read;
  const infra = desiredInfrastructure(desired, declaredByImage(resolved));
  // The Configs and templates, applied to the image's files: one more layer, unpacked last on every host.
  const built = await buildConfigLayer({
    store,
    image: { ref: resolved.ref, layers: resolved.manifest.layers.map((l) => l.digest), allowSetid: resolved.config.cloudimage?.allowSetid },
    checked: imageChecked,
    configs: desired.configs.map((c) => toConfigSpec(c.name, c.spec, c.at ?? { file: opts.clusterfile, line: 1 })),
    env: desired.env,
    previous: state?.image?.config,
  });
  const checked = built?.checked ?? imageChecked;
  const p = plan({
    desired,
    image,
    state,
    infra,
    ...(built ? { config: built.info } : {}),
    ...(refreshed ? { refresh: refreshed.refresh } : {}),
    options: { maxUnavailable: opts.maxUnavailable ?? 1 },
  });
  return { desired, resolved, image, checked, infra, state, statePath, plan: p };
}

/** What the cluster's provider needs besides hosts (a VPC, a security group open to the image's ports), as plain data. */
export function desiredInfrastructure(desired: DesiredCluster, image: { labels: Record<string, string>; ports: string[] }): InfraResource[] {
  return providerNamed(desired.provider).infrastructure?.({ cluster: desired.name, block: desired.providerBlock, image }) ?? [];
}

/** The image's labels, and the ports it declares: `io.cloudimage.ports` (`2379/tcp,2380/tcp`) and OCI ExposedPorts. */
export function declaredByImage(img: Pick<ResolvedImage, 'config'>): { labels: Record<string, string>; ports: string[] } {
  const labels = img.config.config?.Labels ?? {};
  const exposed = Object.keys((img.config.config as { ExposedPorts?: Record<string, unknown> } | undefined)?.ExposedPorts ?? {});
  const listed = (labels[PORTS_LABEL] ?? '').split(/[\s,]+/).filter(Boolean);
  return { labels, ports: [...new Set([...listed, ...exposed])].sort() };
}

/** The label with which an image declares the ports it serves. */
export const PORTS_LABEL = 'io.cloudimage.ports';

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
