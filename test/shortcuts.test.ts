/**
 * The pieces under `ci run`, `ci join` and `ci delete`: host lists and ranges, the Clusterfile written for a run,
 * edits that keep a file's comments, other documents and layout, and `--env` overrides in the plan's digest.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from './helpers/cli.js';
import { removeDir, tempDir } from './helpers/tmp.js';
import { parseClusterfile } from '../engine/clusterfile/index.js';
import { addHosts, removeHosts, runClusterfileText, secretValue } from '../engine/clusterfile/edit.js';
import { envFlags } from '../engine/clusterfile/env.js';
import { MAX_RANGE, parseCount, parseIpList } from '../engine/clusterfile/ip-list.js';
import { ClusterfileError, UsageError } from '../engine/kernel/errors.js';
import { replaceClusterfileText } from '../engine/cli/stored-clusterfile.js';

const usage = (fn: () => unknown): UsageError => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('expected a UsageError');
};

describe('IP lists and ranges', () => {
  test('lists, ranges and both, in the order given', () => {
    expect(parseIpList('10.0.0.2', '-m')).toEqual(['10.0.0.2']);
    expect(parseIpList('10.0.0.2, 10.0.0.7,fd00::1', '-m')).toEqual(['10.0.0.2', '10.0.0.7', 'fd00::1']);
    expect(parseIpList('10.0.0.254-10.0.1.1,10.0.0.9', '-n')).toEqual(['10.0.0.254', '10.0.0.255', '10.0.1.0', '10.0.1.1', '10.0.0.9']);
    expect(parseIpList('10.0.0.3-10.0.0.3', '-n')).toEqual(['10.0.0.3']);
    expect(parseIpList(`10.0.0.0-10.0.${(MAX_RANGE - 1) >> 8}.${(MAX_RANGE - 1) & 255}`, '-n')).toHaveLength(MAX_RANGE);
  });

  test.each([
    ['10.0.0', /-m: "10\.0\.0" is not an IPv4 or IPv6 address/],
    ['10.0.0.2,,10.0.0.3', /-m: an empty entry in the list/],
    ['10.0.0.2,', /-m: an empty entry/],
    ['10.0.0.9-10.0.0.2', /-m: "10\.0\.0\.9-10\.0\.0\.2" ends before it starts/],
    ['10.0.0.2-9', /is not a range of IPv4 addresses/],
    ['fd00::1-fd00::9', /is not a range of IPv4 addresses/],
    ['10.0.0.2-10.0.0.4,10.0.0.3', /-m: "10\.0\.0\.3" is given twice/],
    ['10.0.0.2:2222', /is not an IPv4 or IPv6 address/],
    ['10.0.0.0-10.1.0.0', new RegExp(`holds 65537 addresses, more than ${MAX_RANGE}`)],
  ])('refuses %s', (text, message) => {
    expect(usage(() => parseIpList(text, '-m')).message).toMatch(message);
  });

  test('counts', () => {
    expect(parseCount('3', '--local')).toBe(3);
    expect(parseCount('0', '-n', 0)).toBe(0);
    expect(usage(() => parseCount('0', '-m')).message).toBe('-m must be a whole number of at least 1, not "0"');
    expect(usage(() => parseCount('2.5', '-n')).message).toMatch(/-n must be a whole number/);
  });
});

describe('the Clusterfile of a run', () => {
  test('BAREMETAL: masters and nodes, SSH settings, env; it parses back to the same cluster', () => {
    const text = runClusterfileText({
      name: 'my-cluster',
      image: 'etcd-example:v1',
      provider: 'BAREMETAL',
      masters: ['10.0.0.2', '10.0.0.3'],
      nodes: ['10.0.0.4'],
      ssh: { user: 'admin', passwd: 'p${w}d', pk: '/keys/id', port: 2222 },
      env: ['A=1'],
    });
    expect(text).toContain('ips: [10.0.0.2, 10.0.0.3]');
    expect(text).toContain('passwd: p$${w}d');
    const d = parseClusterfile(text, 'Clusterfile', {});
    expect(d).toMatchObject({ name: 'my-cluster', image: 'etcd-example:v1', provider: 'BAREMETAL', env: { A: '1' } });
    expect(d.hosts.map((h) => [h.ip, h.roles])).toEqual([['10.0.0.2', ['master']], ['10.0.0.3', ['master']], ['10.0.0.4', ['node']]]);
    // The password reads back exactly as given, "${" and all.
    expect(d.hosts[0].ssh).toEqual({ user: 'admin', port: 2222, password: 'p${w}d', privateKeyPath: '/keys/id' });
  });

  test('a password given as ${VAR} is written as that reference, never as the value', () => {
    expect(secretValue('${SSH_PASSWORD}')).toBe('${SSH_PASSWORD}');
    expect(secretValue('a${B}')).toBe('a$${B}');
    const text = runClusterfileText({ name: 'c', image: 'x:v1', provider: 'BAREMETAL', masters: ['10.0.0.2'], nodes: [], ssh: { passwd: '${SSH_PASSWORD}' } });
    expect(text).toContain('passwd: ${SSH_PASSWORD}');
    expect(parseClusterfile(text, 'Clusterfile', { SSH_PASSWORD: 'from-env' }).hosts[0].ssh.password).toBe('from-env');
  });

  test('LOCAL: counts, no node group when there are no nodes', () => {
    const text = runClusterfileText({ name: 'lab', image: 'x:v1', provider: 'LOCAL', masters: 3, nodes: 0 });
    const d = parseClusterfile(text, 'Clusterfile', {});
    expect(d.hosts.map((h) => h.key)).toEqual(['lab-master-1', 'lab-master-2', 'lab-master-3']);
    expect(text).not.toContain('node');
  });
});

const HAND_WRITTEN = `# the lab in room 2
apiVersion: sealer.cloud/v2
kind: Cluster
metadata:
  name: demo
spec:
  image: etcd-example:v1
  ssh: {user: root, passwd: "\${SSH_PASSWORD}"}   # from the vault
  hosts:
  - ips: [10.0.0.2]   # master0
    roles: [master]
  - ips:
    - 10.0.0.5
    - 10.0.0.6
    roles: [node]
  - ips: [10.0.0.9]
    roles: [node]
    ssh: {port: 2222}   # the odd one
---
apiVersion: sealer.cloud/v2
kind: Plugin
metadata: {name: hostname}   # keep me
spec: {type: HOSTNAME, data: "10.0.0.2 m1"}
`;

const ENV = { SSH_PASSWORD: 'x' };
const membership = (text: string, env: NodeJS.ProcessEnv = ENV) => {
  const d = parseClusterfile(text, 'Clusterfile', env);
  return new Map(d.hosts.filter((h) => h.ip).map((h) => [h.ip!, h.roles]));
};

describe('editing a Clusterfile', () => {
  test('join adds IPs to the group of that role with no ssh of its own, and keeps comments, layout and other documents', () => {
    const out = addHosts(HAND_WRITTEN, 'Clusterfile', { role: 'node', ips: ['10.0.0.7'] }, membership(HAND_WRITTEN));
    // Byte for byte but for the spacing before a line's comment, which the YAML library writes as one space.
    const oneSpace = (t: string) => t.replace(/ +#/g, ' #');
    expect(out).toBe(oneSpace(HAND_WRITTEN).replace('    - 10.0.0.6\n', '    - 10.0.0.6\n    - 10.0.0.7\n'));
    const m = addHosts(out, 'Clusterfile', { role: 'master', ips: ['10.0.0.3', '10.0.0.4'] }, membership(out));
    expect(m).toContain('  - ips: [10.0.0.2, 10.0.0.3, 10.0.0.4] # master0\n');
    expect(m).toContain('# the lab in room 2\n');
    expect(m).toContain('# from the vault');
    expect(m).toContain('metadata: {name: hostname} # keep me');
    expect([...membership(m).keys()].sort()).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.0.7', '10.0.0.9']);
    expect(parseClusterfile(m, 'Clusterfile', ENV).plugins.map((p) => p.name)).toEqual(['hostname']);
  });

  test('a role with no group yet gets one, in the style of its neighbours', () => {
    const flow = 'apiVersion: cloudimage.io/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  image: x:v1\n  hosts:\n    - {ips: [10.0.0.2], roles: [master]}\n';
    const out = addHosts(flow, 'Clusterfile', { role: 'node', ips: ['10.0.0.3', '10.0.0.4'] }, membership(flow));
    expect(out).toBe(flow + '    - {ips: [10.0.0.3, 10.0.0.4], roles: [node]}\n');
  });

  test('an IP already in the cluster is refused, naming it and its role', () => {
    const e = usage(() => addHosts(HAND_WRITTEN, 'Clusterfile', { role: 'master', ips: ['10.0.0.9'] }, membership(HAND_WRITTEN)));
    expect(e.message).toBe('10.0.0.9 is already in cluster demo (as node)');
    expect(e.hint).toContain('ci state list -f Clusterfile');
  });

  test('delete takes IPs out; a group left empty goes; the rest stays as written', () => {
    const out = removeHosts(HAND_WRITTEN, 'Clusterfile', { role: 'node', ips: ['10.0.0.9', '10.0.0.5'] }, membership(HAND_WRITTEN));
    expect(out).not.toContain('the odd one');
    expect(out).not.toContain('10.0.0.5');
    expect([...membership(out).keys()]).toEqual(['10.0.0.2', '10.0.0.6']);
    expect(out).toContain('# from the vault');
    expect(out).toContain('metadata: {name: hostname} # keep me');
  });

  test('delete refuses an IP not in the cluster, one of the other role, and taking the last master', () => {
    const m = membership(HAND_WRITTEN);
    expect(usage(() => removeHosts(HAND_WRITTEN, 'Clusterfile', { role: 'node', ips: ['10.0.0.8'] }, m)).message).toBe('10.0.0.8 is not in cluster demo');
    const other = usage(() => removeHosts(HAND_WRITTEN, 'Clusterfile', { role: 'master', ips: ['10.0.0.5'] }, m));
    expect(other.message).toBe('10.0.0.5 is a node of cluster demo, not a master');
    expect(other.hint).toBe('delete it with -n');
    const last = usage(() => removeHosts(HAND_WRITTEN, 'Clusterfile', { role: 'master', ips: ['10.0.0.2'] }, m));
    expect(last.message).toBe('that would leave cluster demo without a master');
    expect(last.hint).toContain('ci delete --all --name demo');
  });

  test('LOCAL counts: join raises the count, delete lowers it and drops a group at zero', () => {
    const text = runClusterfileText({ name: 'lab', image: 'x:v1', provider: 'LOCAL', masters: 1, nodes: 0 });
    const keys = (t: string) => parseClusterfile(t, 'Clusterfile', {}).hosts.map((h) => h.key);
    const joined = addHosts(addHosts(text, 'Clusterfile', { role: 'node', count: 2 }, new Map()), 'Clusterfile', { role: 'master', count: 2 }, new Map());
    expect(keys(joined)).toEqual(['lab-master-1', 'lab-master-2', 'lab-master-3', 'lab-node-1', 'lab-node-2']);
    const fewer = removeHosts(joined, 'Clusterfile', { role: 'node', count: 1 }, new Map());
    expect(keys(fewer)).toEqual(['lab-master-1', 'lab-master-2', 'lab-master-3', 'lab-node-1']);
    const noNodes = removeHosts(fewer, 'Clusterfile', { role: 'node', count: 1 }, new Map());
    expect(noNodes).not.toContain('node');
    expect(usage(() => removeHosts(noNodes, 'Clusterfile', { role: 'master', count: 4 }, new Map())).message).toBe('cluster lab has 3 masters, fewer than the 4 to delete');
    expect(usage(() => removeHosts(noNodes, 'Clusterfile', { role: 'master', count: 3 }, new Map())).message).toBe('that would leave cluster lab without a master');
  });
});

describe('--env overrides', () => {
  const FILE = `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: c}
spec:
  image: x:v1
  env: [A=file, B=file]
  hosts:
  - {ips: [10.0.0.2], roles: [master], env: [A=group, C=group]}
`;

  test('win over the cluster env and every group env, and change the digest', () => {
    const plain = parseClusterfile(FILE, 'Clusterfile', {});
    const over = parseClusterfile(FILE, 'Clusterfile', {}, { envOverrides: envFlags(['A=cli', 'D=new', 'D=later']) });
    expect(plain.hosts[0].env).toEqual({ A: 'group', B: 'file', C: 'group' });
    expect(over.env).toEqual({ A: 'cli', B: 'file', D: 'later' });
    expect(over.hosts[0].env).toEqual({ A: 'cli', B: 'file', C: 'group', D: 'later' });
    expect(over.digest).not.toBe(plain.digest);
    expect(parseClusterfile(FILE, 'Clusterfile', {}, { envOverrides: {} }).digest).toBe(plain.digest);
  });

  test('values are plain strings, "${" included; a malformed flag is refused without showing its value', () => {
    expect(envFlags(['X=${HOME}=y'])).toEqual({ X: '${HOME}=y' });
    expect(usage(() => envFlags(['A=1', 'novalue'])).message).toBe('--env number 2 has no "="');
    const bad = usage(() => envFlags(['9x=secret-value']));
    expect(bad.message).toBe('--env number 1 has the key "9x", which is not a name');
    expect(bad.message).not.toContain('secret-value');
  });
});

describe('the commands refuse bad input and write nothing', () => {
  const home = tempDir('ci-shortcuts-');
  const env = { CI_HOME: home };
  afterAll(() => removeDir(home));

  test.each([
    [['run', 'x:v1'], /^error: -m is required: the IPs of the masters\nhint: .*--local N/],
    [['run', 'x:v1', '-m', '10.0.0.2-10.0.0.1'], /^error: -m: "10\.0\.0\.2-10\.0\.0\.1" ends before it starts\nhint: write the lower address first: 10\.0\.0\.1-10\.0\.0\.2\n$/],
    [['run', 'x:v1', '-m', '10.0.0.2', '-n', '10.0.0.2'], /^error: 10\.0\.0\.2 is given as a master \(-m\) and as a node \(-n\)/],
    [['run', 'x:v1', '--local', '2', '-m', '1'], /^error: give the masters either as --local N or as -m N, not both/],
    [['run', 'x:v1', '--local', '-p', 'pw'], /^error: --local hosts are made by this machine/],
    [['run', 'x:v1', '--local', 'two'], /^error: --local must be a whole number of at least 1, not "two"/],
    [['run', 'x:v1', '-m', '10.0.0.2', '--port', '70000'], /^error: --port must be a port number from 1 to 65535, not "70000"/],
    [['run', 'x:v1', '-m', '10.0.0.2', '--name', '../etc'], /^error: --name "\.\.\/etc" is not a valid cluster name/],
    [['run', 'x:v1', '-m', '10.0.0.2', '-e', 'oops'], /^error: --env number 1 has no "="/],
    [['join', '-n', '10.0.0.3'], /^error: cluster my-cluster has no Clusterfile at .*clusters\/my-cluster\/Clusterfile\nhint: make the cluster with `ci run IMAGE --name my-cluster -m IPS`/],
    [['join'], /^error: say which hosts to join with -m and\/or -n\n/],
    [['delete', '--all', '-n', '10.0.0.3'], /^error: --all deletes every host: give it without -m and -n/],
    [['apply', '-e', '=x'], /^error: --env number 1 has the key "", which is not a name/],
  ])('ci %j', async (args, stderr) => {
    const r = await runCli(args, { env });
    expect(r.code, r.stderr).toBe(64);
    expect(r.stderr).toMatch(stderr);
    expect(existsSync(join(home, 'clusters'))).toBe(false);
  });

  test('a run whose image is missing writes no Clusterfile', async () => {
    const r = await runCli(['run', 'absent:v1', '-m', '10.0.0.2', '--auto-approve'], { env });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`Clusterfile: ${join(home, 'clusters', 'my-cluster', 'Clusterfile')} (written once the plan is approved)\n`);
    expect(r.stderr).toMatch(/^error: image absent:v1 is not in the local store/);
    expect(existsSync(join(home, 'clusters', 'my-cluster', 'Clusterfile'))).toBe(false);
  });
});

describe('putting a new Clusterfile text in place', () => {
  const dir = tempDir('ci-shortcuts-write-');
  afterAll(() => removeDir(dir));

  test('a new file is 0600 in a 0700 directory; an existing one keeps its mode', async () => {
    const path = join(dir, 'clusters', 'c', 'Clusterfile');
    await replaceClusterfileText(path, undefined, 'a\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'clusters', 'c')).mode & 0o777).toBe(0o700);
    const own = join(dir, 'Clusterfile');
    writeFileSync(own, 'b\n', { mode: 0o644 });
    chmodSync(own, 0o644);
    await replaceClusterfileText(own, 'b\n', 'c\n');
    expect(readFileSync(own, 'utf8')).toBe('c\n');
    expect(statSync(own).mode & 0o777).toBe(0o644);
  });

  test('a file changed since it was read is not overwritten', async () => {
    const path = join(dir, 'Clusterfile.raced');
    writeFileSync(path, 'joined by another command\n');
    await expect(replaceClusterfileText(path, 'as read\n', 'edited\n')).rejects.toThrow(ClusterfileError);
    await expect(replaceClusterfileText(join(dir, 'made-meanwhile'), undefined, 'x').then(() => replaceClusterfileText(join(dir, 'made-meanwhile'), undefined, 'y'))).rejects.toThrow(/changed while this command waited/);
    expect(readFileSync(path, 'utf8')).toBe('joined by another command\n');
    expect(readFileSync(join(dir, 'made-meanwhile'), 'utf8')).toBe('x');
  });
});
