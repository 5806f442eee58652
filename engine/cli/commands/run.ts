/**
 * `ci run IMAGE -m IPS [-n IPS]` (or `--local N`, `--local -m N -n N`): sealer's shortcut. It writes the Clusterfile
 * for these hosts beside the cluster's state and applies it exactly as `ci apply -f` would.
 */
import type { Command } from 'commander';
import { isAbsolute, resolve } from 'node:path';
import { UsageError } from '../../kernel/errors.js';
import { envFlags } from '../../clusterfile/env.js';
import { escapeRefs, isReference, runClusterfileText, type RunSpec } from '../../clusterfile/edit.js';
import { parseCount, parseIpList } from '../../clusterfile/ip-list.js';
import { DEFAULT_CLUSTER, readIfExists, replaceClusterfileText, storedClusterfilePath } from '../stored-clusterfile.js';
import { runApply } from './apply.js';
import { applyFlags, convergeOptions, type ShortcutFlags } from './shortcut-flags.js';

interface RunFlags extends ShortcutFlags {
  local?: string | true;
  user?: string;
  passwd?: string;
  pk?: string;
  pkPasswd?: string;
  port?: string;
  insecure?: boolean;
  caFile?: string;
}

function hostsOf(o: RunFlags): Pick<RunSpec, 'provider' | 'masters' | 'nodes'> {
  if (o.local !== undefined) {
    const ssh = (['user', 'passwd', 'pk', 'pkPasswd', 'port'] as const).filter((k) => o[k] !== undefined);
    if (ssh.length > 0) {
      throw new UsageError('--local hosts are made by this machine and logged into with its own key: SSH flags do not apply', 'drop -u, -p, --pk, --pk-passwd and --port');
    }
    if (typeof o.local === 'string' && o.masters !== undefined) {
      throw new UsageError('give the masters either as --local N or as -m N, not both', 'e.g. `--local 3`, or `--local -m 1 -n 2`');
    }
    const masters = typeof o.local === 'string' ? parseCount(o.local, '--local') : o.masters !== undefined ? parseCount(o.masters, '-m') : 1;
    const nodes = o.nodes !== undefined ? parseCount(o.nodes, '-n', 0) : 0;
    return { provider: 'LOCAL', masters, nodes };
  }
  if (o.masters === undefined) {
    throw new UsageError('-m is required: the IPs of the masters', 'e.g. `ci run IMAGE -m 10.0.0.2-10.0.0.4 -n 10.0.0.5 -p PASSWORD`, or `--local N` for hosts made on this machine');
  }
  const masters = parseIpList(o.masters, '-m');
  const nodes = o.nodes !== undefined ? parseIpList(o.nodes, '-n') : [];
  const both = nodes.find((ip) => masters.includes(ip));
  if (both) throw new UsageError(`${both} is given as a master (-m) and as a node (-n)`, 'give each host one role');
  return { provider: 'BAREMETAL', masters, nodes };
}

function sshOf(o: RunFlags): RunSpec['ssh'] {
  const port = o.port === undefined ? undefined : Number(o.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new UsageError(`--port must be a port number from 1 to 65535, not "${o.port}"`);
  }
  if (o.pkPasswd !== undefined && o.pk === undefined) throw new UsageError('--pk-passwd is the passphrase of the key given with --pk', 'give --pk FILE too');
  // The Clusterfile lives elsewhere than the current directory: a relative key path is made absolute now.
  const pk = o.pk === undefined || o.pk.startsWith('~') || isAbsolute(o.pk) ? o.pk : resolve(o.pk);
  return { user: o.user, passwd: o.passwd, pk, pkPasswd: o.pkPasswd, port };
}

export function register(program: Command): void {
  convergeOptions(
    program
      .command('run')
      .description('write a Clusterfile for these hosts (kept beside the cluster\'s state) and apply it, as `ci apply -f` does')
      .argument('<image>', 'the CloudImage to run')
      .option('-m, --masters <ips>', 'masters: IPs and ranges (10.0.0.2,10.0.0.5-10.0.0.7); with --local, a count')
      .option('-n, --nodes <ips>', 'nodes: IPs and ranges; with --local, a count')
      .option('--local [masters]', 'make the hosts on this machine (provider LOCAL): this many masters (default 1), or counts in -m/-n')
      .option('--name <name>', 'the cluster\'s name', DEFAULT_CLUSTER)
      .option('-u, --user <user>', 'SSH user (default root)')
      .option('-p, --passwd <password>', 'SSH password; \'${VAR}\' (quoted) writes a reference to $VAR instead of the password')
      .option('--pk <file>', 'SSH private key file (without -p or --pk: the ssh-agent)')
      .option('--pk-passwd <passphrase>', 'passphrase of the --pk key; \'${VAR}\' writes a reference')
      .option('--port <n>', 'SSH port (default 22)')
      .option('--insecure', 'pull the image over plain HTTP when the store lacks it')
      .option('--ca-file <file>', 'extra CA certificate for pulling the image'),
  ).action(async (image: string, o: RunFlags) => {
    const path = storedClusterfilePath(o.name);
    envFlags(o.env); // refused before anything is written
    const spec: RunSpec = {
      name: o.name,
      image,
      ...hostsOf(o),
      ssh: sshOf(o),
      env: (o.env ?? []).map(escapeRefs),
    };
    const text = runClusterfileText(spec);
    const before = await readIfExists(path);
    if (before !== undefined && before !== text) {
      throw new UsageError(
        `cluster ${o.name} exists already, with other hosts or settings (its Clusterfile: ${path})`,
        `change its hosts with \`ci join\` or \`ci delete --name ${o.name}\`, or edit that file and run \`ci apply -f ${path}\`; \`ci delete --all --name ${o.name}\` removes it`,
      );
    }
    process.stdout.write(`Clusterfile: ${path}${before === undefined ? ' (written once the plan is approved)' : ''}\n`);
    for (const [flag, v] of [['-p', o.passwd], ['--pk-passwd', o.pkPasswd]] as const) {
      if (v !== undefined && !isReference(v)) {
        process.stderr.write(`note: the secret given with ${flag} is kept in that file (mode 0600); give ${flag} '\${VAR}' to keep only a reference to $VAR there\n`);
      }
    }
    // Run's own --env values are written into the Clusterfile (spec.env), so later joins and deletes keep them.
    await runApply(applyFlags(o, path, { env: [], insecure: o.insecure, caFile: o.caFile }), { text, approved: () => replaceClusterfileText(path, before, text) });
  });
}
