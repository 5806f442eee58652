/**
 * `ci state import --from-tags`: a lost state rebuilt from what the provider finds of the cluster by its tags (the
 * instances, the VPC, the vSwitch, the security group). What the tags cannot say — which hooks ran — is taken from the
 * Clusterfile, as Terraform's import takes a resource as it is: every host found is taken to run the Clusterfile's
 * image and to have joined with its roles. The state keeps the lineage the resources were made for, so the hosts'
 * marks still match it.
 */
import { randomUUID } from 'node:crypto';
import { ciHome } from '../kernel/home.js';
import { canonicalJson, sha256 } from '../kernel/digest.js';
import { CiError, StateError } from '../kernel/errors.js';
import type { HookName } from '../kernel/types.js';
import { loadClusterfile } from '../clusterfile/parse.js';
import { ImageStore } from '../image/store.js';
import { declaredByImage, desiredInfrastructure } from '../../plans/prepare.js';
import { membershipDigest } from '../../plans/planner.js';
import { providerNamed } from '../../providers/registry.js';
import { withStateLock } from '../../state/local.js';
import { openStateBackend } from '../../state/open.js';
import { emptyState, type ClusterState, type HostState } from '../../state/model.js';
import type { Lock, LockInfo, StateBackend } from '../../state/backend.js';
import type { DesiredCluster } from '../clusterfile/types.js';
import type { ProviderModule } from '../../providers/contract.js';

export interface ImportResult {
  state: ClusterState;
  path: string;
  /** Hosts found that the Clusterfile does not list: kept, so the next plan removes them properly. */
  extra: string[];
  /** Hosts the Clusterfile lists that were not found: the next plan makes them. */
  missing: string[];
  /** The lock this import took over, left by a process of this machine that is no longer running. */
  tookOver?: LockInfo;
}

export async function importFromTags(opts: {
  clusterfile: string;
  statePath?: string;
  backendChoice?: string;
  home?: string;
  env?: NodeJS.ProcessEnv;
  lockTimeoutMs?: number;
}): Promise<ImportResult> {
  const env = opts.env ?? process.env;
  const home = opts.home ?? ciHome(env);
  const desired = await loadClusterfile(opts.clusterfile, env);
  const module = providerNamed(desired.provider);
  const backend = openStateBackend({ cluster: desired.name, home, statePath: opts.statePath, spec: desired.backend, choice: opts.backendChoice, env });
  const path = backend.location;
  try {
    return await withStateLock(backend, 'import', opts.lockTimeoutMs ?? 0, (lock) => importUnderLock(lock, { desired, module, backend, path, home, env }));
  } finally {
    await backend.close();
  }
}

async function importUnderLock(
  lock: Lock,
  { desired, module, backend, path, home, env }: { desired: DesiredCluster; module: ProviderModule; backend: StateBackend; path: string; home: string; env: NodeJS.ProcessEnv },
): Promise<ImportResult> {
  const existing = await backend.read();
  if (existing && Object.keys(existing.hosts).length > 0) {
    throw new StateError(`the state ${path} already holds ${Object.keys(existing.hosts).length} host(s): import only rebuilds a lost state`, 'run `ci plan` to see how the cluster differs from the Clusterfile');
  }
  const runtime = module.open({ home, cluster: desired.name, block: desired.providerBlock, hosts: desired.hosts.map((h) => ({ key: h.key, ip: h.ip, ssh: h.ssh })), env });
  if (!runtime.discover) {
    throw new CiError('IMPORT_UNSUPPORTED', `provider ${desired.provider} keeps no tags to rebuild a state from`, {
      hint: 'put the state back from its backup with `ci state restore`',
    });
  }
  let found;
  try {
    found = await runtime.discover();
  } finally {
    await runtime.close?.();
  }
  if (found.hosts.length === 0 && Object.keys(found.infra).length === 0) {
    throw new CiError('IMPORT_NOTHING', `nothing of cluster ${desired.name} was found by its tags`, { hint: 'check the Clusterfile (region and credentials); with nothing to import, `ci apply` makes the cluster' });
  }
  const img = await new ImageStore(home).resolve(desired.image);
  const layers = img.manifest.layers.map((l) => l.digest);
  const lineage = found.lineage ?? existing?.lineage ?? randomUUID();
  if (existing && existing.lineage !== lineage) {
    throw new StateError(`the state ${path} has lineage ${existing.lineage}, but the resources were made for lineage ${lineage}`, 'move the state file out of the way, then import again');
  }
  const state: ClusterState = existing ?? emptyState(desired.name, desired.provider, lineage);
  const wanted = new Map(desired.hosts.map((h) => [h.key, h]));
  const masters = [...desired.hosts.filter((h) => h.roles.includes('master')).map((h) => h.key), ...found.hosts.filter((h) => h.roles.includes('master')).map((h) => h.key)];
  const master0 = masters.find((k) => found.hosts.some((h) => h.key === k));
  if (!master0) throw new CiError('IMPORT_NO_MASTER', `no master of cluster ${desired.name} was found by its tags`, { hint: 'with no master left the cluster cannot be taken over: destroy what is left and apply again' });
  const members = membershipDigest(desired.hosts, master0);
  for (const f of found.hosts) {
    const d = wanted.get(f.key);
    const roles = d ? [...d.roles] : f.roles;
    const join: HookName = f.key === master0 ? 'init-master0' : roles.includes('master') ? 'join-master' : 'join-node';
    const hs: HostState = {
      key: f.key,
      ip: f.ip,
      ...(f.hostname ? { hostname: f.hostname, name: f.key } : {}),
      roles,
      ssh: { user: d?.ssh.user ?? 'root', port: d?.ssh.port ?? 22 },
      layers: [...layers],
      rootfsImage: img.digest,
      image: { ref: img.ref, digest: img.digest },
      hooks: { 'init-host': img.digest, [join]: img.digest },
      members,
      status: 'active',
      machine: f.machine,
    };
    state.hosts[f.key] = hs;
  }
  const desiredInfra = new Map(desiredInfrastructure(desired, declaredByImage(img)).map((r) => [r.key, r]));
  state.infra = Object.fromEntries(
    Object.entries(found.infra).map(([key, r]) => {
      const spec = desiredInfra.get(key)?.spec;
      // The Clusterfile's settings are taken for what was made: a real difference shows in the next plan only if they changed later.
      return [key, { spec: sha256(canonicalJson(spec ?? r.data)), data: r.data, needs: r.needs, summary: desiredInfra.get(key)?.summary ?? r.summary }];
    }),
  );
  state.master0 = master0;
  state.image = { ref: img.ref, digest: img.digest, layers, cmds: (img.config.cloudimage?.cmds ?? []).map((c) => ({ ...c })) };
  state.cmdsRun = state.image.cmds.map((c) => c.identity);
  // A cluster taken over is taken as it is: what its image launches counts as launched, as its CMDs count as run.
  const launch = img.config.cloudimage?.launch ?? [];
  if (launch.length > 0) {
    state.image.launch = launch.map((l) => ({ app: l.app, identity: l.identity }));
    state.appsLaunched = Object.fromEntries(launch.map((l) => [l.app, l.identity]));
  }
  const written = await backend.write(state);
  return {
    state: written,
    path,
    extra: found.hosts.filter((h) => !wanted.has(h.key)).map((h) => h.key),
    missing: desired.hosts.filter((h) => !found.hosts.some((f) => f.key === h.key)).map((h) => h.key),
    ...(lock.tookOver ? { tookOver: lock.tookOver } : {}),
  };
}
