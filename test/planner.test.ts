import { describe, expect, test } from 'vitest';
import { plan, planDestroy, PlanRefusedError } from '../plans/planner.js';
import type { Action, HookAction, Plan } from '../plans/actions.js';
import { assertDag, desired, makeImage, simulate } from './planner.helpers.js';
import { hookEnv } from '../engine/executor/hook-env.js';
import { parseClusterfile } from '../engine/clusterfile/parse.js';
import { desiredInfrastructure } from '../plans/prepare.js';

const M = ['10.0.0.2', '10.0.0.3', '10.0.0.4'];
const N = ['10.0.0.5'];
const v1 = makeImage('v1', ['base', 'etcd', 'conf'], ['etcdctl endpoint health', 'echo ready']);

const ids = (p: Plan) => p.actions.map((a) => a.id);
const find = (p: Plan, id: string) => p.actions.find((a) => a.id === id)!;
const hooks = (p: Plan, name: string) => p.actions.filter((a): a is HookAction => a.kind === 'hook' && a.hook === name);

function created() {
  const d = desired([{ ips: M, roles: ['master'] }, { ips: N, roles: ['node'] }]);
  const p = plan({ desired: d, image: v1 });
  return { d, p, state: simulate(p, d, undefined) };
}

describe('planner', () => {
  test('create 3 masters and 1 node', () => {
    const { p } = created();
    assertDag(p);
    expect(p.summary).toEqual({ add: 4, change: 0, destroy: 0 });
    expect(p.master0).toBe('10.0.0.2');
    expect(hooks(p, 'init-host').map((a) => a.host)).toEqual([...M, ...N]);
    expect(hooks(p, 'init-master0').map((a) => a.host)).toEqual(['10.0.0.2']);
    expect(hooks(p, 'join-master').map((a) => a.host)).toEqual(['10.0.0.3', '10.0.0.4']);
    // Masters join one at a time; nodes after the masters.
    expect(find(p, 'hook:join-master:10.0.0.3').deps).toContain('hook:init-master0:10.0.0.2');
    expect(find(p, 'hook:join-master:10.0.0.4').deps).toContain('hook:join-master:10.0.0.3');
    expect(find(p, 'hook:join-node:10.0.0.5').deps).toEqual(expect.arrayContaining(['hook:join-master:10.0.0.4', 'hook:init-host:10.0.0.5']));
    const send = find(p, 'send-layers:10.0.0.5') as Extract<Action, { kind: 'send-layers' }>;
    expect(send.layers).toHaveLength(3);
    expect(send.bytes).toBe(v1.layers.reduce((n, l) => n + l.size, 0));
    expect(send.reason).toBe('new host');
    const cmds = p.actions.filter((a) => a.kind === 'run-cmd');
    expect(cmds.map((a) => a.host)).toEqual(['10.0.0.2', '10.0.0.2']);
    expect(cmds[1].deps).toContain(cmds[0].id);
    expect(cmds[0].deps).toEqual(expect.arrayContaining(['hook:join-node:10.0.0.5', 'hook:join-master:10.0.0.4']));
    expect(p.actions.at(-1)!.id).toBe('set-image');
    expect(find(p, 'set-image').deps).toHaveLength(p.actions.length - 1);
    expect(p.actions.some((a) => a.kind === 'create-host')).toBe(false);
  });

  test('the planner is pure: same input, same plan', () => {
    const { d } = created();
    expect(JSON.stringify(plan({ desired: d, image: v1 }))).toBe(JSON.stringify(plan({ desired: d, image: v1 })));
  });

  test('no-op after a complete apply', () => {
    const { d, state } = created();
    const p = plan({ desired: d, image: v1, state });
    expect(p.actions).toEqual([]);
    expect(p.summary).toEqual({ add: 0, change: 0, destroy: 0 });
    expect(p.hosts.every((h) => h.impact === 'none')).toBe(true);
    expect(p.serial).toBe(state.serial);
  });

  test('scale up: new master and node join, the rest reconfigure', () => {
    const { state } = created();
    const d2 = desired([{ ips: [...M, '10.0.0.6'], roles: ['master'] }, { ips: [...N, '10.0.0.7'], roles: ['node'] }]);
    const p = plan({ desired: d2, image: v1, state });
    assertDag(p);
    expect(p.summary).toEqual({ add: 2, change: 4, destroy: 0 });
    expect(hooks(p, 'join-master').map((a) => a.host)).toEqual(['10.0.0.6']);
    expect(hooks(p, 'join-node').map((a) => a.host)).toEqual(['10.0.0.7']);
    expect(hooks(p, 'reconfigure').map((a) => a.host)).toEqual([...M, ...N]);
    expect(find(p, 'hook:reconfigure:10.0.0.2').deps).toEqual(expect.arrayContaining(['hook:join-master:10.0.0.6', 'hook:join-node:10.0.0.7']));
    expect(p.actions.some((a) => a.host === '10.0.0.3' && a.kind !== 'hook')).toBe(false);
    expect(p.actions.some((a) => a.kind === 'run-cmd' || a.kind === 'set-image')).toBe(false);
    // And after it, nothing more to do.
    expect(plan({ desired: d2, image: v1, state: simulate(p, d2, state) }).actions).toEqual([]);
  });

  test('scale down: a node leaves, is cleaned and its files removed', () => {
    const { state } = created();
    const d2 = desired([{ ips: M, roles: ['master'] }]);
    const p = plan({ desired: d2, image: v1, state });
    assertDag(p);
    expect(p.summary).toEqual({ add: 0, change: 3, destroy: 1 });
    expect(ids(p).filter((i) => i.endsWith('10.0.0.5'))).toEqual(['hook:leave:10.0.0.5', 'hook:clean:10.0.0.5', 'remove-files:10.0.0.5']);
    expect(find(p, 'hook:clean:10.0.0.5').deps).toEqual(['hook:leave:10.0.0.5']);
    expect(find(p, 'hook:leave:10.0.0.5').reason).toBe('removed from Clusterfile');
    expect(find(p, 'hook:reconfigure:10.0.0.2').deps).toContain('hook:leave:10.0.0.5');
    const after = simulate(p, d2, state);
    expect(Object.keys(after.hosts)).toEqual(M);
    expect(plan({ desired: d2, image: v1, state: after }).actions).toEqual([]);
  });

  test('scale up and down in one apply: joins happen before leaves', () => {
    const { state } = created();
    const d2 = desired([{ ips: ['10.0.0.2', '10.0.0.3', '10.0.0.8'], roles: ['master'] }, { ips: ['10.0.0.9'], roles: ['node'] }]);
    const p = plan({ desired: d2, image: v1, state });
    assertDag(p);
    expect(p.summary).toEqual({ add: 2, change: 2, destroy: 2 });
    expect(find(p, 'hook:leave:10.0.0.4').deps).toEqual(expect.arrayContaining(['hook:join-master:10.0.0.8', 'hook:join-node:10.0.0.9']));
    expect(find(p, 'hook:leave:10.0.0.5').deps).not.toContain('hook:leave:10.0.0.4');
    const after = simulate(p, d2, state);
    expect(Object.keys(after.hosts).sort()).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.8', '10.0.0.9']);
    expect(plan({ desired: d2, image: v1, state: after }).actions).toEqual([]);
  });

  test('upgrade with one changed layer: send only that layer, roll the upgrade', () => {
    const { d, state } = created();
    const v2 = makeImage('v2', ['base', 'etcd', 'conf2'], ['etcdctl endpoint health', 'echo ready']);
    const d2 = desired([{ ips: M, roles: ['master'] }, { ips: [...N, '10.0.0.6', '10.0.0.7'], roles: ['node'] }], { image: 'etcd-example:v2' });
    // Bring the two extra nodes in at v1 first.
    const s1 = simulate(plan({ desired: { ...d2, image: d.image }, image: v1, state }), d2, state);
    const p = plan({ desired: d2, image: v2, state: s1, options: { maxUnavailable: 2 } });
    assertDag(p);
    expect(p.summary).toEqual({ add: 0, change: 7, destroy: 0 });
    const sends = p.actions.filter((a) => a.kind === 'send-layers') as Extract<Action, { kind: 'send-layers' }>[];
    expect(sends).toHaveLength(6);
    for (const s of sends) {
      expect(s.layers).toEqual([v2.layers[2].digest]);
      expect(s.reason).toBe('layer digest changed (1 of 3)');
    }
    const up = (k: string) => find(p, `hook:upgrade:${k}`);
    expect(up('10.0.0.2').reason).toBe('image changed v1 -> v2');
    expect(find(p, 'unpack:10.0.0.3').deps).toContain('hook:upgrade:10.0.0.2');
    expect(up('10.0.0.4').deps).toContain('hook:upgrade:10.0.0.3');
    // Nodes in batches of 2: 5 and 6 together after the masters, 7 after both.
    expect(find(p, 'unpack:10.0.0.5').deps).toContain('hook:upgrade:10.0.0.4');
    expect(find(p, 'unpack:10.0.0.6').deps).toContain('hook:upgrade:10.0.0.4');
    expect(find(p, 'unpack:10.0.0.6').deps).not.toContain('hook:upgrade:10.0.0.5');
    expect(find(p, 'unpack:10.0.0.7').deps).toEqual(expect.arrayContaining(['hook:upgrade:10.0.0.5', 'hook:upgrade:10.0.0.6']));
    // Every swap waits for every host's staging: the first directly, the later ones through the batch before (their
    // own prepare named, so the plan stays linear in the hosts and the swap reads as one).
    const prepares = p.actions.filter((a) => a.kind === 'prepare-rootfs').map((a) => a.id);
    expect(prepares).toHaveLength(6);
    expect(find(p, 'unpack:10.0.0.2').deps).toEqual(expect.arrayContaining(prepares));
    const byId = new Map(p.actions.map((a) => [a.id, a]));
    const upstream = (i: string, seen = new Set<string>()): Set<string> => {
      for (const dep of byId.get(i)!.deps) if (!seen.has(dep)) upstream(dep, seen.add(dep));
      return seen;
    };
    for (const k of [...M, ...N, '10.0.0.6', '10.0.0.7'].filter((x) => x !== '10.0.0.2')) {
      const deps = find(p, `unpack:${k}`).deps;
      expect(deps.filter((x) => x.startsWith('prepare-rootfs:'))).toEqual([`prepare-rootfs:${k}`]);
      expect([...upstream(`unpack:${k}`)]).toEqual(expect.arrayContaining(prepares));
    }
    // Both CMDs come after the changed layer, so both identities changed.
    expect(p.actions.filter((a) => a.kind === 'run-cmd').map((a) => a.reason)).toEqual(['CMD identity changed', 'CMD identity changed']);
    expect(find(p, 'set-image').reason).toBe('image changed v1 -> v2');
    expect(plan({ desired: d2, image: v2, state: simulate(p, d2, s1) }).actions).toEqual([]);
  });

  test('CMD identity change re-runs only that CMD', () => {
    const { d, state } = created();
    const v1b = { ...v1, digest: makeImage('v1b', ['x']).digest, cmds: [v1.cmds[0], { cmd: 'echo ready', identity: makeImage('other', ['y']).digest }] };
    const p = plan({ desired: d, image: v1b, state });
    const cmds = p.actions.filter((a) => a.kind === 'run-cmd') as Extract<Action, { kind: 'run-cmd' }>[];
    expect(cmds.map((c) => [c.cmd, c.reason])).toEqual([['echo ready', 'CMD identity changed']]);
    expect(cmds[0].id).toBe('run-cmd:1');
  });

  test('resume after a partial failure: the next plan holds exactly the missing steps', () => {
    const d = desired([{ ips: M, roles: ['master'] }, { ips: N, roles: ['node'] }]);
    const full = plan({ desired: d, image: v1 });
    for (let k = 1; k < full.actions.length; k++) {
      const partial = simulate(full, d, undefined, k);
      const next = plan({ desired: d, image: v1, state: partial });
      assertDag(next);
      expect(ids(next)).toEqual(ids(full).slice(k));
    }
    // Example: a host with layers but no init-host gets exactly the missing steps, labelled as a resume.
    const cut = ids(full).indexOf('hook:init-host:10.0.0.5');
    const next = plan({ desired: d, image: v1, state: simulate(full, d, undefined, cut) });
    expect(ids(next).filter((i) => i.endsWith('10.0.0.5'))).toEqual(['hook:init-host:10.0.0.5', 'hook:join-node:10.0.0.5']);
    expect(find(next, 'hook:init-host:10.0.0.5').reason).toBe('resume: not completed');
  });

  test('resume of a scale up and down', () => {
    const { state } = created();
    const d2 = desired([{ ips: ['10.0.0.3', '10.0.0.4', '10.0.0.8'], roles: ['master'] }, { ips: ['10.0.0.9'], roles: ['node'] }]);
    const full = plan({ desired: d2, image: v1, state });
    for (let k = 1; k < full.actions.length; k++) {
      const next = plan({ desired: d2, image: v1, state: simulate(full, d2, state, k) });
      assertDag(next);
      expect(new Set(ids(next))).toEqual(new Set(ids(full).slice(k)));
    }
  });

  test('removing master0 promotes the next master', () => {
    const { state } = created();
    const d2 = desired([{ ips: ['10.0.0.3', '10.0.0.4'], roles: ['master'] }, { ips: N, roles: ['node'] }]);
    const p = plan({ desired: d2, image: v1, state });
    assertDag(p);
    expect(p.master0).toBe('10.0.0.3');
    expect(find(p, 'hook:reconfigure:10.0.0.3').reason).toBe('master0 10.0.0.2 removed; 10.0.0.3 is promoted to master0');
    expect(find(p, 'set-image')).toMatchObject({ master0: '10.0.0.3' });
    expect(hooks(p, 'init-master0')).toEqual([]);
    const after = simulate(p, d2, state);
    expect(after.master0).toBe('10.0.0.3');
    expect(plan({ desired: d2, image: v1, state: after }).actions).toEqual([]);
  });

  test('removing the last master is refused', () => {
    const { state } = created();
    const d2 = desired([{ ips: ['10.0.0.20'], roles: ['master'] }, { ips: N, roles: ['node'] }]);
    expect(() => plan({ desired: d2, image: v1, state })).toThrow(PlanRefusedError);
    expect(() => plan({ desired: d2, image: v1, state })).toThrow(/last master cannot be removed/);
  });

  test('LOCAL provider: hosts are created, named, and deleted', () => {
    const d = desired([{ count: 1, roles: ['master'] }, { count: 2, roles: ['node'] }], { provider: 'LOCAL' });
    expect(d.hosts.map((h) => h.key)).toEqual(['demo-master-1', 'demo-node-1', 'demo-node-2']);
    const p = plan({ desired: d, image: v1 });
    assertDag(p);
    expect(find(p, 'send-layers:demo-node-1').deps).toEqual(['create-host:demo-node-1']);
    expect(find(p, 'create-host:demo-node-1')).toMatchObject({ host: 'demo-node-1', summary: 'light host', hosts: [{ key: 'demo-node-1', spec: { kind: 'light' } }] });
    const s = simulate(p, d, undefined);
    const d2 = desired([{ count: 1, roles: ['master'] }, { count: 1, roles: ['node'] }], { provider: 'LOCAL' });
    const p2 = plan({ desired: d2, image: v1, state: s });
    expect(ids(p2).filter((i) => i.endsWith('demo-node-2'))).toEqual(['hook:leave:demo-node-2', 'hook:clean:demo-node-2', 'remove-files:demo-node-2', 'delete-host:demo-node-2']);
  });

  test('destroy: clean everywhere in parallel, then remove files', () => {
    const { state } = created();
    const p = planDestroy(state);
    assertDag(p);
    expect(p.operation).toBe('destroy');
    expect(p.summary).toEqual({ add: 0, change: 0, destroy: 4 });
    expect(hooks(p, 'clean').every((a) => a.deps.length === 0)).toBe(true);
    expect(find(p, 'remove-files:10.0.0.5').deps).toEqual(['hook:clean:10.0.0.5']);
    expect(p.actions.some((a) => a.kind === 'delete-host')).toBe(false);
  });

  test('destroy: hosts the provider holds but the state never recorded are only deleted', () => {
    const d = desired([{ count: 1, roles: ['master'] }], { provider: 'LOCAL' });
    const s = simulate(plan({ desired: d, image: v1 }), d, undefined);
    const p = planDestroy(s, ['demo-master-1', 'demo-master-2']);
    assertDag(p);
    expect(ids(p).filter((i) => i.endsWith('demo-master-2'))).toEqual(['delete-host:demo-master-2']);
    expect(find(p, 'delete-host:demo-master-2')).toMatchObject({ deps: [], reason: 'not in state' });
    expect(find(p, 'delete-host:demo-master-1').reason).toBe('destroy');
    expect(p.hosts.map((h) => [h.key, h.roles, h.impact])).toEqual([
      ['demo-master-1', ['master'], 'destroy'],
      ['demo-master-2', [], 'destroy'],
    ]);
    expect(p.summary).toEqual({ add: 0, change: 0, destroy: 2 });
  });

  test('every plan is a DAG over existing ids', () => {
    const { state } = created();
    const shapes = [
      [{ ips: M, roles: ['master'] }],
      [{ ips: ['10.0.0.3'], roles: ['master'] }, { ips: ['10.0.0.5', '10.0.0.50', '10.0.0.51'], roles: ['node'] }],
      [{ ips: ['10.0.0.4', '10.0.0.30', '10.0.0.31'], roles: ['master'] }],
    ];
    const v3 = makeImage('v3', ['base', 'x'], ['a', 'b', 'c']);
    for (const shape of shapes)
      for (const img of [v1, v3])
        for (const maxUnavailable of [1, 3]) assertDag(plan({ desired: desired(shape), image: img, state, options: { maxUnavailable } }));
  });
});

describe('rolling back to an earlier image', () => {
  const v2 = makeImage('v2', ['base', 'etcd', 'conf2'], ['etcdctl endpoint health', 'echo ready']);
  const d1 = desired([{ ips: M, roles: ['master'] }, { ips: N, roles: ['node'] }]);
  const d2 = desired([{ ips: M, roles: ['master'] }, { ips: N, roles: ['node'] }], { image: 'etcd-example:v2' });
  const hooksOf = (p: Plan, hook: string) => (p.actions.filter((a) => a.kind === 'hook' && a.hook === hook) as HookAction[]).map((a) => a.host);

  test('v1 -> v2 -> v1 rolls upgrade over every member on the way back, sending nothing', () => {
    const s1 = simulate(plan({ desired: d1, image: v1 }), d1, undefined);
    const s2 = simulate(plan({ desired: d2, image: v2, state: s1 }), d2, s1);
    expect(Object.values(s2.hosts).map((h) => h.image?.ref)).toEqual(Array(4).fill('etcd-example:v2'));
    const back = plan({ desired: d1, image: v1, state: s2 });
    assertDag(back);
    expect(back.actions.filter((a) => a.kind === 'send-layers')).toEqual([]);
    expect(hooksOf(back, 'upgrade')).toEqual([...M, ...N]);
    expect(find(back, 'hook:upgrade:10.0.0.2').reason).toBe('image changed v2 -> v1');
    expect(find(back, 'unpack:10.0.0.3').deps).toContain('hook:upgrade:10.0.0.2');
    expect(find(back, 'set-image').reason).toBe('image changed v2 -> v1');
    const s3 = simulate(back, d1, s2);
    expect(Object.values(s3.hosts).map((h) => h.image?.digest)).toEqual(Array(4).fill(v1.digest));
    expect(plan({ desired: d1, image: v1, state: s3 }).actions).toEqual([]);
    // And forward again.
    expect(hooksOf(plan({ desired: d2, image: v2, state: s3 }), 'upgrade')).toEqual([...M, ...N]);
  });

  test('reverting an interrupted upgrade rolls back only the members that were upgraded', () => {
    const s1 = simulate(plan({ desired: d1, image: v1 }), d1, undefined);
    const up = plan({ desired: d2, image: v2, state: s1 });
    // Stop right after master0 upgraded: the state still names v1 as the cluster's image.
    const upto = up.actions.findIndex((a) => a.id === 'hook:upgrade:10.0.0.2') + 1;
    const partial = simulate({ ...up, actions: up.actions.slice(0, upto) }, d2, s1);
    expect(partial.image?.digest).toBe(v1.digest);
    expect(partial.hosts['10.0.0.2'].image?.digest).toBe(v2.digest);
    const revert = plan({ desired: d1, image: v1, state: partial });
    assertDag(revert);
    expect(hooksOf(revert, 'upgrade')).toEqual(['10.0.0.2']);
    expect(find(revert, 'hook:upgrade:10.0.0.2').reason).toBe('image changed v2 -> v1');
    expect(revert.actions.find((a) => a.kind === 'set-image')).toBeUndefined();
    expect(plan({ desired: d1, image: v1, state: simulate(revert, d1, partial) }).actions).toEqual([]);
  });

  test('the upgrade hook is told the image the host ran before, not the state\'s', () => {
    const s1 = simulate(plan({ desired: d1, image: v1 }), d1, undefined);
    const up = plan({ desired: d2, image: v2, state: s1 });
    const partial = simulate({ ...up, actions: up.actions.slice(0, up.actions.findIndex((a) => a.id === 'hook:upgrade:10.0.0.2') + 1) }, d2, s1);
    const revert = plan({ desired: d1, image: v1, state: partial });
    const env = hookEnv({ plan: revert, desired: d1, state: partial }, find(revert, 'hook:upgrade:10.0.0.2') as HookAction);
    expect(env.CI_PREVIOUS_IMAGE).toBe('etcd-example:v2');
    expect(env.CI_IMAGE).toBe('etcd-example:v1');
  });
});

describe('provider ALI_CLOUD: infrastructure first, instances in one request per group, scaling by count', () => {
  const yaml = (nodes: number, extra = '') => `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: demo}
spec:
  image: etcd-example:v1
  provider: ALI_CLOUD
  cloud: {regionId: cn-hangzhou, zoneId: cn-hangzhou-h, imageId: debian_12_x64, instanceType: ecs.g7.xlarge${extra}}
  hosts:
  - {count: 1, roles: [master], instanceType: ecs.g7.2xlarge}
  - {count: ${nodes}, roles: [node], dataDisks: [200]}
`;
  const at = (nodes: number, extra = '') => parseClusterfile(yaml(nodes, extra), 'Clusterfile', {});
  const infraOf = (d: ReturnType<typeof at>, ports: string[] = []) => desiredInfrastructure(d, { labels: {}, ports });

  test('a new cluster: VPC, vSwitch, security group and key pair, then one create per group, then the hosts', () => {
    const d = at(2);
    const p = plan({ desired: d, image: v1, infra: infraOf(d, ['2379/tcp']) });
    assertDag(p);
    expect(p.actions.filter((a) => a.kind === 'infra').map((a) => a.id)).toEqual(['infra:vpc', 'infra:vswitch', 'infra:security-group', 'infra:key-pair']);
    expect(find(p, 'infra:vswitch').deps).toEqual(['infra:vpc']);
    const creates = p.actions.filter((a): a is Extract<Action, { kind: 'create-host' }> => a.kind === 'create-host');
    expect(creates.map((a) => [a.id, a.hosts.map((h) => h.key)])).toEqual([
      ['create-host:demo-master', ['demo-master-1']],
      ['create-host:demo-node', ['demo-node-1', 'demo-node-2']],
    ]);
    for (const c of creates) expect(c.deps).toEqual(['infra:vpc', 'infra:vswitch', 'infra:security-group', 'infra:key-pair']);
    expect(creates[1].hosts[0].spec).toEqual({ group: 'node', role: 'node', instanceType: 'ecs.g7.xlarge', systemDisk: 40, dataDisks: [200] });
    expect(find(p, 'send-layers:demo-node-2').deps).toEqual(['create-host:demo-node']);
    expect(p.summary).toEqual({ add: 7, change: 0, destroy: 0 });
    const rules = (find(p, 'infra:security-group') as Extract<Action, { kind: 'infra' }>).spec.rules;
    expect(rules).toEqual([
      { protocol: 'TCP', ports: '22/22', source: '0.0.0.0/0' },
      { protocol: 'TCP', ports: '2379/2379', source: '0.0.0.0/0' },
    ]);
  });

  test('scaling out makes only the new host, in one request; scaling in removes the newest; nothing else moves', () => {
    const d2 = at(2);
    const s2 = simulate(plan({ desired: d2, image: v1, infra: infraOf(d2) }), d2, undefined);
    expect(plan({ desired: d2, image: v1, state: s2, infra: infraOf(d2) }).actions).toEqual([]);
    const d3 = at(3);
    const up = plan({ desired: d3, image: v1, state: s2, infra: infraOf(d3) });
    assertDag(up);
    expect(up.actions.filter((a) => a.kind === 'infra')).toEqual([]);
    expect(up.actions.filter((a) => a.kind === 'create-host').map((a) => [a.id, (a as Extract<Action, { kind: 'create-host' }>).hosts.map((h) => h.key)])).toEqual([
      ['create-host:demo-node', ['demo-node-3']],
    ]);
    const s3 = simulate(up, d3, s2);
    const d1 = at(1);
    const down = plan({ desired: d1, image: v1, state: s3, infra: infraOf(d1) });
    assertDag(down);
    expect(down.actions.filter((a) => a.kind === 'delete-host').map((a) => a.host)).toEqual(['demo-node-2', 'demo-node-3']);
    expect(find(down, 'delete-host:demo-node-3').deps).toEqual(['remove-files:demo-node-3']);
    expect(down.actions.filter((a) => a.kind === 'infra' || a.kind === 'create-host')).toEqual([]);
  });

  test('changed settings of existing infrastructure are an update; destroy removes hosts, then infrastructure, dependants first', () => {
    const d = at(1);
    const s = simulate(plan({ desired: d, image: v1, infra: infraOf(d) }), d, undefined);
    const p = plan({ desired: d, image: v1, state: s, infra: infraOf(d, ['2379/tcp']) });
    expect(p.actions.map((a) => a.id)).toEqual(['infra:security-group']);
    expect(find(p, 'infra:security-group')).toMatchObject({ op: 'update', reason: 'settings changed' });
    const gone = planDestroy(s);
    assertDag(gone);
    const order = gone.actions.map((a) => a.id);
    expect(order.indexOf('infra:vswitch')).toBeLessThan(order.indexOf('infra:vpc'));
    expect(order.indexOf('delete-host:demo-node-1')).toBeLessThan(order.indexOf('infra:security-group'));
    expect(find(gone, 'infra:vpc').deps).toEqual(expect.arrayContaining(['infra:vswitch', 'infra:security-group']));
  });
});
