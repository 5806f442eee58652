import { describe, expect, test, vi } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseClusterfile, loadClusterfile, ClusterfileInvalidError, clusterfileJsonSchema } from '../engine/clusterfile/index.js';
import { ClusterfileError } from '../engine/kernel/errors.js';
import { redact } from '../engine/kernel/redact.js';

const SEALER = `apiVersion: sealer.cloud/v2
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  provider: BAREMETAL
  ssh: {user: root, passwd: "\${SSH_PASSWORD}", pk: ~/.ssh/id_ed25519, pkPasswd: "", port: 22}
  env: [ETCD_QUOTA=2147483648]
  cmd_args: [ETCD_ARGS=--foo]
  hosts:
  - {ips: [10.0.0.5], roles: [node], labels: {zone: a}}
  - {ips: [10.0.0.2, 10.0.0.3, 10.0.0.4], roles: [master], ssh: {port: 2222}, env: [ZONE=a]}
---
apiVersion: sealer.cloud/v2
kind: Plugin
metadata: {name: hostname}
spec: {type: HOSTNAME, data: "10.0.0.2 m1"}
---
apiVersion: sealer.cloud/v2
kind: Config
metadata: {name: etcd-conf}
spec: {path: etc/etcd.conf, data: "quota: 1"}
`;
const ENV = { SSH_PASSWORD: 'pa55-w0rd-xyz', HOME: '/home/op' };

function issuesOf(text: string, env: NodeJS.ProcessEnv = ENV) {
  try {
    parseClusterfile(text, 'Clusterfile', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ClusterfileInvalidError);
    expect(err).toBeInstanceOf(ClusterfileError);
    return (err as ClusterfileInvalidError).issues.map((i) => ({ at: `${i.location.line}:${i.location.column}`, path: i.path, rule: i.rule, message: i.message }));
  }
  throw new Error('expected the Clusterfile to be refused');
}

const edit = (from: string, to: string) => {
  expect(SEALER).toContain(from);
  return SEALER.replace(from, to);
};

describe('Clusterfile', () => {
  test('a sealer v2 file parses as it is, normalised', () => {
    const c = parseClusterfile(SEALER, 'Clusterfile', ENV);
    expect(c.name).toBe('demo');
    expect(c.provider).toBe('BAREMETAL');
    expect(c.hosts.map((h) => h.key)).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
    expect(c.hosts[0]).toMatchObject({
      ip: '10.0.0.2',
      roles: ['master'],
      env: { ETCD_QUOTA: '2147483648', ZONE: 'a' },
      ssh: { user: 'root', port: 2222, password: 'pa55-w0rd-xyz', privateKeyPath: '/home/op/.ssh/id_ed25519' },
    });
    expect(c.hosts[0].ssh.passphrase).toBeUndefined();
    expect(c.hosts[3].ssh.port).toBe(22);
    expect(c.plugins).toEqual([{ apiVersion: 'sealer.cloud/v2', kind: 'Plugin', name: 'hostname', spec: { type: 'HOSTNAME', data: '10.0.0.2 m1' } }]);
    expect(c.configs[0].name).toBe('etcd-conf');
    expect(c.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    // Secrets are registered and kept out of the digest.
    expect(redact('pw=pa55-w0rd-xyz')).toBe('pw=******');
    const other = parseClusterfile(SEALER, 'Clusterfile', { ...ENV, SSH_PASSWORD: 'another-secret' });
    expect(other.digest).toBe(c.digest);
  });

  test('cloudimage.io/v1 has the same shape; LOCAL groups use count and get stable names', () => {
    const c = parseClusterfile(
      `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: lab}
spec:
  image: etcd-example:v1
  provider: LOCAL
  local: {kind: systemd}
  hosts:
  - {count: 2, roles: [master]}
  - {count: 1, roles: [node], kind: light}
  - {count: 2, roles: [node]}
`,
      'Clusterfile',
      {},
    );
    expect(c.hosts.map((h) => [h.key, h.make?.spec.kind])).toEqual([
      ['lab-master-1', 'systemd'],
      ['lab-master-2', 'systemd'],
      ['lab-node-1', 'light'],
      ['lab-node2-1', 'systemd'],
      ['lab-node2-2', 'systemd'],
    ]);
    expect(c.hosts[0].ip).toBeUndefined();
  });

  test('unknown fields are errors at the key, with file:line:column and dot path', () => {
    const err = issuesOf(edit('  cmd_args: [ETCD_ARGS=--foo]', '  cmd_args: [ETCD_ARGS=--foo]\n  imagee: typo'));
    expect(err).toEqual([{ at: '10:3', path: 'spec.imagee', rule: 'schema', message: 'unknown field "imagee": remove it or check its spelling' }]);
  });

  test('a key that is not a plain word is not quoted: it may be a password whose ":" is missing', () => {
    expect(issuesOf(edit('ssh: {user: root, passwd: "${SSH_PASSWORD}"', 'ssh: {user: root, passwd pa55-w0rd-xyz'))).toEqual([
      { at: '7:21', path: 'spec.ssh.<key>', rule: 'schema', message: 'unknown field, its name not shown as it is not a plain word (is a ":" missing?): remove it or check its spelling' },
    ]);
    expect(issuesOf(edit('labels: {zone: a}', 'labels: {zone: a, "pa55 w0rd": 1}'))).toEqual([
      { at: '11:69', path: 'spec.hosts[0].labels.<key>', rule: 'schema', message: 'must be a string, not a number' },
    ]);
  });

  test('wrong types and enums name the field', () => {
    expect(issuesOf(edit('provider: BAREMETAL', 'provider: CLOUD'))).toEqual([
      { at: '6:13', path: 'spec.provider', rule: 'schema', message: 'must be one of "BAREMETAL", "LOCAL", "ALI_CLOUD"' },
    ]);
    expect(issuesOf(edit('roles: [node], labels', 'roles: node, labels'))[0]).toMatchObject({ at: '11:30', path: 'spec.hosts[0].roles', message: 'must be a list, not a string' });
    expect(issuesOf(edit('  image: etcd-example:v1\n', ''))[0]).toMatchObject({ path: 'spec.image', message: 'is required', at: '5:3' });
  });

  test('semantic rules are reported together, each located', () => {
    const text = edit('ips: [10.0.0.5], roles: [node]', 'ips: [10.0.0.3, 10.0.0.300], roles: [node]');
    const issues = issuesOf(text);
    expect(issues).toEqual([
      { at: '11:22', path: 'spec.hosts[0].ips[1]', rule: 'bad-ip', message: '"10.0.0.300" is not a valid IPv4 or IPv6 address' },
      { at: '12:22', path: 'spec.hosts[1].ips[1]', rule: 'duplicate-ip', message: '10.0.0.3 is listed twice (first at spec.hosts[0].ips[0]): list each host once' },
    ]);
    try {
      parseClusterfile(text, 'Clusterfile', ENV);
    } catch (err) {
      const e = err as ClusterfileInvalidError;
      expect(e.message).toMatch(/^Clusterfile:11:22: spec\.hosts\[0\]\.ips\[1\]: "10\.0\.0\.300" is not a valid/);
      expect(e.message).toContain('\nClusterfile:12:22: spec.hosts[1].ips[1]: 10.0.0.3 is listed twice');
      expect(e.message).not.toContain('pa55-w0rd-xyz');
    }
  });

  test('no master, missing image, count with ips, count on BAREMETAL, bad env', () => {
    expect(issuesOf(edit('roles: [master]', 'roles: [etcd]')).map((i) => i.rule)).toEqual(['no-master']);
    expect(issuesOf(edit('image: etcd-example:v1', 'image: ""'))).toEqual([
      { at: '5:10', path: 'spec.image', rule: 'missing-image', message: 'is empty: name the CloudImage to run, e.g. etcd-example:v1' },
    ]);
    expect(issuesOf(edit('{ips: [10.0.0.5], roles', '{ips: [10.0.0.5], count: 2, roles')).map((i) => [i.rule, i.path, i.at])).toEqual([
      ['count-with-ips', 'spec.hosts[0].count', '11:23'],
    ]);
    expect(issuesOf(edit('{ips: [10.0.0.5], roles', '{count: 2, roles')).map((i) => i.rule)).toEqual(['hosts-for-provider']);
    expect(issuesOf(edit('env: [ZONE=a]', 'env: [ZONE]')).map((i) => [i.rule, i.path])).toEqual([['bad-env', 'spec.hosts[1].env[0]']]);
    expect(issuesOf(edit('metadata: {name: demo}', 'metadata: {name: Demo_1}')).map((i) => i.rule)).toEqual(['cluster-name']);
  });

  test('an unset variable is an error naming it; the secret never appears in errors', () => {
    expect(issuesOf(SEALER, { HOME: '/h' })).toEqual([
      { at: '7:29', path: 'spec.ssh.passwd', rule: 'unset-variable', message: 'environment variable SSH_PASSWORD is not set: export it or remove ${SSH_PASSWORD}' },
    ]);
    const bad = edit('image: etcd-example:v1', 'image: ""');
    try {
      parseClusterfile(bad, 'Clusterfile', ENV);
      expect.unreachable();
    } catch (err) {
      expect(String((err as Error).message)).not.toContain('pa55-w0rd-xyz');
    }
  });

  test('YAML syntax errors carry a position; a file without a Cluster is refused', () => {
    const y = issuesOf('apiVersion: cloudimage.io/v1\nkind: Cluster\nmetadata: {name: demo\nspec: {}\n');
    expect(y[0].rule).toBe('yaml');
    expect(y[0].at).toMatch(/^\d+:\d+$/);
    expect(issuesOf('apiVersion: sealer.io/v1\nkind: Plugin\nmetadata: {name: p}\nspec: {type: SHELL, action: PreInit, data: "true"}\n')).toEqual([
      { at: '1:1', path: '(document)', rule: 'one-cluster', message: 'no document of kind Cluster' },
    ]);
    expect(issuesOf(SEALER + '---\n' + SEALER.split('---')[0]).map((i) => i.rule)).toEqual(['one-cluster']);
  });

  test('anchors, aliases and merge keys are refused where they stand, without their values', () => {
    const shared = edit('  ssh: {user: root, passwd: "${SSH_PASSWORD}"', '  ssh: {user: root, passwd: &pw "${SSH_PASSWORD}"').replace(
      'ssh: {port: 2222}',
      'ssh: {port: 2222, passwd: *pw}',
    );
    expect(issuesOf(shared)).toEqual([
      { at: '7:29', path: 'spec.ssh.passwd', rule: 'yaml-anchor', message: expect.stringMatching(/^YAML anchors \(&name\) are not allowed .*\$\{VAR\}/) },
      { at: '12:86', path: 'spec.hosts[1].ssh.passwd', rule: 'yaml-alias', message: expect.stringMatching(/^YAML aliases \(\*name\) are not allowed/) },
    ]);
    const block = `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  ssh: &creds
    passwd: pa55-w0rd-xyz
  hosts:
  - ips: [10.0.0.2]
    roles: [master]
    ssh:
      <<: *creds
      port: 2222
  - {ips: [10.0.0.3], roles: [node], ssh: *creds}
`;
    expect(issuesOf(block)).toEqual([
      { at: '6:8', path: 'spec.ssh', rule: 'yaml-anchor', message: expect.any(String) },
      { at: '12:7', path: 'spec.hosts[0].ssh.<<', rule: 'yaml-merge-key', message: 'YAML merge keys (<<) are not allowed in a Clusterfile: write the fields out' },
      { at: '14:43', path: 'spec.hosts[1].ssh', rule: 'yaml-alias', message: expect.any(String) },
    ]);
    // An alias or a mapping used as a key is refused too: either would put a value where a field name is shown.
    const keys = edit('  cmd_args: [ETCD_ARGS=--foo]', '  cmd_args: [&k pa55-w0rd-xyz]\n  labels: {*k : 1, ? {p: pa55-w0rd-xyz} : 2}');
    expect(issuesOf(keys).map((i) => [i.at, i.rule, i.path])).toEqual([
      ['9:14', 'yaml-anchor', 'spec.cmd_args[0]'],
      ['10:12', 'yaml-alias', 'spec.labels'],
      ['10:22', 'yaml-key', 'spec.labels'],
    ]);
    for (const text of [shared, block, keys]) {
      try {
        parseClusterfile(text, 'Clusterfile', ENV);
        expect.unreachable();
      } catch (err) {
        expect((err as Error).message).not.toContain('pa55-w0rd-xyz');
        expect((err as Error).message).not.toContain('SSH_PASSWORD');
      }
    }
  });

  test('an alias bomb is refused from its syntax tree, never expanded; the list of problems stays short', () => {
    // 10 levels of 10 aliases: expanded, 10^10 strings. 11 anchors and 100 aliases in all.
    const lines = ['apiVersion: cloudimage.io/v1', 'kind: Cluster', 'metadata: {name: demo}', 'spec:', '  image: etcd-example:v1', '  hosts: []', '  appNames: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    const bomb = Array.from({ length: 10 }, (_, i) => `  l${i + 1}: &l${i + 1} [${Array(10).fill(`*l${i}`).join(', ')}]`);
    const issues = issuesOf([...lines, ...bomb].join('\n') + '\n');
    expect(issues.slice(0, 3)).toEqual([
      { at: '7:13', path: 'spec.appNames', rule: 'yaml-anchor', message: expect.any(String) },
      { at: '8:7', path: 'spec.l1', rule: 'yaml-anchor', message: expect.any(String) },
      { at: '8:12', path: 'spec.l1[0]', rule: 'yaml-alias', message: expect.any(String) },
    ]);
    expect(issues).toHaveLength(11);
    expect(issues[10]).toMatchObject({ path: '(document)', message: 'and 101 more anchors, aliases or merge keys' });
  });

  test('YAML syntax errors are told in our own words: no text of the file appears in them', () => {
    const warnings = vi.spyOn(process, 'emitWarning');
    try {
      const cases = [
        edit('pkPasswd: ""', 'pkPasswd: "\\Upa55w0rd"'), // a bad escape the library would quote
        edit('  cmd_args: [ETCD_ARGS=--foo]', '  cmd_args: !!omap [{pa55-w0rd-xyz: 1}, {pa55-w0rd-xyz: 2}]'), // quotes the key
        edit('  cmd_args: [ETCD_ARGS=--foo]', '  cmd_args: !<pa55-w0rd-xyz> [x]'), // an unknown tag is refused, unquoted
        edit('  cmd_args: [ETCD_ARGS=--foo]', '  labels: {? [pa55-w0rd-xyz] : 1}'), // the library would warn, quoting the key
      ];
      for (const text of cases) {
        let message = '';
        try {
          parseClusterfile(text, 'Clusterfile', ENV);
        } catch (err) {
          message = (err as Error).message;
        }
        expect(message).toMatch(/^Clusterfile:\d+:\d+: /);
        expect(message).not.toMatch(/pa55/);
      }
      expect(issuesOf(cases[0])).toEqual([{ at: '7:82', path: '(yaml)', rule: 'yaml', message: expect.stringMatching(/^invalid YAML: an invalid escape sequence/) }]);
      expect(warnings).not.toHaveBeenCalled();
    } finally {
      warnings.mockRestore();
    }
  });

  test('spec.image must be an image reference, checked by the one reference parser', () => {
    expect(issuesOf(edit('image: etcd-example:v1', 'image: Etcd Example:v1'))).toEqual([
      {
        at: '5:10',
        path: 'spec.image',
        rule: 'bad-image',
        message: '"Etcd Example:v1" is not a valid image reference (empty or contains white space): write [registry/]name:tag, e.g. etcd-example:v1',
      },
    ]);
    expect(issuesOf(edit('image: etcd-example:v1', 'image: "repo:bad tag!"')).map((i) => [i.at, i.rule])).toEqual([['5:10', 'bad-image']]);
    expect(issuesOf(edit('image: etcd-example:v1', 'image: repo:-v1'))[0].message).toContain('tag "-v1" is not valid');
    expect(issuesOf(edit('image: etcd-example:v1', 'image: Etcd:v1'))[0].message).toContain('name component "Etcd" must be lower-case');
    for (const ok of ['registry.example.com:5000/team/etcd:v1', 'etcd-example', `etcd@sha256:${'a'.repeat(64)}`]) {
      expect(parseClusterfile(edit('image: etcd-example:v1', `image: ${ok}`), 'Clusterfile', ENV).image).toBe(ok);
    }
  });

  test('loadClusterfile reports a missing file clearly', async () => {
    await expect(loadClusterfile('/nonexistent/Clusterfile')).rejects.toThrow(/\/nonexistent\/Clusterfile: cannot read the Clusterfile: no such file/);
  });

  test('the committed JSON Schema matches the zod schema', () => {
    const path = join(import.meta.dirname, '..', 'schema', 'clusterfile.schema.json');
    const generated = JSON.stringify(clusterfileJsonSchema(), null, 2) + '\n';
    if (process.env.CI_ACCEPT === '1') writeFileSync(path, generated);
    expect(readFileSync(path, 'utf8')).toBe(generated);
  });
});

describe('provider ALI_CLOUD in the Clusterfile', () => {
  const doc = (spec: string, hosts = '  - {count: 1, roles: [master]}\n  - {count: 2, roles: [node], dataDisks: [200]}\n') =>
    `apiVersion: cloudimage.io/v1\nkind: Cluster\nmetadata: {name: demo}\nspec:\n  image: etcd-example:v1\n  provider: ALI_CLOUD\n${spec}  hosts:\n${hosts}`;
  const CLOUD = '  cloud: {regionId: cn-hangzhou, zoneId: cn-hangzhou-h, imageId: debian_12_x64, instanceType: ecs.g7.xlarge}\n';
  const issues = (text: string) => {
    try {
      parseClusterfile(text, 'Clusterfile', {});
    } catch (err) {
      return (err as ClusterfileInvalidError).issues.map((i) => ({ at: `${i.location.line}:${i.location.column}`, path: i.path, rule: i.rule, message: i.message }));
    }
    return [];
  };

  test('counts become named hosts made in one request per group, with the group\'s instance spec', () => {
    const c = parseClusterfile(doc(CLOUD), 'Clusterfile', {});
    expect(c.provider).toBe('ALI_CLOUD');
    expect(c.makesHosts).toBe(true);
    expect(c.hosts.map((h) => [h.key, h.make?.batch, h.make?.spec.instanceType, h.make?.spec.dataDisks])).toEqual([
      ['demo-master-1', 'demo-master', 'ecs.g7.xlarge', []],
      ['demo-node-1', 'demo-node', 'ecs.g7.xlarge', [200]],
      ['demo-node-2', 'demo-node', 'ecs.g7.xlarge', [200]],
    ]);
    expect(c.providerBlock).toMatchObject({ regionId: 'cn-hangzhou' });
  });

  test('missing settings, a vSwitch outside its VPC, and fields of other providers are located', () => {
    expect(issues(doc(''))).toEqual([{ at: '5:3', path: 'spec', rule: 'cloud-settings', message: 'provider ALI_CLOUD needs spec.cloud: at least regionId, zoneId and imageId' }]);
    expect(issues(doc('  cloud: {regionId: r, zoneId: z, imageId: i}\n', '  - {count: 1, roles: [master]}\n')).map((i) => [i.path, i.message])).toEqual([
      ['spec.hosts[0]', 'no instance type: give instanceType in the group or in spec.cloud'],
    ]);
    expect(issues(doc('  cloud: {regionId: r, zoneId: z, imageId: i, instanceType: t, vpcCidr: 10.0.0.0/16, vswitchCidr: 10.1.0.0/24}\n')).map((i) => [i.path, i.message])).toEqual([
      ['spec.cloud.vswitchCidr', 'the vSwitch range 10.1.0.0/24 is not inside the VPC range 10.0.0.0/16'],
    ]);
    expect(issues(doc(CLOUD, '  - {ips: [10.0.0.2], roles: [master]}\n')).map((i) => [i.path, i.rule, i.message])).toEqual([
      ['spec.hosts[0].ips', 'hosts-for-provider', 'ALI_CLOUD hosts get their addresses when made: give count instead of ips'],
    ]);
    expect(issues(doc(CLOUD, '  - {count: 1, roles: [master], kind: light}\n')).map((i) => [i.path, i.message])).toEqual([['spec.hosts[0].kind', 'kind is only for provider LOCAL: remove it']]);
    expect(issues(doc(CLOUD + '  local: {kind: light}\n')).map((i) => [i.path, i.message])).toEqual([['spec.local', 'local is only for provider LOCAL: remove it']]);
    expect(issues(doc('  cloud: {regionId: r, zoneId: z, imageId: i, instanceType: t, vpcCidr: "10.0.0.0"}\n')).map((i) => [i.path, i.message])).toEqual([
      ['spec.cloud.vpcCidr', 'must be an IPv4 CIDR such as 172.16.0.0/16'],
    ]);
  });

  test('cloud settings of a BAREMETAL cluster are refused by name', () => {
    const text = doc(CLOUD, '  - {ips: [10.0.0.2], roles: [master], instanceType: x}\n').replace('provider: ALI_CLOUD', 'provider: BAREMETAL');
    expect(issues(text).map((i) => [i.path, i.message])).toEqual([
      ['spec.hosts[0].instanceType', 'instanceType is only for provider ALI_CLOUD: remove it'],
      ['spec.cloud', 'cloud is only for provider ALI_CLOUD: remove it'],
    ]);
  });
});
