/**
 * Every field a Cluster document accepts either acts (two values give two different desired clusters, and unless
 * it is a secret two different digests), is refused by name at its line, or is one of the few read by nothing on
 * purpose (written back by sealer). A field added to the schema, here or in a provider's block, fails this test
 * until it is wired and listed.
 */
import { describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import type { ZodType } from 'zod';
import { parseClusterfile, ClusterfileInvalidError } from '../engine/clusterfile/index.js';
import { ClusterDocSchema } from '../engine/clusterfile/schema.js';
import type { DesiredCluster } from '../engine/clusterfile/types.js';

type Def = { type: string; innerType?: ZodType; shape?: Record<string, ZodType>; element?: ZodType; options?: ZodType[] };
const def = (s: ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;
const unwrap = (s: ZodType): ZodType => (['optional', 'nullable'].includes(def(s).type) ? unwrap(def(s).innerType!) : s);

/** Dot paths of every field the schema accepts, `[]` standing for a list's items. */
function fields(s: ZodType, path = ''): string[] {
  const d = def(unwrap(s));
  const at = (k: string) => (path ? `${path}.${k}` : k);
  if (d.type === 'object') return Object.entries(d.shape!).flatMap(([k, v]) => fields(v, at(k)));
  if (d.type === 'array' && def(unwrap(d.element!)).type === 'object') return fields(d.element!, `${path}[]`);
  if (d.type === 'union') {
    const obj = d.options!.map(unwrap).find((o) => def(o).type === 'object');
    if (obj) return fields(obj, path);
  }
  return [path];
}

type Base = 'BAREMETAL' | 'LOCAL' | 'ALI_CLOUD' | 'ETCD_STATE';
const BASES: Record<Base, Record<string, unknown>> = {
  BAREMETAL: { apiVersion: 'sealer.io/v2', kind: 'Cluster', metadata: { name: 'demo' }, spec: { image: 'etcd-example:v1', hosts: [{ ips: ['10.0.0.2'], roles: ['master'] }] } },
  LOCAL: { apiVersion: 'cloudimage.io/v1', kind: 'Cluster', metadata: { name: 'demo' }, spec: { image: 'etcd-example:v1', provider: 'LOCAL', hosts: [{ count: 1, roles: ['master'] }] } },
  ETCD_STATE: {
    apiVersion: 'sealer.io/v2',
    kind: 'Cluster',
    metadata: { name: 'demo' },
    spec: { image: 'etcd-example:v1', backend: { type: 'etcd', endpoints: ['http://10.0.0.5:2379'] }, hosts: [{ ips: ['10.0.0.2'], roles: ['master'] }] },
  },
  ALI_CLOUD: {
    apiVersion: 'cloudimage.io/v1',
    kind: 'Cluster',
    metadata: { name: 'demo' },
    spec: { image: 'etcd-example:v1', provider: 'ALI_CLOUD', cloud: { regionId: 'cn-hangzhou', zoneId: 'cn-hangzhou-h', imageId: 'debian_12_x64', instanceType: 'ecs.g7.xlarge' }, hosts: [{ count: 1, roles: ['master'] }] },
  },
};

/** How each field is proven: `acts` with two values (set at the field's path), `refused` with one, `ignored` with why. */
type Proof =
  | {
      acts: [unknown, unknown];
      base?: Base;
      secret?: (d: DesiredCluster) => unknown;
      /** Acts, but not on the plan (where the state is kept): out of the digest, like a secret. */
      beside?: (d: DesiredCluster) => unknown;
      parent?: Record<string, unknown>;
      parents?: [Record<string, unknown>, Record<string, unknown>];
    }
  | { refused: unknown; parent?: Record<string, unknown> }
  | { ignored: string; value: unknown };

const ALI = (a: unknown, b: unknown): Proof => ({ acts: [a, b], base: 'ALI_CLOUD' });
const FIELDS: Record<string, Proof> = {
  apiVersion: { acts: ['sealer.io/v2', 'cloudimage.io/v1'] },
  kind: { ignored: 'selects the document: Cluster is its only value', value: 'Cluster' },
  'metadata.name': { acts: ['demo', 'other'] },
  'metadata.namespace': { refused: 'x' },
  'metadata.labels': { refused: { a: 'b' } },
  'metadata.annotations': { refused: { a: 'b' } },
  'metadata.creationTimestamp': { ignored: 'sealer writes it back; documented in README', value: null },
  'spec.image': { acts: ['etcd-example:v1', 'etcd-example:v2'] },
  'spec.provider': { acts: ['BAREMETAL', 'LOCAL'], parents: [{}, { hosts: [{ count: 1, roles: ['master'] }] }] },
  'spec.local.kind': { acts: ['light', 'systemd'], base: 'LOCAL' },
  'spec.cloud.regionId': ALI('cn-hangzhou', 'cn-beijing'),
  'spec.cloud.zoneId': ALI('cn-hangzhou-h', 'cn-hangzhou-i'),
  'spec.cloud.imageId': ALI('debian_12_x64', 'ubuntu_22_04_x64'),
  'spec.cloud.instanceType': ALI('ecs.g7.xlarge', 'ecs.g7.2xlarge'),
  'spec.cloud.vpcCidr': ALI('172.16.0.0/16', '172.17.0.0/16'),
  'spec.cloud.vswitchCidr': ALI('172.16.0.0/24', '172.16.1.0/24'),
  'spec.cloud.systemDisk': ALI(40, 80),
  'spec.cloud.dataDisks': ALI([100], [200]),
  'spec.cloud.diskCategory': ALI('cloud_essd', 'cloud_ssd'),
  'spec.cloud.internetBandwidth': ALI(0, 10),
  'spec.cloud.allowFrom': ALI('0.0.0.0/0', '10.0.0.0/8'),
  'spec.cloud.endpoint': ALI('ecs.example:443', 'ecs2.example:443'),
  'spec.cloud.vpcEndpoint': ALI('vpc.example:443', 'vpc2.example:443'),
  'spec.cloud.protocol': ALI('https', 'http'),
  'spec.cloud.timeoutSeconds': ALI(30, 60),
  'spec.cloud.maxConcurrentCalls': ALI(4, 8),
  'spec.ssh.user': { acts: ['root', 'ops'] },
  'spec.ssh.passwd': { acts: ['pw-one', 'pw-two'], secret: (d) => d.hosts[0].ssh.password },
  'spec.ssh.pk': { acts: ['/k/one', '/k/two'] },
  'spec.ssh.pkPasswd': { acts: ['pp-one', 'pp-two'], secret: (d) => d.hosts[0].ssh.passphrase },
  'spec.ssh.port': { acts: [22, 2222] },
  'spec.ssh.encrypted': { refused: true },
  'spec.env': { acts: [['A=1'], ['A=2']] },
  'spec.hosts[].roles': { acts: [['master'], ['master', 'etcd']] },
  'spec.hosts[].ssh.user': { acts: ['root', 'ops'] },
  'spec.hosts[].ssh.passwd': { acts: ['pw-one', 'pw-two'], secret: (d) => d.hosts[0].ssh.password },
  'spec.hosts[].ssh.pk': { acts: ['/k/one', '/k/two'] },
  'spec.hosts[].ssh.pkPasswd': { acts: ['pp-one', 'pp-two'], secret: (d) => d.hosts[0].ssh.passphrase },
  'spec.hosts[].ssh.port': { acts: [22, 2222] },
  'spec.hosts[].ssh.encrypted': { refused: true },
  'spec.hosts[].env': { acts: [['A=1'], ['A=2']] },
  'spec.hosts[].labels': { acts: [{ disk: 'ssd' }, { disk: 'hdd' }] },
  'spec.hosts[].taints': { acts: [['a=b:NoSchedule'], ['a=c:NoSchedule']] },
  'spec.hosts[].ips': { acts: [['10.0.0.2'], ['10.0.0.3']] },
  'spec.hosts[].count': { acts: [1, 2], base: 'LOCAL' },
  'spec.hosts[].kind': { acts: ['light', 'systemd'], base: 'LOCAL' },
  'spec.hosts[].instanceType': ALI('ecs.g7.xlarge', 'ecs.g7.2xlarge'),
  'spec.hosts[].systemDisk': ALI(40, 80),
  'spec.hosts[].dataDisks': ALI([100], [200]),
  'spec.cmd_args': { acts: [['A=1'], ['A=2']] },
  'spec.cmd': { refused: ['echo hi'] },
  'spec.appNames': { refused: ['app'] },
  'spec.containerRuntime.type': { acts: ['docker', 'containerd'] },
  'spec.hostAliases[].ip': { acts: ['10.0.0.8', '10.0.0.9'], parent: { hostnames: ['a.local'] } },
  'spec.hostAliases[].hostnames': { acts: [['a.local'], ['b.local']], parent: { ip: '10.0.0.9' } },
  'spec.registry.localRegistry.domain': { acts: ['sea.hub', 'reg.local'] },
  'spec.registry.localRegistry.port': { acts: [5000, 5443] },
  'spec.registry.localRegistry.username': { refused: 'admin' },
  'spec.registry.localRegistry.password': { refused: 'r3g-pw' },
  'spec.registry.localRegistry.ha': { acts: [true, false] },
  'spec.registry.localRegistry.insecure': { acts: [true, false] },
  'spec.registry.localRegistry.cert.subjectAltName.dnsNames': { acts: [['a.example'], ['b.example']] },
  'spec.registry.localRegistry.cert.subjectAltName.ips': { acts: [['10.0.0.8'], ['10.0.0.9']] },
  'spec.registry.externalRegistry.domain': { acts: ['harbor.example', 'quay.example'] },
  'spec.registry.externalRegistry.port': { acts: [443, 8443] },
  'spec.registry.externalRegistry.username': { refused: 'admin' },
  'spec.registry.externalRegistry.password': { refused: 'r3g-pw' },
  'spec.dataRoot': { refused: '/data' },
  'spec.backend.type': { acts: ['local', 'etcd'], beside: (d) => d.backend, parent: {} },
  'spec.backend.endpoints': { acts: [['http://10.0.0.5:2379'], ['http://10.0.0.6:2379']], beside: (d) => d.backend, parent: { type: 'etcd' } },
  'spec.backend.prefix': { acts: ['/a', '/b'], beside: (d) => d.backend, parent: { type: 'etcd' } },
  'spec.backend.tls.ca': { acts: ['a.pem', 'b.pem'], base: 'ETCD_STATE', beside: (d) => d.backend },
  'spec.backend.tls.cert': { acts: ['a.pem', 'b.pem'], base: 'ETCD_STATE', beside: (d) => d.backend, parent: { key: 'k.pem' } },
  'spec.backend.tls.key': { acts: ['a.pem', 'b.pem'], base: 'ETCD_STATE', beside: (d) => d.backend, parent: { cert: 'c.pem' } },
  'spec.backend.lockTTL': { acts: ['30s', '2m'], beside: (d) => d.backend, parent: { type: 'etcd' } },
  'spec.backend.history': { acts: [10, 20], beside: (d) => d.backend, parent: { type: 'etcd' } },
  'spec.apps': { refused: [] },
  status: { ignored: 'sealer writes it back after a run; documented in README', value: { phase: 'ClusterSuccess' } },
};

/** The base document with `value` at `path` (list items are the first one, kept as the base has it). */
function withField(path: string, value: unknown, base: Base, parent: Record<string, unknown> = {}): string {
  const doc = structuredClone(BASES[base]) as Record<string, unknown>;
  const segs = path.split('.').flatMap((s) => (s.endsWith('[]') ? [s.slice(0, -2), 0] : [s]));
  let node: Record<string | number, unknown> = doc;
  segs.forEach((seg, i) => {
    if (i === segs.length - 1) {
      Object.assign(node, parent);
      node[seg] = value;
      return;
    }
    if (node[seg] === undefined) node[seg] = typeof segs[i + 1] === 'number' ? [{}] : {};
    node = node[seg] as Record<string | number, unknown>;
  });
  return stringify(doc);
}

const parse = (text: string) => parseClusterfile(text, 'Clusterfile', {});
const strip = ({ digest: _d, ...rest }: DesiredCluster) => JSON.stringify(rest);

describe('every accepted Cluster field is accounted for', () => {
  const accepted = fields(ClusterDocSchema as unknown as ZodType);

  test('the schema has no field this test does not prove', () => {
    expect(accepted.filter((f) => !(f in FIELDS))).toEqual([]);
    expect(Object.keys(FIELDS).filter((f) => !accepted.includes(f))).toEqual([]);
  });

  for (const [path, proof] of Object.entries(FIELDS)) {
    test(path, () => {
      if ('acts' in proof) {
        const [a, b] = proof.acts.map((v, i) => parse(withField(path, v, proof.base ?? 'BAREMETAL', proof.parents?.[i] ?? proof.parent)));
        expect(strip(a), `${path}: two values give the same desired cluster`).not.toBe(strip(b));
        const aside = proof.secret ?? proof.beside;
        if (aside) {
          expect(aside(a)).not.toEqual(aside(b));
          expect(a.digest, `${path} is ${proof.secret ? 'a secret' : 'beside the plan'}: it stays out of the digest`).toBe(b.digest);
        } else {
          expect(a.digest, `${path}: two values give the same digest`).not.toBe(b.digest);
        }
      } else if ('refused' in proof) {
        let issues: { path: string; location: { line?: number } }[] = [];
        try {
          parse(withField(path, proof.refused, 'BAREMETAL', proof.parent));
        } catch (err) {
          expect(err).toBeInstanceOf(ClusterfileInvalidError);
          issues = (err as ClusterfileInvalidError).issues;
        }
        const concrete = path.replace(/\[\]/g, '[0]');
        expect(issues.map((i) => i.path)).toContain(concrete);
        expect(issues.find((i) => i.path === concrete)!.location.line).toBeGreaterThan(0);
      } else {
        const a = parse(withField(path, proof.value, 'BAREMETAL'));
        expect(a.digest).toBe(parse(stringify(BASES.BAREMETAL)).digest);
      }
    });
  }
});
