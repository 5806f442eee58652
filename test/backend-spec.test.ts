/** Where the state is kept, as the Clusterfile and --backend say: checked at the field's line, resolved in one place. */
import { describe, expect, test } from 'vitest';
import { parseClusterfile, ClusterfileInvalidError } from '../engine/clusterfile/index.js';
import { effectiveBackend, openStateBackend } from '../state/open.js';
import { LocalStateBackend } from '../state/local.js';
import { EtcdStateBackend } from '../state/etcd.js';

const doc = (backend: string) => `apiVersion: sealer.io/v2
kind: Cluster
metadata:
  name: demo
spec:
  image: etcd-example:v1
  backend:
${backend}
  hosts:
    - ips: [10.0.0.2]
      roles: [master]
`;

function issues(text: string): { path: string; line?: number; message: string }[] {
  try {
    parseClusterfile(text, '/work/x/Clusterfile', {});
  } catch (err) {
    if (err instanceof ClusterfileInvalidError) return err.issues.map((i) => ({ path: i.path, line: i.location.line, message: i.message }));
    throw err;
  }
  return [];
}

describe('spec.backend in the Clusterfile', () => {
  test('etcd settings are read, TLS files resolved against the Clusterfile folder, the TTL in seconds', () => {
    const d = parseClusterfile(doc('    type: etcd\n    endpoints: [https://10.0.0.5:2379]\n    tls: {ca: ca.pem, cert: /abs/c.pem, key: k.pem}\n    lockTTL: 2m\n    history: 5'), '/work/x/Clusterfile', {});
    expect(d.backend).toEqual({ type: 'etcd', endpoints: ['https://10.0.0.5:2379'], tls: { ca: '/work/x/ca.pem', cert: '/abs/c.pem', key: '/work/x/k.pem' }, lockTtlSeconds: 120, history: 5 });
  });

  test('bad values are refused at their line, each named', () => {
    const found = issues(doc('    type: etcd\n    endpoints: [10.0.0.5:2379]\n    prefix: no-slash\n    lockTTL: 1s\n    history: 0\n    tls: {cert: c.pem}'));
    expect(found.map((i) => i.path).sort()).toEqual(['spec.backend.endpoints[0]', 'spec.backend.history', 'spec.backend.lockTTL', 'spec.backend.prefix', 'spec.backend.tls.key'].sort());
    expect(found.every((i) => (i.line ?? 0) > 0)).toBe(true);
    expect(found.find((i) => i.path === 'spec.backend.endpoints[0]')!.message).toMatch(/not an etcd client URL: write http:\/\/host:port/);
  });

  test('a local backend with etcd settings is refused, naming them', () => {
    expect(issues(doc('    type: local\n    endpoints: [http://10.0.0.5:2379]')).map((i) => i.path)).toEqual(['spec.backend.endpoints']);
  });
});

describe('which backend a command uses', () => {
  const etcdSpec = { type: 'etcd' as const, endpoints: ['http://127.0.0.1:2379'] };
  test('--backend overrides the Clusterfile; endpoints come from it or from CI_ETCD_ENDPOINTS', () => {
    expect(effectiveBackend({ spec: etcdSpec, choice: 'local' })).toEqual({ type: 'local' });
    expect(effectiveBackend({ choice: 'etcd', env: { CI_ETCD_ENDPOINTS: 'http://a:2379, http://b:2379' } })).toEqual({ type: 'etcd', endpoints: ['http://a:2379', 'http://b:2379'] });
    expect(() => effectiveBackend({ choice: 'etcd', env: {} })).toThrow(/needs the addresses of etcd/);
    expect(() => effectiveBackend({ choice: 'consul' })).toThrow(/--backend consul is not a state backend/);
    expect(() => effectiveBackend({ choice: 'etcd', env: { CI_ETCD_ENDPOINTS: 'a:2379' } })).toThrow(/"a:2379" is not an etcd client URL/);
  });

  test('local by default; etcd needs the passphrase unless outputs stay sealed; --state names only a local file', () => {
    expect(openStateBackend({ cluster: 'demo', home: '/tmp/h' })).toBeInstanceOf(LocalStateBackend);
    expect(() => openStateBackend({ cluster: 'demo', home: '/tmp/h', spec: etcdSpec, env: {} })).toThrow(/CI_STATE_PASSPHRASE is not set/);
    expect(openStateBackend({ cluster: 'demo', home: '/tmp/h', spec: etcdSpec, env: {}, withoutOutputs: true })).toBeInstanceOf(EtcdStateBackend);
    expect(() => openStateBackend({ cluster: 'demo', home: '/tmp/h', spec: etcdSpec, statePath: '/tmp/s.json', env: { CI_STATE_PASSPHRASE: 'x' } })).toThrow(/--state names a local state file/);
  });
});
