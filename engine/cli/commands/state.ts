/**
 * `ci state list|show|history|pull|push|migrate|restore|import|rm|rm-host-key` and `ci force-unlock`: look at the
 * state wherever its backend keeps it, move it whole (to a file, from a file, to another backend), put a backup back,
 * forget hosts or a rebuilt host's key, and break a lock whose holder is gone.
 */
import type { Command } from 'commander';
import { UsageError, StateError } from '../../kernel/errors.js';
import { ciHome } from '../../kernel/home.js';
import { shortDigest } from '../../kernel/digest.js';
import { loadClusterfile } from '../../clusterfile/parse.js';
import { importFromTags } from '../../executor/import.js';
import { promises as fs } from 'node:fs';
import { LocalStateBackend, describeState, parseDuration, takeoverMessage, withStateLock } from '../../../state/local.js';
import type { Lock, StateBackend } from '../../../state/backend.js';
import { statePathFor } from '../../../state/paths.js';
import type { ClusterState, HostState } from '../../../state/model.js';
import { byHostName } from '../../../plans/host-order.js';
import { BACKEND_TYPES, effectiveBackend, openStateBackend, usingBackend } from '../../../state/open.js';
import { migrateState, pushState } from '../../../state/transfer.js';
import { findHost, forgetHosts, type Forgotten } from '../../../state/forget.js';

function warnTakeover(lock: Lock, path: string): void {
  if (lock.tookOver) process.stderr.write(`warning: ${takeoverMessage(lock.tookOver, path)}\n`);
}

interface Where {
  file?: string;
  state?: string;
  backend?: string;
}

/**
 * The backend the Clusterfile (and --backend) names. `--state` alone names a local file and needs no Clusterfile.
 * With `withoutOutputs`, hook outputs stay sealed, so no key or passphrase is needed (nothing can be written).
 */
export async function resolveBackend(where: Where, opts: { withoutOutputs?: boolean; choice?: string } = {}): Promise<StateBackend> {
  const home = ciHome();
  const choice = opts.choice ?? where.backend;
  if (where.state && choice !== 'etcd') {
    effectiveBackend({ choice });
    return new LocalStateBackend(where.state, { withoutOutputs: opts.withoutOutputs });
  }
  const desired = await loadClusterfile(where.file ?? 'Clusterfile');
  return openStateBackend({ cluster: desired.name, home, statePath: where.state, spec: desired.backend, choice, withoutOutputs: opts.withoutOutputs });
}

/** Hosts only: the hook outputs stay sealed, so these commands work without the state's key. */
async function readState(where: Where): Promise<{ path: string; state: ClusterState }> {
  return usingBackend(await resolveBackend(where, { withoutOutputs: true }), async (b) => {
    const state = await b.read();
    if (!state) throw new StateError(`no state in ${b.location}: the cluster was never applied`, 'run `ci apply` first, or check -f, --state and --backend');
    return { path: b.location, state };
  });
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

function serialArg(v: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`--version ${v} is not a serial number`, 'run `ci state history` to see the serials kept');
  return Number(v);
}

const imageOf = (s: Pick<ClusterState, 'image'>) => (s.image ? `image ${s.image.ref} (${shortDigest(s.image.digest)})` : 'no image applied');

export function formatStateList(state: ClusterState): string {
  const rows = [['HOST', 'IP', 'ROLES', 'STATUS', 'LAYERS', 'IMAGE']];
  for (const h of byHostName(Object.values(state.hosts))) {
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
    c
      .option('-f, --file <Clusterfile>', 'the Clusterfile (names the cluster and its backend)', 'Clusterfile')
      .option('--state <path>', 'local state file to use instead')
      .option('--backend <type>', `where the state is kept, over the Clusterfile's spec.backend: ${BACKEND_TYPES.join(' or ')}`);

  whereOptions(state.command('list').description('list the hosts in the state')).action(async (flags: Where) => {
    const { state: s } = await readState(flags);
    process.stdout.write(formatStateList(s));
  });

  whereOptions(state.command('show <host>').description('show one host from the state as JSON (hook outputs are never shown)')).action(
    async (host: string, flags: Where) => {
      const { path, state: s } = await readState(flags);
      const h = findHost(s, host);
      if (!h) throw new UsageError(`host ${host} is not in the state ${path}`, 'run `ci state list` to see the hosts');
      process.stdout.write(JSON.stringify(h, null, 2) + '\n');
    },
  );

  whereOptions(state.command('history').description('list the versions of the state its backend keeps (etcd keeps the last 20 by default)')).action(async (flags: Where) => {
    await usingBackend(await resolveBackend(flags, { withoutOutputs: true }), async (b) => {
      const versions = await b.history();
      if (versions.length === 0) {
        process.stdout.write(`No state in ${b.location}.\n`);
        return;
      }
      const rows = [['SERIAL', 'WRITTEN', 'BY', 'OPERATION'], ...versions.map((v) => [String(v.serial), v.time, v.by || '-', v.operation || '-'])];
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      process.stdout.write(`${b.location}:\n` + rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n');
    });
  });

  whereOptions(
    state
      .command('pull')
      .description('print the state as stored (hook outputs stay sealed), or an earlier version with --version')
      .option('--version <serial>', 'the kept version with this serial (see `ci state history`)'),
  ).action(async (flags: Where & { version?: string }) => {
    const version = flags.version === undefined ? undefined : serialArg(flags.version);
    await usingBackend(await resolveBackend(flags, { withoutOutputs: true }), async (b) => {
      const text = await b.pull(version);
      if (text === undefined) {
        throw new StateError(
          version === undefined ? `no state in ${b.location}` : `${b.location} keeps no version with serial ${version}`,
          version === undefined ? 'check -f, --state and --backend' : 'run `ci state history` to see the versions kept',
        );
      }
      process.stdout.write(text.endsWith('\n') ? text : text + '\n');
    });
  });

  whereOptions(
    state
      .command('push <file>')
      .description('replace the state with a file (as `ci state pull` prints it): same lineage, and not older unless --force')
      .option('--force', 'push even when the file is older than the stored state')
      .option('--lock-timeout <duration>', 'wait this long for the state lock (e.g. 30s)', '0'),
  ).action(async (file: string, flags: Where & { force?: boolean; lockTimeout: string }) => {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err: any) {
      throw new UsageError(`cannot read ${file}: ${err?.code ?? err?.message ?? err}`, 'name a state file, e.g. one saved with `ci state pull > state.json`');
    }
    await usingBackend(await resolveBackend(flags), async (b) => {
      const written = await pushState(b, text, file, { force: flags.force, lockTimeoutMs: parseDuration(flags.lockTimeout) });
      process.stdout.write(`Pushed ${file} to ${b.location}: ${describeState(written)}.\n`);
    });
  });

  whereOptions(
    state
      .command('migrate')
      .description('move the state to another backend, keeping its lineage and serial; the old place keeps a note of where it went')
      .requiredOption('--to <type>', `the backend to move it to: ${BACKEND_TYPES.join(' or ')}`)
      .option('--lock-timeout <duration>', 'wait this long for each state lock (e.g. 30s)', '0'),
  ).action(async (flags: Where & { to: string; lockTimeout: string }) => {
    if (!(BACKEND_TYPES as readonly string[]).includes(flags.to)) throw new UsageError(`--to ${flags.to} is not a state backend`, `use one of: ${BACKEND_TYPES.join(', ')}`);
    const fromType = flags.to === 'etcd' ? 'local' : 'etcd';
    const from = await resolveBackend(flags, { choice: fromType });
    await usingBackend(from, async () => {
      const to = await resolveBackend({ ...flags, state: flags.to === 'local' ? flags.state : undefined }, { choice: flags.to });
      await usingBackend(to, async () => {
        const r = await migrateState(from, to, parseDuration(flags.lockTimeout));
        process.stdout.write(
          `${r.resumed ? 'Finished moving' : 'Moved'} the state from ${from.location} to ${to.location}: ${describeState(r.state)}.\n` +
            `${from.location} now only says where the state went. ` +
            (flags.to === 'etcd'
              ? 'Keep spec.backend (type: etcd) in the Clusterfile, or pass --backend etcd, so every command uses it.\n'
              : 'Remove spec.backend from the Clusterfile (or pass --backend local), so every command uses the local file.\n'),
        );
      });
    });
  });

  state
    .command('restore')
    .description('put the state backup back as the state (the current state file is moved aside, never deleted)')
    .option('-f, --file <Clusterfile>', 'the Clusterfile (names the cluster; the backup must be of that cluster)')
    .option('--state <path>', 'state file whose backup to restore')
    .action(async (flags: Where) => {
      const desired = flags.file || !flags.state ? await loadClusterfile(flags.file ?? 'Clusterfile') : undefined;
      if (!flags.state && desired?.backend?.type === 'etcd') {
        throw new UsageError(
          'the etcd backend keeps versions instead of a backup file',
          'see them with `ci state history`, then put one back with `ci state pull --version N > state.json` and `ci state push --force state.json`',
        );
      }
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
    const r = await importFromTags({ clusterfile: flags.file ?? 'Clusterfile', statePath: flags.state, backendChoice: flags.backend });
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
    const backend = await resolveBackend(flags);
    const path = backend.location;
    const message = await usingBackend(backend, async () => {
      // Looked at before locking: taking the lock of a cluster that has no state would leave its directory behind.
      if (!(await backend.read())) throw new StateError(`no state in ${path}: the cluster was never applied`, 'run `ci apply` first, or check -f, --state and --backend');
      return withStateLock(backend, 'state rm', 0, async (lock) => {
        warnTakeover(lock, path);
        const s = await backend.read();
        if (!s) throw new StateError(`no state in ${path}: the cluster was never applied`, 'pass the state with --state, or the Clusterfile with -f');
        const f = forgetHosts(s, hosts, path);
        if (flags.dryRun) return formatForgotten(f, path, { from: s.serial });
        const written = await backend.write(f.state);
        return formatForgotten(f, path, { from: s.serial, to: written.serial });
      });
    });
    process.stdout.write(message);
  });

  whereOptions(state.command('rm-host-key <host>').description('forget the pinned SSH host key of a host that was rebuilt (by key, IP or name)')).action(
    async (host: string, flags: Where) => {
      const backend = await resolveBackend(flags);
      const path = backend.location;
      const message = await usingBackend(backend, () => withStateLock(backend, 'rm-host-key', 0, async (lock) => {
        warnTakeover(lock, path);
        const s = await backend.read();
        if (!s) throw new StateError(`no state at ${path}: the cluster was never applied`, 'pass the state with --state, or the Clusterfile with -f');
        const h = findHost(s, host);
        if (!h) throw new UsageError(`host ${host} is not in the state ${path}`, 'run `ci state list` (with the same -f, --state or --backend) to see the hosts');
        const name = h.ip && h.ip !== h.key ? `${h.key} (${h.ip})` : h.key;
        if (!h.hostKey) return `No SSH host key is pinned for ${name} in ${path}; nothing to remove.\n`;
        const old = h.hostKey;
        delete h.hostKey;
        await backend.write(s);
        return `Removed the pinned SSH host key ${old} of ${name} from ${path}; the next apply trusts the key the host offers then and pins it.\n`;
      }));
      process.stdout.write(message);
    },
  );

  whereOptions(program.command('force-unlock <id>').description('remove a state lock left by a ci that is no longer running')).action(
    async (id: string, flags: Where) => {
      await usingBackend(await resolveBackend(flags, { withoutOutputs: true }), async (b) => {
        await b.forceUnlock(id);
        process.stdout.write(`Removed lock ${id} from ${b.location}.\n`);
      });
    },
  );
}
