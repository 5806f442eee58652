/**
 * `ci state list|show|restore|rm|rm-host-key` and `ci force-unlock`: look at the state file, put its backup back,
 * forget hosts or a rebuilt host's key, and break a lock whose holder is gone.
 */
import type { Command } from 'commander';
import { UsageError, StateError } from '../../kernel/errors.js';
import { ciHome } from '../../kernel/home.js';
import { shortDigest } from '../../kernel/digest.js';
import { loadClusterfile } from '../../clusterfile/parse.js';
import { importFromTags } from '../../executor/import.js';
import { LocalStateBackend, describeState, takeoverMessage, withStateLock } from '../../../state/local.js';
import type { Lock } from '../../../state/backend.js';
import { statePathFor } from '../../../state/paths.js';
import type { ClusterState, HostState } from '../../../state/model.js';
import { findHost, forgetHosts, type Forgotten } from '../../../state/forget.js';

function warnTakeover(lock: Lock, path: string): void {
  if (lock.tookOver) process.stderr.write(`warning: ${takeoverMessage(lock.tookOver, path)}\n`);
}

interface Where {
  file?: string;
  state?: string;
}

/** The state file named by --state, or the default one of the Clusterfile's cluster. */
export async function resolveStatePath(where: Where, home = ciHome()): Promise<string> {
  if (where.state) return where.state;
  const desired = await loadClusterfile(where.file ?? 'Clusterfile');
  return statePathFor(desired.name, home);
}

/** Hosts only: the hook outputs stay sealed, so these commands work without the state's key. */
async function readState(where: Where): Promise<{ path: string; state: ClusterState }> {
  const path = await resolveStatePath(where);
  const state = await new LocalStateBackend(path, { withoutOutputs: true }).read();
  if (!state) throw new StateError(`no state at ${path}: the cluster was never applied`, 'run `ci apply` first, or pass --state');
  return { path, state };
}

/** A host of the state by key, IP or name. */
export function findStateHost(state: ClusterState, host: string): HostState | undefined {
  return findHost(state, host);
}

const hostLabel = (h: HostState) => (h.ip && h.ip !== h.key ? `${h.key} (${h.ip})` : h.key);

/** What `ci state rm` did, and what it means for the next plan. */
export function formatForgotten(f: Forgotten, path: string, serials: { from: number; to?: number }): string {
  const n = f.removed.length;
  const hosts = f.removed.map((h) => `  ${hostLabel(h)}${h.roles.length ? ` (${h.roles.join(', ')})` : ''}`);
  const head =
    serials.to === undefined
      ? `Would remove ${n} host${n === 1 ? '' : 's'} from the state ${path} (--dry-run: nothing changed):`
      : `Removed ${n} host${n === 1 ? '' : 's'} from the state ${path} (serial ${serials.from} -> ${serials.to}):`;
  const made = f.removed.filter((h) => h.machine !== undefined).map((h) => h.key);
  return [
    head,
    ...hosts,
    'Nothing was done on the hosts: their files stay there, and ci does not clean or remove them now.',
    ...(made.length ? [`${made.join(', ')} ${made.length === 1 ? 'was' : 'were'} made by provider ${f.state.provider}; forgetting does not delete ${made.length === 1 ? 'it' : 'them'}.`] : []),
    'A forgotten host that is still in the Clusterfile is a new host to the next `ci plan` and `ci apply` (layers, init-host and its join run again).',
    ...(f.emptied
      ? ['No host is left: master0, the image applied, the CMDs and apps run, and the hook outputs are forgotten too; the next apply makes the cluster anew.']
      : ['One taken out of the Clusterfile is left alone, and the hosts that stay are reconfigured without it.']),
  ].join('\n') + '\n';
}

const imageOf = (s: Pick<ClusterState, 'image'>) => (s.image ? `image ${s.image.ref} (${shortDigest(s.image.digest)})` : 'no image applied');

export function formatStateList(state: ClusterState): string {
  const rows = [['HOST', 'IP', 'ROLES', 'STATUS', 'LAYERS', 'IMAGE']];
  for (const h of Object.values(state.hosts)) {
    const img = h.rootfsImage ? (h.rootfsImage === state.image?.digest ? state.image.ref : shortDigest(h.rootfsImage)) : '-';
    rows.push([h.key + (h.key === state.master0 ? ' *' : ''), h.ip || '-', h.roles.join(','), h.status, String(h.layers.length), img]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  const head = `cluster ${state.cluster} (${state.provider}), image ${state.image ? `${state.image.ref} (${shortDigest(state.image.digest)})` : '(none applied)'}, serial ${state.serial}`;
  if (Object.keys(state.hosts).length === 0) return `${head}\nno hosts: the state holds none (the cluster was destroyed, or no host was made yet)\n`;
  return [head, ...lines, '* master0'].join('\n') + '\n';
}

export function register(program: Command): void {
  const state = program.command('state').description('inspect and repair the state ci keeps about a cluster');
  const whereOptions = (c: Command) =>
    c.option('-f, --file <Clusterfile>', 'the Clusterfile (names the cluster)', 'Clusterfile').option('--state <path>', 'state file to read instead');

  whereOptions(state.command('list').description('list the hosts in the state')).action(async (flags: Where) => {
    const { state: s } = await readState(flags);
    process.stdout.write(formatStateList(s));
  });

  whereOptions(state.command('show <host>').description('show one host from the state as JSON (hook outputs are never shown)')).action(
    async (host: string, flags: Where) => {
      const { path, state: s } = await readState(flags);
      const h = findStateHost(s, host);
      if (!h) throw new UsageError(`host ${host} is not in the state ${path}`, 'run `ci state list` to see the hosts');
      process.stdout.write(JSON.stringify(h, null, 2) + '\n');
    },
  );

  state
    .command('restore')
    .description('put the state backup back as the state (the current state file is moved aside, never deleted)')
    .option('-f, --file <Clusterfile>', 'the Clusterfile (names the cluster; the backup must be of that cluster)')
    .option('--state <path>', 'state file whose backup to restore')
    .action(async (flags: Where) => {
      const desired = flags.file || !flags.state ? await loadClusterfile(flags.file ?? 'Clusterfile') : undefined;
      const path = flags.state ?? statePathFor(desired!.name, ciHome());
      const backend = new LocalStateBackend(path);
      const r = await withStateLock(backend, 'restore', 0, (lock) => {
        warnTakeover(lock, path);
        return backend.restoreBackup({ cluster: desired?.name });
      });
      const what = `${describeState(r.state)}, ${imageOf(r.state)}`;
      if (r.unchanged) {
        process.stdout.write(`${path} already holds its backup (${what}); nothing changed.\n`);
        return;
      }
      if (r.movedAside) process.stdout.write(`Moved the state file that was there to ${r.movedAside}.\n`);
      process.stdout.write(`Restored ${path} from ${backend.backupPath}: ${what}.\n`);
    });

  whereOptions(
    state
      .command('import')
      .description("rebuild a lost state from the cluster's resources, found by their tags (providers that tag what they make)")
      .requiredOption('--from-tags', 'find the resources by the tags the provider put on them'),
  ).action(async (flags: Where) => {
    const r = await importFromTags({ clusterfile: flags.file ?? 'Clusterfile', statePath: flags.state });
    if (r.tookOver) process.stderr.write(`warning: ${takeoverMessage(r.tookOver, r.path)}\n`);
    const n = Object.keys(r.state.hosts).length;
    process.stdout.write(
      `Imported ${n} host${n === 1 ? '' : 's'} and ${Object.keys(r.state.infra ?? {}).length} piece(s) of infrastructure into ${r.path} (${describeState(r.state)}).\n` +
        `Each host is taken to run ${r.state.image?.ref} and to have joined with the roles the Clusterfile gives; run \`ci plan\` to see what differs.\n` +
        (r.extra.length ? `Found but not in the Clusterfile (the next apply removes them): ${r.extra.join(', ')}.\n` : '') +
        (r.missing.length ? `In the Clusterfile but not found (the next apply makes them): ${r.missing.join(', ')}.\n` : ''),
    );
  });

  whereOptions(
    state
      .command('rm')
      .description('forget hosts (by key, IP or name) without touching them; the next plan treats those still in the Clusterfile as new')
      .argument('<host...>', 'the hosts to forget')
      .option('--dry-run', 'show what would be forgotten, and change nothing'),
  ).action(async (hosts: string[], flags: Where & { dryRun?: boolean }) => {
    // Looked at before locking: taking the lock of a cluster that has no state would leave its directory behind.
    const { path } = await readState(flags);
    const backend = new LocalStateBackend(path);
    const message = await withStateLock(backend, 'state rm', 0, async (lock) => {
      warnTakeover(lock, path);
      const s = await backend.read();
      if (!s) throw new StateError(`no state at ${path}: the cluster was never applied`, 'pass the state with --state, or the Clusterfile with -f');
      const f = forgetHosts(s, hosts, path);
      if (flags.dryRun) return formatForgotten(f, path, { from: s.serial });
      const written = await backend.write(f.state);
      return formatForgotten(f, path, { from: s.serial, to: written.serial });
    });
    process.stdout.write(message);
  });

  whereOptions(state.command('rm-host-key <host>').description('forget the pinned SSH host key of a host that was rebuilt (by key, IP or name)')).action(
    async (host: string, flags: Where) => {
      const path = await resolveStatePath(flags);
      const backend = new LocalStateBackend(path);
      const message = await withStateLock(backend, 'rm-host-key', 0, async (lock) => {
        warnTakeover(lock, path);
        const s = await backend.read();
        if (!s) throw new StateError(`no state at ${path}: the cluster was never applied`, 'pass the state with --state, or the Clusterfile with -f');
        const h = findStateHost(s, host);
        if (!h) throw new UsageError(`host ${host} is not in the state ${path}`, `run \`ci state list --state ${path}\` to see the hosts`);
        const name = h.ip && h.ip !== h.key ? `${h.key} (${h.ip})` : h.key;
        if (!h.hostKey) return `No SSH host key is pinned for ${name} in ${path}; nothing to remove.\n`;
        const old = h.hostKey;
        delete h.hostKey;
        await backend.write(s);
        return `Removed the pinned SSH host key ${old} of ${name} from ${path}; the next apply trusts the key the host offers then and pins it.\n`;
      });
      process.stdout.write(message);
    },
  );

  whereOptions(program.command('force-unlock <id>').description('remove a state lock left by a ci that is no longer running')).action(
    async (id: string, flags: Where) => {
      const path = await resolveStatePath(flags);
      await new LocalStateBackend(path).forceUnlock(id);
      process.stdout.write(`Removed lock ${id} from ${path}.\n`);
    },
  );
}
