/**
 * `ci apply` and `ci destroy` below the CLI: lock the state, make the plan by the same path `ci plan` uses (or
 * check a saved one is still fresh), confirm, execute, and report. Nothing here prints; events go to a reporter
 * and the plan text goes back to the caller through `confirm`.
 */
import { ciHome } from '../kernel/home.js';
import { AbortError, InternalError, StalePlanError } from '../kernel/errors.js';
import { ImageStore } from '../image/store.js';
import { loadClusterfile, parseClusterfile } from '../clusterfile/parse.js';
import type { DesiredCluster } from '../clusterfile/types.js';
import { preparePlan, type PrepareOptions, type PreparedPlan } from '../../plans/prepare.js';
import { checkPlanFresh } from '../../plans/planfile.js';
import { planDestroy } from '../../plans/planner.js';
import { resolveTargets, targetPlan } from '../../plans/target.js';
import type { Plan } from '../../plans/actions.js';
import { createState, takeoverMessage } from '../../state/local.js';
import { openStateBackend } from '../../state/open.js';
import type { StateBackend } from '../../state/backend.js';
import { emptyState, type ClusterState } from '../../state/model.js';
import { Relay, relayOwner, removePartialsScript, revokeScript } from './relay.js';
import { providerNamed } from '../../providers/registry.js';
import type { ProviderRuntime, Released } from '../../providers/contract.js';
import type { ProviderName } from '../kernel/types.js';
import { Connections, DEFAULT_TUNING, type ConnectionTuning } from './connections.js';
import type { Reporter } from './events.js';
import { DEFAULT_PARALLELISM, execute, type ExecuteResult } from './executor.js';
import { checkIdentity, DEFAULT_PROBE, type IdentityWarning } from './identity.js';
import { DEFAULT_REFRESH, layerSizes, refreshHosts, type RefreshMode, type RefreshTuning } from './refresh.js';
import { actedDrift, type PlanRefresh } from '../../plans/actions.js';
import { describeDrift } from '../../plans/render/text.js';

export interface ConvergeOptions {
  clusterfile: string;
  statePath?: string;
  /** `--backend`: local or etcd, over the Clusterfile's spec.backend. */
  backendChoice?: string;
  home?: string;
  env?: NodeJS.ProcessEnv;
  parallelism?: number;
  /** Relayed layer sends under way at once (see ExecuteOptions.transfers). */
  transfers?: number;
  maxUnavailable?: number;
  lockTimeoutMs?: number;
  /** A plan saved by `ci plan --out`; refused when stale. */
  savedPlan?: Plan;
  /** Shown the plan; returns whether to go on. */
  confirm: (plan: Plan) => Promise<boolean>;
  /** Made once the cluster's name is known (log files are kept per cluster). */
  reporter: (cluster: string) => Reporter;
  signal?: AbortSignal;
  tuning?: Partial<ConnectionTuning>;
  /** Let hosts pass layers on to each other (default on). */
  relay?: boolean;
  /** Fetches the Clusterfile's image when the store lacks it. */
  ensureImage?: (store: ImageStore, ref: string) => Promise<unknown>;
  /** `--env K=V`: over the Clusterfile's env, part of the plan and its digest. */
  envOverrides?: Record<string, string>;
  /** The Clusterfile's text when it is not (yet) what is on disk at `clusterfile` (`ci run`, `ci join`, `ci delete`). */
  text?: string;
  /** Ask the hosts what they hold before planning (default `shallow`); a saved plan is refreshed as it was made. */
  refresh?: RefreshMode;
  /** `ci apply --refresh-only`: record what the refresh found in the state (once confirmed), and change no host. */
  refreshOnly?: boolean;
  refreshTuning?: Partial<RefreshTuning>;
  /** `--target`: hosts (by key, IP or name) the plan is cut down to, with what their steps need. */
  targets?: string[];
}

function loadDesired(opts: Pick<ConvergeOptions, 'clusterfile' | 'env' | 'envOverrides' | 'text'>): Promise<DesiredCluster> | DesiredCluster {
  const env = opts.env ?? process.env;
  const parse = { envOverrides: opts.envOverrides };
  return opts.text !== undefined ? parseClusterfile(opts.text, opts.clusterfile, env, parse) : loadClusterfile(opts.clusterfile, env, parse);
}

export interface ConvergeResult {
  plan: Plan;
  /** `--refresh-only`: whether the drift was written to the state. */
  recorded?: boolean;
  /** Undefined when there was nothing to do. */
  result?: ExecuteResult;
  /** What the provider removed once the cluster had no host left. */
  released?: Released;
}

/**
 * The run-time side of the cluster's provider, found in the registry. With `lineage`, a provider that keeps records
 * of its own (a local lab) claims them for that state. `reporter` receives what the provider says while it works.
 */
function providerFor(
  name: ProviderName,
  home: string,
  cluster: string,
  desired: DesiredCluster | undefined,
  opts: { lineage?: string; env?: NodeJS.ProcessEnv; reporter?: Reporter; signal?: AbortSignal } = {},
): ProviderRuntime {
  return providerNamed(name).open({
    home,
    cluster,
    lineage: opts.lineage,
    block: desired?.providerBlock,
    hosts: (desired?.hosts ?? []).map((h) => ({ key: h.key, ip: h.ip, ssh: h.ssh })),
    env: opts.env ?? process.env,
    report: opts.reporter
      ? (e) => opts.reporter!.event(e.level === 'warning' ? { type: 'warning', host: e.host, message: e.message } : { type: 'note', host: e.host, message: e.message })
      : undefined,
    signal: opts.signal,
  });
}

export interface ClusterPlan extends PreparedPlan {
  /** Checks that could not be made (a host that did not answer); apply checks those hosts again on contact. */
  warnings: IdentityWarning[];
}

/**
 * The one way `ci plan` and `ci apply` make a plan: the state is read, checked to be this cluster's own (see
 * identity.ts; hosts the state does not know are probed), refreshed from its hosts (refresh.ts: unless `off`), and
 * only then planned, from the refreshed state.
 */
export async function planCluster(
  opts: PrepareOptions & { probe?: { timeoutMs: number }; refresh?: RefreshMode; refreshTuning?: Partial<RefreshTuning>; targets?: string[] },
): Promise<ClusterPlan> {
  const home = opts.home ?? ciHome(opts.env);
  let warnings: IdentityWarning[] = [];
  const depth = opts.refresh ?? 'shallow';
  const prepared = await preparePlan({
    ...opts,
    home,
    beforePlan: async (desired, state, statePath) => {
      const provider = providerFor(desired.provider, home, desired.name, desired, { env: opts.env });
      warnings = await checkIdentity({ desired, state, statePath, provider, probe: opts.probe ?? DEFAULT_PROBE });
      if (!state || depth === 'off') return;
      const store = new ImageStore(home);
      const out = await refreshHosts({
        state,
        provider,
        depth,
        tuning: { ...DEFAULT_REFRESH, ...opts.refreshTuning },
        sizeOf: await layerSizes(state, (d) => store.blobSize(d)),
      });
      warnings.push(...refreshWarnings(out.refresh));
      return out;
    },
  });
  // The whole plan is made first, then cut down: a partial plan is a part of what the full one would run.
  const plan = opts.targets?.length ? targetPlan(prepared.plan, resolveTargets(prepared.plan, opts.targets)) : prepared.plan;
  return { ...prepared, plan, warnings };
}

function openBackend(opts: Pick<ConvergeOptions, 'statePath' | 'backendChoice' | 'env'>, desired: DesiredCluster, home: string): StateBackend {
  return openStateBackend({ cluster: desired.name, home, statePath: opts.statePath, spec: desired.backend, choice: opts.backendChoice, env: opts.env });
}

/** The lock, or the backend closed and the refusal passed on. */
async function lockOrClose(backend: StateBackend, operation: string, timeoutMs: number | undefined) {
  try {
    return await backend.lock({ operation }, timeoutMs ?? 0);
  } catch (err) {
    await backend.close();
    throw err;
  }
}

/** Hosts the refresh could not ask, and drift it only reports, as warnings naming the host. */
function refreshWarnings(r: PlanRefresh): IdentityWarning[] {
  const acted = new Set(actedDrift(r.drift));
  return [
    ...r.unreachable.map((u) => ({ host: u.host, message: `${u.host} could not be refreshed (${u.why}); its state is kept as it was` })),
    ...r.drift
      .filter((d) => !acted.has(d))
      .map((d) => ({
        host: d.host,
        message: `${describeDrift(d)}; if the host was rebuilt, remove it from the Clusterfile, apply, then add it back to join it again`,
      })),
  ];
}

export async function applyCluster(opts: ConvergeOptions): Promise<ConvergeResult> {
  // The CLI runs a saved destroy plan through destroyCluster, which also empties the state and releases the provider.
  if (opts.savedPlan?.operation === 'destroy') throw new InternalError('a saved destroy plan was given to apply');
  const home = opts.home ?? ciHome(opts.env);
  const desiredForName = await loadDesired(opts);
  const backend = openBackend(opts, desiredForName, home);
  const lock = await lockOrClose(backend, 'apply', opts.lockTimeoutMs);
  if (lock.tookOver) opts.reporter(desiredForName.name).event({ type: 'warning', message: takeoverMessage(lock.tookOver, backend.location) });
  try {
    const store = new ImageStore(home);
    if (opts.ensureImage && !(await store.find(desiredForName.image))) await opts.ensureImage(store, desiredForName.image);
    const prepared = await planCluster({
      clusterfile: opts.clusterfile,
      home,
      env: opts.env,
      desired: desiredForName,
      backend,
      maxUnavailable: opts.maxUnavailable,
      // A saved plan is checked against a refresh as deep as its own (none, if it was made without one).
      refresh: opts.savedPlan ? (opts.savedPlan.refresh?.depth ?? 'off') : opts.refresh,
      refreshTuning: opts.refreshTuning,
      targets: opts.targets,
    });
    let plan = prepared.plan;
    if (opts.savedPlan) {
      checkPlanFresh(opts.savedPlan, {
        state: prepared.state,
        desired: prepared.desired,
        image: prepared.image,
        config: { digest: prepared.plan.config?.digest },
        refresh: prepared.plan.refresh,
      });
      plan = opts.savedPlan;
    }
    for (const w of prepared.warnings) opts.reporter(plan.cluster).event({ type: 'warning', host: w.host, message: w.message });
    if (opts.refreshOnly) {
      // Only what the hosts showed goes into the state (layers gone, rootfs records cleared): no host is touched.
      if (!prepared.state || actedDrift(plan.refresh?.drift ?? []).length === 0) return { plan, recorded: false };
      if (!(await opts.confirm(plan))) throw new AbortError('apply cancelled');
      await backend.write(prepared.state);
      return { plan, recorded: true };
    }
    if (plan.actions.length === 0) return { plan };
    if (!(await opts.confirm(plan))) throw new AbortError('apply cancelled');
    // A new cluster's state is written before any host is touched: every host it claims has a state that names it.
    const state = prepared.state ?? (await backend.write(createState(prepared.desired.name, prepared.desired.provider)));
    const provider = providerFor(prepared.desired.provider, home, prepared.desired.name, prepared.desired, {
      lineage: state.lineage,
      env: opts.env,
      reporter: opts.reporter(plan.cluster),
      signal: opts.signal,
    });
    const connections = new Connections(provider, { ...DEFAULT_TUNING, ...opts.tuning }, { cluster: state.cluster, lineage: state.lineage, claim: true });
    const relay = opts.relay === false ? undefined : relayFor(state, prepared.desired);
    // Partial layer files stay on the hosts when the apply does not finish: the next one resumes from them.
    let finished = false;
    try {
      const result = await execute(
        { plan, desired: prepared.desired, state, store, provider, connections, reporter: opts.reporter(plan.cluster), bytesSent: new Map(), uplink: { bytes: 0 }, relay, checked: prepared.checked },
        { parallelism: opts.parallelism ?? DEFAULT_PARALLELISM, transfers: opts.transfers, backend, signal: opts.signal },
      );
      finished = result.failed.length === 0 && !result.interrupted;
      // Every create failed: the hosts removed themselves, and what was made for them (a local lab) goes too.
      const released = Object.keys(result.state.hosts).length === 0 ? await provider.release?.() : undefined;
      return { plan, result, released };
    } finally {
      if (relay) await revokeRelay(relay, state, connections, !finished);
      if (finished) await removeKeptPartials(state, connections, new Set(relay?.hostsToRevoke()));
      await connections.closeAll();
    }
  } finally {
    await lock.release();
    await backend.close();
  }
}

export async function destroyCluster(opts: ConvergeOptions): Promise<ConvergeResult | undefined> {
  const home = opts.home ?? ciHome(opts.env);
  const desired = await loadDesired(opts);
  const backend = openBackend(opts, desired, home);
  const lock = await lockOrClose(backend, 'destroy', opts.lockTimeoutMs);
  if (lock.tookOver) opts.reporter(desired.name).event({ type: 'warning', message: takeoverMessage(lock.tookOver, backend.location) });
  try {
    const state = await backend.read();
    const provider = providerFor(state?.provider ?? desired.provider, home, state?.cluster ?? desired.name, desired, {
      lineage: state?.lineage,
      env: opts.env,
      reporter: opts.reporter(state?.cluster ?? desired.name),
      signal: opts.signal,
    });
    const plan = await destroyPlanFor(desired, state, backend.location, provider);
    if (opts.savedPlan) checkDestroyPlanFresh(opts.savedPlan, plan, state, desired);
    // Infrastructure recorded by an apply that made no host yet is deleted by the plan's steps like any other.
    const hasInfra = plan.actions.some((a) => a.kind === 'infra');
    if (!state || (Object.keys(state.hosts).length === 0 && !hasInfra)) return await destroyLeftovers(plan, provider, backend, state, opts);
    if (plan.actions.length > 0 && !(await opts.confirm(plan))) throw new AbortError('destroy cancelled');
    // Checked, never claimed: destroy touches only hosts this state owns, and removes their files.
    const connections = new Connections(provider, { ...DEFAULT_TUNING, ...opts.tuning }, { cluster: state.cluster, lineage: state.lineage, claim: false });
    let result: ExecuteResult | undefined;
    try {
      result = await execute(
        { plan, desired, state, store: new ImageStore(home), provider, connections, reporter: opts.reporter(plan.cluster), bytesSent: new Map(), uplink: { bytes: 0 } },
        { parallelism: opts.parallelism ?? DEFAULT_PARALLELISM, backend, signal: opts.signal },
      );
    } finally {
      await connections.closeAll();
    }
    let released: Released | undefined;
    if (result.failed.length === 0 && !result.interrupted && Object.keys(result.state.hosts).length === 0) {
      released = await provider.release?.();
      // An empty state of the same lineage stays, as Terraform's does: making the cluster again continues it.
      await backend.write({ ...emptyState(state.cluster, state.provider, state.lineage), serial: result.state.serial });
    }
    return { plan, result, released };
  } finally {
    await lock.release();
    await backend.close();
  }
}

/**
 * The plan `ci destroy` runs, made the same way for `ci plan --destroy`. Without a state (and without a backup:
 * reading refuses then), whatever is left of the cluster on this machine was made by an apply that never recorded
 * it; with one, it must be this cluster's own state.
 */
async function destroyPlanFor(desired: DesiredCluster, state: ClusterState | undefined, statePath: string, provider: ProviderRuntime): Promise<Plan> {
  if (state) await checkIdentity({ desired, state, statePath, provider });
  const plan = planDestroy(state ?? createState(desired.name, desired.provider), (await provider.held?.())?.hosts ?? [], desired.pluginSteps);
  // Made against no state: recorded as such, so a saved one is fresh while there is still none. The Clusterfile's
  // digest is recorded too: its clean-time plugins are steps of the plan.
  return { ...plan, lineage: state ? plan.lineage : null, clusterfileDigest: desired.digest };
}

/**
 * `ci plan --destroy`: the plan `ci destroy` would run now, without the lock and without changing anything (the
 * provider is only asked what it holds).
 */
export async function planDestroyCluster(
  opts: Pick<ConvergeOptions, 'clusterfile' | 'statePath' | 'backendChoice' | 'home' | 'env' | 'envOverrides' | 'text'>,
): Promise<{ plan: Plan; state?: ClusterState; statePath: string }> {
  const home = opts.home ?? ciHome(opts.env);
  const desired = await loadDesired(opts);
  const backend = openBackend(opts, desired, home);
  const state = await backend.read().finally(() => backend.close());
  const provider = providerFor(state?.provider ?? desired.provider, home, state?.cluster ?? desired.name, desired, { lineage: state?.lineage, env: opts.env });
  return { plan: await destroyPlanFor(desired, state, backend.location, provider), state, statePath: backend.location };
}

/**
 * A saved destroy plan runs only against what it was made from: the same state (lineage and serial), and the same
 * steps (a host the provider holds that the state never recorded may have come or gone since).
 */
function checkDestroyPlanFresh(saved: Plan, now: Plan, state: ClusterState | undefined, desired: DesiredCluster): void {
  const hint = 'run `ci plan --destroy` again and review the new plan';
  if (saved.operation !== 'destroy') throw new StalePlanError('the saved plan is not a destroy plan', hint);
  try {
    checkPlanFresh(saved, { state, desired });
  } catch (err) {
    throw err instanceof StalePlanError ? new StalePlanError(err.message, hint) : err;
  }
  const ids = (p: Plan) => p.actions.map((a) => a.id).sort().join('\n');
  if (ids(saved) !== ids(now)) throw new StalePlanError('what there is to destroy changed since the plan was made (a host came or went)', hint);
}

/**
 * No host in the state, so no hook to run; a failed or killed apply may still have left hosts (they are in the
 * plan, to be confirmed) and a lab. A state that still names an image or outputs is emptied too. Undefined when
 * there is nothing at all.
 */
async function destroyLeftovers(
  plan: Plan,
  provider: ProviderRuntime,
  backend: StateBackend,
  state: ClusterState | undefined,
  opts: ConvergeOptions,
): Promise<ConvergeResult | undefined> {
  if (plan.actions.length > 0 && !(await opts.confirm(plan))) throw new AbortError('destroy cancelled');
  const released = await provider.release?.();
  if (state && (state.image || state.cmdsRun.length > 0 || state.appsLaunched || Object.keys(state.outputs).length > 0)) {
    await backend.write({ ...emptyState(state.cluster, state.provider, state.lineage), serial: state.serial });
  }
  return released ? { plan, released } : undefined;
}

/** Layers the cluster's current members hold can be served to others; only root logins can grant the relay. */
function relayFor(state: ClusterState, desired: DesiredCluster): Relay {
  const relay = new Relay(
    () => Object.values(state.hosts).map((h) => h.ip).filter(Boolean),
    { owner: relayOwner(state.cluster, state.lineage), canServe: (key) => { const h = state.hosts[key]; return !!h?.ip && h.ssh.user === 'root' && h.status !== 'leaving'; } },
  );
  const wanted = new Set(desired.hosts.map((h) => h.key));
  for (const h of Object.values(state.hosts)) {
    if (wanted.has(h.key)) for (const l of h.layers) relay.distributor.markHeld(l, h.key);
  }
  return relay;
}

/**
 * After a finished apply, on the other hosts it reached (the relay's revoke did those its relay touched): the partial
 * files and upload temps an earlier, unfinished apply of this cluster left, which nothing resumes from any more.
 */
async function removeKeptPartials(state: ClusterState, connections: Connections, done: Set<string>): Promise<void> {
  const script = removePartialsScript(relayOwner(state.cluster, state.lineage));
  const open = (await connections.open()).filter(([key]) => !done.has(key) && state.hosts[key]);
  await Promise.all(
    open.map(async ([, session]) => {
      try {
        await session.exec(script, { timeoutMs: 15_000 });
      } catch {
        // An unreachable host keeps them: its next send, or its removal from the cluster, deletes them.
      }
    }),
  );
}

async function revokeRelay(relay: Relay, state: ClusterState, connections: Connections, keepPartials: boolean): Promise<void> {
  await relay.settled();
  await Promise.all(
    relay.hostsToRevoke().map(async (key) => {
      const h = state.hosts[key];
      if (!h) return;
      try {
        await (await connections.get(h)).exec(revokeScript(relay.owner, { keepPartials }), { timeoutMs: 15_000 });
      } catch {
        // An unreachable host keeps a grant that can only read layers, from cluster addresses; the next grant there replaces it.
      }
    }),
  );
}
