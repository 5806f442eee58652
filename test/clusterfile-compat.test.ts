import { describe, expect, test } from 'vitest';
import { parseClusterfile, ClusterfileInvalidError } from '../engine/clusterfile/index.js';
import { documentsYaml } from '../engine/clusterfile/documents.js';
import { redact } from '../engine/kernel/redact.js';
import { plan } from '../plans/planner.js';
import { hookEnv } from '../engine/executor/hook-env.js';
import { makeImage, simulate } from './planner.helpers.js';
import type { HookAction } from '../plans/actions.js';

const CLUSTER = `apiVersion: sealer.io/v2
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  ssh: {user: root, passwd: hunter22}
  hosts:
  - {ips: [10.0.0.2], roles: [master]}
  - {ips: [10.0.0.5], roles: [node]}
`;
const ENV = { HOME: '/home/op' };

function issuesOf(text: string, env: NodeJS.ProcessEnv = ENV) {
  try {
    parseClusterfile(text, 'Clusterfile', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ClusterfileInvalidError);
    return (err as ClusterfileInvalidError).issues.map((i) => ({ at: `${i.location.line}:${i.location.column}`, path: i.path, rule: i.rule, message: i.message }));
  }
  throw new Error('expected the Clusterfile to be refused');
}

const KUBEADM = `---
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  ttl: 24h
certificateKey: e6a2eb8581237ab72a4f494f30285ec12a9694d750b9785706a83bfcbbbd2204
nodeRegistration:
  taints:
  - {key: node-role.kubernetes.io/master, effect: NoSchedule}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
networking: {podSubnet: 100.64.0.0/10}
---
apiVersion: v1
kind: Secret
metadata: {name: registry-auth}
stringData: {user: admin, htpasswd: "admin:$apr1$s3cr3tv4lu3"}
---
apiVersion: sealer.io/v2
kind: Application
metadata: {name: mysql}
spec:
  launchApps: [mysql]
  configs:
  - name: mysql
    env: [rootPassword=sup3r-s3cret-db]
`;

describe('sealer Clusterfiles', () => {
  test('sealer.io/v2 is a Cluster apiVersion; Plugins and Configs take every apiVersion sealer used', () => {
    for (const v of ['sealer.io/v2', 'sealer.cloud/v2', 'cloudimage.io/v1']) {
      expect(parseClusterfile(CLUSTER.replace('sealer.io/v2', v), 'Clusterfile', ENV).apiVersion).toBe(v);
    }
    for (const v of ['sealer.aliyun.com/v1alpha1', 'sealer.io/v1', 'sealer.cloud/v2', 'sealer.io/v2', 'cloudimage.io/v1']) {
      const c = parseClusterfile(`${CLUSTER}---\napiVersion: ${v}\nkind: Plugin\nmetadata: {name: p}\nspec: {type: SHELL, action: PreInit, data: "true"}\n---\napiVersion: ${v}\nkind: Config\nmetadata: {name: c}\nspec: {path: etc/x, data: "y"}\n`, 'Clusterfile', ENV);
      expect([c.plugins[0].apiVersion, c.configs[0].apiVersion]).toEqual([v, v]);
    }
    expect(issuesOf(`${CLUSTER}---\napiVersion: example.com/v9\nkind: Plugin\nmetadata: {name: p}\nspec: {type: SHELL, action: PreInit, data: "true"}\n`)).toEqual([
      { at: '11:13', path: 'apiVersion', rule: 'schema', message: expect.stringMatching(/^must be one of "sealer.aliyun.com\/v1alpha1", "sealer.io\/v1"/) },
    ]);
    expect(issuesOf(CLUSTER.replace('sealer.io/v2', 'sealer.io/v3'))[0]).toMatchObject({ at: '1:13', path: 'apiVersion', rule: 'schema' });
  });

  test('empty ssh fields are absent; the status sealer writes back is accepted and read by nothing', () => {
    const c = parseClusterfile(CLUSTER.replace('ssh: {user: root, passwd: hunter22}', 'ssh:\n    user: root\n    passwd:\n    pk:\n    port:') + 'status: {}\n', 'Clusterfile', ENV);
    expect(c.hosts[0].ssh).toEqual({ user: 'root', port: 22 });
    const plain = parseClusterfile(CLUSTER.replace('ssh: {user: root, passwd: hunter22}', 'ssh: {user: root}'), 'Clusterfile', ENV);
    expect(c.digest).toBe(plain.digest);
    const status = parseClusterfile(CLUSTER + 'status: {phase: ClusterSuccess}\n', 'Clusterfile', ENV);
    expect(status.digest).toBe(parseClusterfile(CLUSTER, 'Clusterfile', ENV).digest);
  });

  test('a sealer v1 Clusterfile gets one message saying what to write instead', () => {
    const v1 = `apiVersion: sealer.aliyun.com/v1alpha1
kind: Cluster
metadata: {name: my-cluster}
spec:
  image: kubernetes:v1.19.8
  provider: BAREMETAL
  ssh: {user: root, passwd: xxx}
  network: {podCIDR: 100.64.0.0/10, svcCIDR: 10.96.0.0/22}
  certSANS: [aliyun-inc.com]
  masters: {ipList: [192.168.0.2]}
  nodes: {ipList: [192.168.0.3]}
`;
    const issues = issuesOf(v1);
    expect(issues).toEqual([{ at: '1:13', path: 'apiVersion', rule: 'clusterfile-v1', message: expect.stringContaining('sealer v1 Clusterfile') }]);
    expect(issues[0].message).toMatch(/apiVersion sealer\.io\/v2, with spec\.hosts/);
    // The same shape under a v2 apiVersion is told the same way, not as nine unknown fields.
    expect(issuesOf(v1.replace('sealer.aliyun.com/v1alpha1', 'sealer.io/v2')).map((i) => i.rule)).toEqual(['clusterfile-v1']);
    // A v2 file under the old apiVersion is told by the apiVersion alone.
    expect(issuesOf(CLUSTER.replace('sealer.io/v2', 'sealer.aliyun.com/v1alpha1')).map((i) => [i.path, i.rule])).toEqual([['apiVersion', 'schema']]);
  });

  test('${VAR} is not expanded in a Plugin script: the shell on the host expands it', () => {
    const plugin = `${CLUSTER}---
apiVersion: sealer.io/v1
kind: Plugin
metadata: {name: "\${PLUGIN_NAME}"}
spec:
  type: SHELL
  action: pre-init-host
  data: |
    echo "\${HOME}" "\${UNSET_ON_THIS_MACHINE}" > /tmp/x
`;
    const c = parseClusterfile(plugin, 'Clusterfile', { ...ENV, PLUGIN_NAME: 'disks' });
    expect(c.plugins[0].spec.data).toBe('echo "${HOME}" "${UNSET_ON_THIS_MACHINE}" > /tmp/x\n');
    expect(c.plugins[0].name).toBe('disks'); // the rest of the document is expanded as everywhere else
    expect(issuesOf(plugin)).toEqual([{ at: '13:18', path: 'metadata.name', rule: 'unset-variable', message: expect.stringContaining('PLUGIN_NAME') }]);
  });

  test('a key given several times is a list, as sealer reads spec.env; a host group replaces a key whole', () => {
    const text = CLUSTER.replace('  hosts:', '  env: [CertSANs=a.example, CertSANs=10.0.0.9, Mode=ha, Single=x]\n  hosts:').replace(
      '{ips: [10.0.0.5], roles: [node]}',
      '{ips: [10.0.0.5], roles: [node], env: [Mode=one, Mode=two, CertSANs=node.example]}',
    );
    const c = parseClusterfile(text, 'Clusterfile', ENV);
    expect(c.env).toEqual({ CertSANs: 'a.example 10.0.0.9', Mode: 'ha', Single: 'x' });
    expect(c.envLists).toEqual({ CertSANs: ['a.example', '10.0.0.9'] });
    expect(c.hosts[0].envLists).toEqual({ CertSANs: ['a.example', '10.0.0.9'] });
    expect(c.hosts[1].env).toEqual({ CertSANs: 'node.example', Mode: 'one two', Single: 'x' });
    expect(c.hosts[1].envLists).toEqual({ Mode: ['one', 'two'] });
    // The list's order is part of what the hooks get.
    const swapped = parseClusterfile(text.replace('CertSANs=a.example, CertSANs=10.0.0.9', 'CertSANs=10.0.0.9, CertSANs=a.example'), 'Clusterfile', ENV);
    expect(swapped.digest).not.toBe(c.digest);
  });

  test('registry and containerRuntime reach the hooks as the env sealer derives; cmd_args reach the CMDs', () => {
    const text = CLUSTER.replace(
      '  hosts:',
      `  containerRuntime: {type: containerd}
  registry:
    localRegistry: {domain: sea.hub, port: 5000, ha: false, insecure: true, cert: {subjectAltName: {dnsNames: [reg.example], ips: [10.0.0.9]}}}
  cmd_args: [Replicas=3]
  env: [RegistryPort=5443]
  hosts:`,
    );
    const c = parseClusterfile(text, 'Clusterfile', ENV);
    expect(c.env).toEqual({
      ContainerRuntime: 'containerd',
      LocalRegistryDomain: 'sea.hub',
      LocalRegistryPort: '5000',
      LocalRegistryURL: 'sea.hub:5000',
      RegistryDomain: 'sea.hub',
      RegistryPort: '5443', // spec.env overrides what is derived
      RegistryURL: 'sea.hub:5000',
      LocalRegistryHA: 'false',
      LocalRegistryInsecure: 'true',
      LocalRegistryCertSANs: 'reg.example 10.0.0.9',
    });
    expect(c.cmdArgs).toEqual({ Replicas: '3' });
    const ext = parseClusterfile(text.replace('  cmd_args:', '    externalRegistry: {domain: harbor.example, port: 443}\n  cmd_args:'), 'Clusterfile', ENV);
    expect(ext.env).toMatchObject({ ExternalRegistryURL: 'harbor.example:443', RegistryDomain: 'harbor.example', RegistryURL: 'harbor.example:443' });

    const image = makeImage('v1', ['base'], ['echo $Replicas']);
    const p = plan({ desired: c, image });
    const state = simulate(p, c, undefined);
    const cmd = p.actions.find((a) => a.kind === 'run-cmd')!;
    const hook = p.actions.find((a) => a.kind === 'hook')!;
    expect(hookEnv({ plan: p, desired: c, state }, cmd as typeof cmd & { host: string })).toMatchObject({ Replicas: '3', ContainerRuntime: 'containerd' });
    expect(hookEnv({ plan: p, desired: c, state }, hook as HookAction).Replicas).toBeUndefined();
    expect(issuesOf(text.replace('cmd_args: [Replicas=3]', 'cmd_args: [--replicas]'))).toEqual([
      { at: '10:14', path: 'spec.cmd_args[0]', rule: 'bad-env', message: 'entry "--replicas" must be KEY=VALUE with a name of letters, digits and _' },
    ]);
  });

  test('fields cloudimage cannot honour are refused by name, each at its line, with what to do', () => {
    const text = CLUSTER.replace('metadata: {name: demo}', 'metadata: {name: demo, namespace: x, labels: {a: b}, annotations: {c: d}, creationTimestamp: null}').replace(
      '  hosts:',
      `  dataRoot: /data/sealer
  cmd: [echo hi]
  appNames: [mysql]
  apps: []
  registry:
    localRegistry: {domain: sea.hub, username: admin, password: r3g-s3cret}
  hosts:`,
    );
    const issues = issuesOf(text);
    expect(issues.map((i) => [i.at, i.path, i.rule])).toEqual([
      ['7:3', 'spec.dataRoot', 'unsupported-field'],
      ['8:3', 'spec.cmd', 'unsupported-field'],
      ['9:3', 'spec.appNames', 'unsupported-field'],
      ['10:3', 'spec.apps', 'unsupported-field'],
      ['3:24', 'metadata.namespace', 'unsupported-field'],
      ['3:38', 'metadata.labels', 'unsupported-field'],
      ['3:54', 'metadata.annotations', 'unsupported-field'],
      ['12:38', 'spec.registry.localRegistry.username', 'unsupported-field'],
      ['12:55', 'spec.registry.localRegistry.password', 'unsupported-field'],
    ]);
    expect(issues[0].message).toContain('/var/lib/cloudimage/clusters/demo');
    expect(issues[1].message).toMatch(/CMDS/);
    expect(issues[2].message).toMatch(/LAUNCH/);
    const err = (() => {
      try {
        parseClusterfile(text, 'Clusterfile', ENV);
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(err).not.toContain('r3g-s3cret');
  });

  test('hostAliases, labels and taints are part of the desired cluster and its digest', () => {
    const base = parseClusterfile(CLUSTER, 'Clusterfile', ENV);
    const c = parseClusterfile(
      CLUSTER.replace('  hosts:', '  hostAliases: [{ip: 10.0.0.9, hostnames: [reg.local]}]\n  hosts:').replace(
        '{ips: [10.0.0.5], roles: [node]}',
        '{ips: [10.0.0.5], roles: [node], labels: {disk: ssd}, taints: ["dedicated=db:NoSchedule"]}',
      ),
      'Clusterfile',
      ENV,
    );
    expect(c.hostAliases).toEqual([{ ip: '10.0.0.9', hostnames: ['reg.local'] }]);
    expect(c.hosts[1]).toMatchObject({ labels: { disk: 'ssd' }, taints: ['dedicated=db:NoSchedule'] });
    expect(c.digest).not.toBe(base.digest);
  });
});

describe('documents of other kinds', () => {
  test('are kept in file order, named, and handed to hooks with their secrets masked', () => {
    const c = parseClusterfile(CLUSTER + KUBEADM, 'Clusterfile', ENV);
    expect(c.documents.map((d) => [d.apiVersion, d.kind, d.name])).toEqual([
      ['kubeadm.k8s.io/v1beta3', 'InitConfiguration', undefined],
      ['kubeadm.k8s.io/v1beta3', 'ClusterConfiguration', undefined],
      ['v1', 'Secret', 'registry-auth'],
      ['sealer.io/v2', 'Application', 'mysql'],
    ]);
    const yaml = documentsYaml(c.documents);
    for (const secret of ['abcdef.0123456789abcdef', 'e6a2eb8581237ab72a4f494f30285ec12a9694d750b9785706a83bfcbbbd2204', 'admin:$apr1$s3cr3tv4lu3']) {
      expect(yaml).not.toContain(secret);
      expect(redact(`x ${secret} y`)).toBe('x ****** y'); // registered: no log or error shows it either
    }
    expect(yaml).toContain('podSubnet: 100.64.0.0/10');
    expect(yaml).toContain('key: node-role.kubernetes.io/master'); // a taint's key is not a secret
    expect(yaml).toMatch(/stringData:\n {2}user: "\*\*\*\*\*\*"\n {2}htpasswd: "\*\*\*\*\*\*"/);
    expect(yaml).toContain('certificateKey: "******"');
    expect(yaml.split('---\n')).toHaveLength(4);
    // An env entry in an Application is a value, not a field named like a secret: it is masked only as registered.
    expect(yaml).toContain('rootPassword=sup3r-s3cret-db');
  });

  test('a document without apiVersion or kind is refused at its line', () => {
    expect(issuesOf(`${CLUSTER}---\nkind: ClusterConfiguration\nnetworking: {}\n`)).toEqual([
      { at: '11:1', path: 'apiVersion', rule: 'schema', message: expect.stringContaining('needs an apiVersion and a kind') },
    ]);
    expect(issuesOf(`${CLUSTER}---\napiVersion: v1\nnetworking: {}\n`)[0]).toMatchObject({ at: '11:1', path: 'kind' });
  });

  test('the plan names them; a change re-runs reconfigure on current members, a masked secret alone does not', () => {
    const image = makeImage('v1', ['base']);
    const d1 = parseClusterfile(CLUSTER + KUBEADM, 'Clusterfile', ENV);
    const p1 = plan({ desired: d1, image });
    expect(p1.documents).toEqual({ names: ['InitConfiguration', 'ClusterConfiguration', 'Secret/registry-auth', 'Application/mysql'], digest: d1.documentsDigest });
    expect(p1.actions.filter((a) => a.kind === 'hook' && a.members).every((a) => (a as HookAction).documents === d1.documentsDigest)).toBe(true);
    const s1 = simulate(p1, d1, undefined);
    expect(s1.hosts['10.0.0.2'].documents).toBe(d1.documentsDigest);
    expect(plan({ desired: d1, image, state: s1 }).actions).toEqual([]);

    const d2 = parseClusterfile(CLUSTER + KUBEADM.replace('podSubnet: 100.64.0.0/10', 'podSubnet: 10.244.0.0/16'), 'Clusterfile', ENV);
    expect(d2.digest).not.toBe(d1.digest);
    const p2 = plan({ desired: d2, image, state: s1 });
    expect(p2.actions.map((a) => [a.id, a.reason])).toEqual([
      ['hook:reconfigure:10.0.0.2', 'Clusterfile documents changed'],
      ['hook:reconfigure:10.0.0.5', 'Clusterfile documents changed'],
    ]);
    const s2 = simulate(p2, d2, s1);
    expect(plan({ desired: d2, image, state: s2 }).actions).toEqual([]);

    // Hooks never see the token, so a new token changes neither what they get nor the plan.
    const d3 = parseClusterfile(CLUSTER + KUBEADM.replace('abcdef.0123456789abcdef', 'zyxwvu.0123456789abcdef'), 'Clusterfile', ENV);
    expect(d3.documentsDigest).toBe(d1.documentsDigest);

    // Documents removed: the hosts are told too, and forget them.
    const d4 = parseClusterfile(CLUSTER, 'Clusterfile', ENV);
    const p4 = plan({ desired: d4, image, state: s2 });
    expect(p4.actions.map((a) => a.id)).toEqual(['hook:reconfigure:10.0.0.2', 'hook:reconfigure:10.0.0.5']);
    expect(simulate(p4, d4, s2).hosts['10.0.0.2'].documents).toBeUndefined();
  });

  test('hooks get CI_CLUSTER_DOCUMENTS, in the cluster\'s own directory, only when there are documents', () => {
    const image = makeImage('v1', ['base']);
    const d = parseClusterfile(CLUSTER + KUBEADM, 'Clusterfile', ENV);
    const p = plan({ desired: d, image });
    const state = simulate(p, d, undefined);
    const hook = p.actions.find((a) => a.kind === 'hook')! as HookAction;
    expect(hookEnv({ plan: p, desired: d, state }, hook).CI_CLUSTER_DOCUMENTS).toBe('/var/lib/cloudimage/clusters/demo/documents.yaml');
    const none = parseClusterfile(CLUSTER, 'Clusterfile', ENV);
    expect(hookEnv({ plan: plan({ desired: none, image }), desired: none, state }, hook).CI_CLUSTER_DOCUMENTS).toBeUndefined();
  });
});
