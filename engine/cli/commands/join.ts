/**
 * `ci join` and `ci delete`: add hosts to or take hosts out of a cluster's Clusterfile (the one `ci run` wrote, or
 * the one given with -f), keeping its comments and layout, then apply it as `ci apply -f` would. The new text is
 * written once its plan is approved; a refused or failed plan leaves the file untouched.
 */
import type { Command } from 'commander';
import { rm } from 'node:fs/promises';
import { UsageError } from '../../kernel/errors.js';
import { parseClusterfile } from '../../clusterfile/parse.js';
import { addHosts, removeHosts, type HostChange, type Role } from '../../clusterfile/edit.js';
import { parseCount, parseIpList } from '../../clusterfile/ip-list.js';
import { envFlags } from '../../clusterfile/env.js';
import { DEFAULT_CLUSTER, readClusterfileText, replaceClusterfileText, storedClusterfilePath } from '../stored-clusterfile.js';
import { runApply } from './apply.js';
import { runDestroy } from './destroy.js';
import { applyFlags, convergeOptions, type ShortcutFlags } from './shortcut-flags.js';

interface EditFlags extends ShortcutFlags {
  file?: string;
  all?: boolean;
}

type Edit = (text: string, file: string, change: HostChange, existing: Map<string, string[]>) => string;

async function editAndApply(o: EditFlags, edit: Edit, verb: 'join' | 'delete'): Promise<void> {
  if (o.masters === undefined && o.nodes === undefined) {
    throw new UsageError(`say which hosts to ${verb} with -m and/or -n`, verb === 'delete' ? 'or remove the whole cluster with --all' : undefined);
  }
  const overrides = envFlags(o.env);
  const path = o.file ?? storedClusterfilePath(o.name);
  const text = await readClusterfileText(path, o.file ? undefined : o.name);
  const desired = parseClusterfile(text, path, process.env, { envOverrides: overrides });
  const existing = new Map(desired.hosts.filter((h) => h.ip).map((h) => [h.ip!, h.roles]));
  let next = text;
  for (const [role, value, flag] of [['master', o.masters, '-m'], ['node', o.nodes, '-n']] as [Role, string | undefined, string][]) {
    if (value === undefined) continue;
    // Providers that make hosts number them: there, -m and -n are counts.
    const change: HostChange = desired.makesHosts ? { role, count: parseCount(value, flag) } : { role, ips: parseIpList(value, flag) };
    next = edit(next, path, change, existing);
  }
  process.stdout.write(`Clusterfile: ${path}\n`);
  await runApply(applyFlags(o, path), { text: next, approved: () => replaceClusterfileText(path, text, next) });
}

function hostOptions(c: Command, verb: string): Command {
  return c
    .option('-m, --masters <ips>', `masters to ${verb}: IPs and ranges (10.0.0.2,10.0.0.5-10.0.0.7); for LOCAL clusters, a count`)
    .option('-n, --nodes <ips>', `nodes to ${verb}: IPs and ranges; for LOCAL clusters, a count`)
    .option('--name <name>', 'the cluster, whose Clusterfile `ci run` keeps', DEFAULT_CLUSTER)
    .option('-f, --file <Clusterfile>', 'edit this Clusterfile instead of the one kept for --name');
}

export function registerJoin(program: Command): void {
  convergeOptions(hostOptions(program.command('join').description('add hosts to a cluster\'s Clusterfile and apply it'), 'add')).action((o: EditFlags) =>
    editAndApply(o, addHosts, 'join'),
  );
}

export function registerDelete(program: Command): void {
  convergeOptions(
    hostOptions(program.command('delete').description('take hosts out of a cluster\'s Clusterfile and apply it; --all destroys the cluster'), 'remove').option(
      '-a, --all',
      'destroy the whole cluster (as `ci destroy`); the Clusterfile `ci run` kept goes too',
    ),
  ).action(async (o: EditFlags) => {
    if (!o.all) return editAndApply(o, removeHosts, 'delete');
    if (o.masters !== undefined || o.nodes !== undefined) throw new UsageError('--all deletes every host: give it without -m and -n');
    const stored = o.file === undefined;
    const path = o.file ?? storedClusterfilePath(o.name);
    await readClusterfileText(path, stored ? o.name : undefined);
    const gone = await runDestroy({ file: path, autoApprove: o.autoApprove, parallelism: o.parallelism, lockTimeout: o.lockTimeout, env: o.env, backend: o.backend });
    // The kept Clusterfile goes with the cluster, so that `ci run` can make one of the same name again.
    if (gone && stored) await rm(path, { force: true });
  });
}
