import { describe, expect, it } from 'vitest';
import { orderActions, plan } from '../plans/planner.js';
import type { Action } from '../plans/actions.js';
import { ActionTable } from '../plans/action-table.js';
import { assertDag, simulate } from './planner.helpers.js';
import { syntheticCluster, syntheticImage } from './bench/synthetic.js';

/**
 * The order the planner gave before it was made n log n, kept here as the reference: sort by (host, kind, hook),
 * then repeatedly take the first action whose deps are all done. Only the kinds these tests make are ranked.
 */
function referenceOrder(actions: Action[], hostKeys: string[]): Action[] {
  const kind: Partial<Record<Action['kind'], number>> = { 'send-layers': 1, unpack: 2, hook: 3, 'run-cmd': 4, 'set-image': 7 };
  const hook: Record<string, number> = { 'init-host': 0, 'init-master0': 1, 'join-master': 2, 'join-node': 3, upgrade: 4 };
  const rank = new Map(hostKeys.map((k, i) => [k, i]));
  const key = (a: Action) => [
    a.kind === 'run-cmd' || a.kind === 'set-image' ? Number.MAX_SAFE_INTEGER : (rank.get(a.host!) ?? 0),
    kind[a.kind]!,
    a.kind === 'hook' ? hook[a.hook] : a.kind === 'run-cmd' ? Number(a.id.split(':')[1]) : 0,
  ];
  const cmp = (x: number[], y: number[]) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  const pending = [...actions].sort((x, y) => cmp(key(x), key(y)));
  const done = new Set<string>();
  const out: Action[] = [];
  while (pending.length) {
    const i = pending.findIndex((a) => a.deps.every((d) => done.has(d)));
    if (i < 0) throw new Error('cycle');
    const [a] = pending.splice(i, 1);
    done.add(a.id);
    out.push(a);
  }
  return out;
}

/** A random DAG of hook and layer steps over a few hosts: deps only on earlier-made steps, ties in rank on purpose. */
function randomActions(seed: number, count: number, hosts: string[]): Action[] {
  let x = seed;
  const rnd = (n: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  const hooks = ['init-host', 'init-master0', 'join-master', 'join-node', 'upgrade'] as const;
  const out: Action[] = [];
  for (let i = 0; i < count; i++) {
    const host = hosts[rnd(hosts.length)];
    const deps = Array.from({ length: rnd(4) }, () => (out.length ? out[rnd(out.length)].id : undefined)).filter((d): d is string => !!d);
    const k = rnd(4);
    const id = `step-${i}`;
    if (k === 0) out.push({ id, kind: 'send-layers', host, layers: [], bytes: 0, reason: 'r', deps });
    else if (k === 1) out.push({ id, kind: 'unpack', host, image: 'sha256:x', layers: [], reason: 'r', deps });
    else if (k === 2) out.push({ id, kind: 'hook', host, hook: hooks[rnd(hooks.length)], image: 'sha256:x', reason: 'r', deps });
    else out.push({ id: `run-cmd:${rnd(3)}-${i}`, kind: 'run-cmd', host, cmd: 'c', identity: 'sha256:x', reason: 'r', deps });
  }
  // Made in an order that is not the dependency order, as the planner's phases and plugin steps make them.
  return out.reverse();
}

describe('plan order', () => {
  it('is the order the quadratic ordering gave: the first ready step in reading order, each time', () => {
    const hosts = ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'];
    for (let seed = 1; seed <= 200; seed++) {
      const actions = randomActions(seed, 5 + (seed % 40), hosts);
      const got = orderActions(actions.map((a) => ({ ...a, deps: [...a.deps] })), hosts, []).map((a) => a.id);
      expect(got, `seed ${seed}`).toEqual(referenceOrder(actions, hosts).map((a) => a.id));
    }
  });

  it('orders the same through the planner\'s table of steps, a step planned again keeping its first place', () => {
    const hosts = ['10.0.0.2', '10.0.0.3'];
    for (let seed = 1; seed <= 50; seed++) {
      const actions = randomActions(seed, 10 + seed, hosts);
      const table = new ActionTable();
      for (const a of actions) table.set({ ...a, deps: [] });
      // Planned again with its deps: same place, the later step kept.
      for (const a of actions) table.set({ ...a, deps: [...a.deps] });
      expect(table.size).toBe(actions.length);
      expect(table.ids()).toEqual(actions.map((a) => a.id));
      expect(table.get(actions[0].id)?.deps).toEqual(actions[0].deps);
      expect(table.indexOf('no-such-step')).toBeUndefined();
      const got = orderActions(table.list(), hosts, [], table.indexOf).map((a) => a.id);
      expect(got, `seed ${seed}`).toEqual(referenceOrder(actions, hosts).map((a) => a.id));
    }
  });

  it('names the steps of a cycle', () => {
    const a: Action = { id: 'a', kind: 'hook', host: 'h', hook: 'init-host', image: 'sha256:x', reason: 'r', deps: ['b'] };
    const b: Action = { id: 'b', kind: 'hook', host: 'h', hook: 'join-node', image: 'sha256:x', reason: 'r', deps: ['a'] };
    const c: Action = { id: 'c', kind: 'send-layers', host: 'h', layers: [], bytes: 0, reason: 'r', deps: [] };
    expect(() => orderActions([a, b, c], ['h'], [])).toThrow(/dependency cycle among a, b$/);
  });

  it('orders a 300-host fresh plan and its one-layer upgrade as the reference does', () => {
    const v1 = syntheticImage('v1', 5);
    const v2 = syntheticImage('v2', 5, 4);
    const desired = syntheticCluster(300, 3, v1.ref);
    const keys = desired.hosts.map((h) => h.key);
    const fresh = plan({ desired, image: v1 });
    assertDag(fresh);
    expect(fresh.actions.map((a) => a.id)).toEqual(referenceOrder(fresh.actions, keys).map((a) => a.id));
    const upgrade = plan({ desired: { ...desired, image: v2.ref }, image: v2, state: simulate(fresh, desired, undefined) });
    assertDag(upgrade);
    expect(upgrade.actions.map((a) => a.id)).toEqual(referenceOrder(upgrade.actions, keys).map((a) => a.id));
  });
});
