/** `ci state list|show` and `ci force-unlock`: look at the state file, and break a lock whose holder is gone. */
import type { Command } from 'commander';
import { UsageError, StateError } from '../../errors.js';
import { ciHome } from '../../home.js';
import { shortDigest } from '../../digest.js';
import { loadClusterfile } from '../../clusterfile/parse.js';
import { LocalStateBackend } from '../../../state/local.js';
import { statePathFor } from '../../../state/paths.js';
import type { ClusterState } from '../../../state/model.js';

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

export function formatStateList(state: ClusterState): string {
  const rows = [['HOST', 'IP', 'ROLES', 'STATUS', 'LAYERS', 'IMAGE']];
  for (const h of Object.values(state.hosts)) {
    const img = h.rootfsImage ? (h.rootfsImage === state.image?.digest ? state.image.ref : shortDigest(h.rootfsImage)) : '-';
    rows.push([h.key + (h.key === state.master0 ? ' *' : ''), h.ip || '-', h.roles.join(','), h.status, String(h.layers.length), img]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  const head = `cluster ${state.cluster} (${state.provider}), image ${state.image ? `${state.image.ref} (${shortDigest(state.image.digest)})` : '(none applied)'}, serial ${state.serial}`;
  return [head, ...lines, Object.keys(state.hosts).length ? '* master0' : '(no hosts)'].join('\n') + '\n';
}

export function register(program: Command): void {
  const state = program.command('state').description('inspect the state ci keeps about a cluster');
  const whereOptions = (c: Command) =>
    c.option('-f, --file <Clusterfile>', 'the Clusterfile (names the cluster)', 'Clusterfile').option('--state <path>', 'state file to read instead');

  whereOptions(state.command('list').description('list the hosts in the state')).action(async (flags: Where) => {
    const { state: s } = await readState(flags);
    process.stdout.write(formatStateList(s));
  });

  whereOptions(state.command('show <host>').description('show one host from the state as JSON (hook outputs are never shown)')).action(
    async (host: string, flags: Where) => {
      const { path, state: s } = await readState(flags);
      const h = s.hosts[host] ?? Object.values(s.hosts).find((x) => x.ip === host || x.name === host);
      if (!h) throw new UsageError(`host ${host} is not in the state ${path}`, 'run `ci state list` to see the hosts');
      process.stdout.write(JSON.stringify(h, null, 2) + '\n');
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
