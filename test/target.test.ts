/** `--target`: a plan cut down to some hosts and what they need, a pure function of plan and names (plans/target.ts). */
import { describe, expect, test } from 'vitest';
import { plan } from '../plans/planner.js';
import { resolveTargets, targetPlan } from '../plans/target.js';
import { parseClusterfile } from '../engine/clusterfile/parse.js';
import { UsageError } from '../engine/kernel/errors.js';
import { desiredInfrastructure } from '../plans/prepare.js';
import type { Plan } from '../plans/actions.js';
import { assertDag, desired, makeImage, simulate } from './planner.helpers.js';

const M = ['10.0.0.2', '10.0.0.3'];
const v1 = makeImage('v1', ['base', 'etcd'], ['echo ready']);
const v2 = makeImage('v2', ['base', 'etcd2'], ['echo ready']);
const ids = (p: Plan) => p.actions.map((a) => a.id);

function running() {
  const d = desired([{ ips: M, roles: ['master'] }, { ips: ['10.0.0.5'], roles: ['node'] }]);
  const p = plan({ desired: d, image: v1 });
  return { d, state: simulate(p, d, undefined) };
}

describe('target filtering', () => {
  test('a new node of a running cluster: only its own steps; the others reconfigure later', () => {
    const { state } = running();
    const d2 = desired([{ ips: M, roles: ['master'] }, { ips: ['10.0.0.5', '10.0.0.6'], roles: ['node'] }]);
    const full = plan({ desired: d2, image: v1, state });
    expect(ids(full)).toContain('hook:reconfigure:10.0.0.2');
    const p = targetPlan(full, resolveTargets(full, ['10.0.0.6']));
    assertDag(p);
    expect(ids(p)).toEqual(['send-layers:10.0.0.6', 'unpack:10.0.0.6', 'hook:init-host:10.0.0.6', 'hook:join-node:10.0.0.6']);
    expect(p.targets).toEqual(['10.0.0.6']);
    expect(p.hosts.map((h) => h.key)).toEqual(['10.0.0.6']);
    expect(p.summary).toEqual({ add: 1, change: 0, destroy: 0 });
    // Everything else of the full plan is still there to do afterwards.
    const after = simulate(p, d2, state);
    const rest = plan({ desired: d2, image: v1, state: after });
    expect(ids(rest)).toEqual(expect.arrayContaining(['hook:reconfigure:10.0.0.2', 'hook:reconfigure:10.0.0.3', 'hook:reconfigure:10.0.0.5']));
    expect(ids(rest)).not.toContain('hook:join-node:10.0.0.6');
  });

  test('a node of a new cluster brings what it needs: master0 init and the masters before it; never the CMDs or set-image', () => {
    const d = desired([{ ips: M, roles: ['master'] }, { ips: ['10.0.0.5', '10.0.0.6'], roles: ['node'] }]);
    const full = plan({ desired: d, image: v1 });
    const p = targetPlan(full, ['10.0.0.5']);
    assertDag(p);
    expect(ids(p)).toEqual(expect.arrayContaining(['hook:init-master0:10.0.0.2', 'hook:join-master:10.0.0.3', 'hook:join-node:10.0.0.5']));
    expect(ids(p).some((i) => i.endsWith(':10.0.0.6'))).toBe(false);
    expect(p.actions.some((a) => a.kind === 'run-cmd' || a.kind === 'set-image')).toBe(false);
    // The order and every step are the full plan's own.
    expect(ids(full).filter((i) => ids(p).includes(i))).toEqual(ids(p));
    for (const a of p.actions) expect(a).toEqual(full.actions.find((x) => x.id === a.id));
    expect(p.summary).toEqual({ add: 3, change: 0, destroy: 0 });
    // The full plan is left as it was.
    expect(full.targets).toBeUndefined();
    expect(full.actions.some((a) => a.kind === 'set-image')).toBe(true);
  });

  test('targeting master0 of a new cluster does not pull the other hosts in through the CMDs', () => {
    const d = desired([{ ips: M, roles: ['master'] }, { ips: ['10.0.0.5'], roles: ['node'] }]);
    const p = targetPlan(plan({ desired: d, image: v1 }), ['10.0.0.2']);
    expect(ids(p)).toEqual(['send-layers:10.0.0.2', 'unpack:10.0.0.2', 'hook:init-host:10.0.0.2', 'hook:init-master0:10.0.0.2']);
  });

  test('an upgrade of one node waits for the masters it depends on, and upgrades them too', () => {
    const { d, state } = running();
    const full = plan({ desired: { ...d, image: 'etcd-example:v2' }, image: v2, state });
    const p = targetPlan(full, ['10.0.0.5']);
    assertDag(p);
    expect(ids(p).filter((i) => i.startsWith('hook:upgrade:'))).toEqual(['hook:upgrade:10.0.0.2', 'hook:upgrade:10.0.0.3', 'hook:upgrade:10.0.0.5']);
    expect(p.summary.change).toBe(3);
  });

  test('a removed host: its leave, clean and removal', () => {
    const { state } = running();
    const d2 = desired([{ ips: M, roles: ['master'] }]);
    const full = plan({ desired: d2, image: v1, state });
    const p = targetPlan(full, ['10.0.0.5']);
    expect(ids(p)).toEqual(['hook:leave:10.0.0.5', 'hook:clean:10.0.0.5', 'remove-files:10.0.0.5']);
    expect(p.summary).toEqual({ add: 0, change: 0, destroy: 1 });
  });

  test('a host with nothing to do: an empty partial plan, still marked partial', () => {
    const { state } = running();
    const d2 = desired([{ ips: M, roles: ['master'] }, { ips: ['10.0.0.5', '10.0.0.6'], roles: ['node'] }]);
    const p = targetPlan(plan({ desired: d2, image: v1, state }), ['10.0.0.3']);
    // 10.0.0.3's reconfigure needs the new node's join: that comes along.
    expect(ids(p)).toContain('hook:join-node:10.0.0.6');
    const done = plan({ desired: d2, image: v1, state: simulate(plan({ desired: d2, image: v1, state }), d2, state) });
    const none = targetPlan(done, ['10.0.0.3']);
    expect(none.actions).toEqual([]);
    expect(none.targets).toEqual(['10.0.0.3']);
    expect(none.summary).toEqual({ add: 0, change: 0, destroy: 0 });
  });

  test('node labels set from master0 belong to the labelled node', () => {
    const d = parseClusterfile(
      `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  ssh: {user: root, passwd: x}
  hosts:
  - {ips: [10.0.0.2], roles: [master]}
  - {ips: [10.0.0.5], roles: [node], labels: {disk: ssd}}
  - {ips: [10.0.0.6], roles: [node]}
`,
      'Clusterfile',
      {},
    );
    const { state } = running();
    const full = plan({ desired: d, image: v1, state: { ...state, hosts: { '10.0.0.2': state.hosts['10.0.0.2'], '10.0.0.5': state.hosts['10.0.0.5'] } } });
    const meta = full.actions.find((a) => a.kind === 'node-meta');
    expect(meta).toMatchObject({ host: '10.0.0.2', target: '10.0.0.5' });
    expect(ids(targetPlan(full, ['10.0.0.5']))).toContain(meta!.id);
    // Run on master0, but not master0's: targeting master0 leaves it out.
    expect(ids(targetPlan(full, ['10.0.0.2']))).not.toContain(meta!.id);
  });

  test('hosts made in one batch: the batch is made whole, the other hosts go no further', () => {
    const d = parseClusterfile(
      `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  provider: ALI_CLOUD
  cloud: {regionId: cn-hangzhou, zoneId: cn-hangzhou-h, imageId: debian_12_x64, instanceType: ecs.g7.xlarge}
  hosts:
  - {count: 1, roles: [master]}
  - {count: 2, roles: [node]}
`,
      'Clusterfile',
      {},
    );
    const full = plan({ desired: d, image: v1, infra: desiredInfrastructure(d, { labels: {}, ports: [] }) });
    const p = targetPlan(full, resolveTargets(full, ['demo-node-2']));
    assertDag(p);
    expect(ids(p)).toEqual(expect.arrayContaining(['infra:vpc', 'create-host:demo-master', 'create-host:demo-node', 'hook:init-master0:demo-master-1', 'hook:join-node:demo-node-2']));
    expect(ids(p).some((i) => i.endsWith(':demo-node-1'))).toBe(false);
    // demo-node-1 is made with its batch: the plan says so.
    expect(p.hosts.map((h) => h.key)).toEqual(['demo-master-1', 'demo-node-1', 'demo-node-2']);
    expect(p.summary.add).toBe(3 + p.actions.filter((a) => a.kind === 'infra').length);
  });

  test('names resolve by key, IP or name, once each; unknown names are a usage error naming them', () => {
    const { state } = running();
    const full = plan({ desired: desired([{ ips: M, roles: ['master'] }, { ips: ['10.0.0.5'], roles: ['node'] }]), image: v1, state });
    const named: Plan = { ...full, hosts: full.hosts.map((h) => (h.key === '10.0.0.5' ? { ...h, name: 'worker-1' } : h)) };
    expect(resolveTargets(named, ['worker-1', '10.0.0.5', '10.0.0.2'])).toEqual(['10.0.0.5', '10.0.0.2']);
    const err = (() => {
      try {
        resolveTargets(named, ['10.0.0.9', '10.0.0.2', 'nope']);
      } catch (e) {
        return e as UsageError;
      }
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err!.exitCode).toBe(64);
    expect(err!.message).toBe('--target 10.0.0.9, nope: no such host in the Clusterfile or the state of cluster demo');
    expect(err!.hint).toBe('name a host by its key, IP or name; the hosts are 10.0.0.2, 10.0.0.3, 10.0.0.5');
  });
});
