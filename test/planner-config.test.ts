import { describe, expect, test } from 'vitest';
import { plan } from '../plans/planner.js';
import type { Action, ConfigLayerPlan, HookAction, Plan } from '../plans/actions.js';
import { sha256 } from '../engine/kernel/digest.js';
import { assertDag, desired, makeImage, simulate } from './planner.helpers.js';

const M = ['10.0.0.2', '10.0.0.3'];
const N = ['10.0.0.5'];
const img = { ...makeImage('v1', ['base', 'etcd'], ['cat etc/app.yaml']), launch: [{ app: 'web', dir: 'application/apps/web', by: 'appcmds', cmds: ['true'], needs: [], identity: sha256('app:web') }] };
const config = (tag: string): ConfigLayerPlan => ({
  digest: sha256(`config:${tag}`),
  size: 321,
  files: ['etc/app.yaml'],
  changes: [{ path: 'etc/app.yaml', by: ['Config app'], diff: `--- a/etc/app.yaml\n+++ b/etc/app.yaml\n@@ -1 +1 @@\n-x: 1\n+x: ${tag}\n` }],
});
const d = desired([{ ips: M, roles: ['master'] }, { ips: N, roles: ['node'] }]);
const byKind = (p: Plan, k: Action['kind']) => p.actions.filter((a) => a.kind === k);

function applied(cfg: ConfigLayerPlan | undefined) {
  const p = plan({ desired: d, image: img, ...(cfg ? { config: cfg } : {}) });
  return { p, state: simulate(p, d, undefined) };
}

describe('planner: the config layer', () => {
  test('a new cluster sends and unpacks the config layer last on every host', () => {
    const cfg = config('a');
    const { p, state } = applied(cfg);
    assertDag(p);
    for (const a of byKind(p, 'send-layers')) expect((a as Extract<Action, { kind: 'send-layers' }>).layers.at(-1)).toBe(cfg.digest);
    for (const a of byKind(p, 'unpack')) {
      const u = a as Extract<Action, { kind: 'unpack' }>;
      expect(u.layers).toEqual([...img.layers.map((l) => l.digest), cfg.digest]);
      expect(u.config).toBe(cfg.digest);
    }
    expect(p.config).toEqual(cfg);
    expect(state.image?.config).toBe(cfg.digest);
    expect(Object.values(state.hosts).every((h) => h.rootfsConfig === cfg.digest)).toBe(true);
    // Unchanged: nothing to do.
    expect(plan({ desired: d, image: img, state, config: cfg }).actions).toEqual([]);
  });

  test('a changed config re-sends one layer, unpacks, and re-runs reconfigure, CMDs and apps', () => {
    const { state } = applied(config('a'));
    const cfg = config('b');
    const p = plan({ desired: d, image: img, state, config: cfg });
    assertDag(p);
    const sends = byKind(p, 'send-layers') as Extract<Action, { kind: 'send-layers' }>[];
    expect(sends.map((s) => s.host)).toEqual([...M, ...N]);
    for (const s of sends) {
      expect(s.layers).toEqual([cfg.digest]);
      expect(s.bytes).toBe(321);
      expect(s.reason).toBe('config changed');
    }
    expect(byKind(p, 'unpack').map((a) => a.reason)).toEqual(['config changed', 'config changed', 'config changed']);
    expect((byKind(p, 'hook') as HookAction[]).map((h) => `${h.hook}:${h.host}:${h.reason}`)).toEqual([...M, ...N].map((k) => `reconfigure:${k}:config changed`));
    expect(byKind(p, 'run-cmd').map((a) => a.reason)).toEqual(['config changed']);
    expect(byKind(p, 'launch-app').map((a) => a.reason)).toEqual(['config changed']);
    expect(p.actions.some((a) => a.kind === 'hook' && a.hook === 'upgrade')).toBe(false);
    // The CMD runs after every host has the new files.
    expect(byKind(p, 'run-cmd')[0].deps).toEqual(expect.arrayContaining([...M, ...N].map((k) => `hook:reconfigure:${k}`)));
    const after = simulate(p, d, state);
    expect(plan({ desired: d, image: img, state: after, config: cfg }).actions).toEqual([]);
  });

  test('a config removed: hosts unpack the image alone and CMDs run again', () => {
    const { state } = applied(config('a'));
    const p = plan({ desired: d, image: img, state });
    expect(byKind(p, 'send-layers')).toEqual([]);
    const u = byKind(p, 'unpack') as Extract<Action, { kind: 'unpack' }>[];
    expect(u).toHaveLength(3);
    expect(u.every((a) => a.config === undefined && a.layers.length === 2)).toBe(true);
    expect(byKind(p, 'run-cmd')).toHaveLength(1);
    const after = simulate(p, d, state);
    expect(Object.values(after.hosts).every((h) => h.rootfsConfig === undefined)).toBe(true);
    expect(plan({ desired: d, image: img, state: after }).actions).toEqual([]);
  });

  test('without a config layer, identities are as before', () => {
    const p = plan({ desired: d, image: img });
    expect((byKind(p, 'run-cmd')[0] as Extract<Action, { kind: 'run-cmd' }>).identity).toBe(img.cmds[0].identity);
    expect(p.config).toBeUndefined();
  });
});

describe('saved plans and the config layer', () => {
  test('a saved plan is stale once the config layer would differ', async () => {
    const { checkPlanFresh } = await import('../plans/planfile.js');
    const { StalePlanError } = await import('../engine/kernel/errors.js');
    const p = plan({ desired: d, image: img, config: config('a') });
    expect(() => checkPlanFresh(p, { desired: d, config: { digest: config('a').digest } })).not.toThrow();
    expect(() => checkPlanFresh(p, { desired: d, config: { digest: config('b').digest } })).toThrow(StalePlanError);
    expect(() => checkPlanFresh(p, { desired: d, config: {} })).toThrow(/Configs and templates/);
  });
});

describe('going back to an earlier Config', () => {
  test('re-runs the CMDs and apps that ran with the later one', () => {
    const { state: s1 } = applied(config('a'));
    const p2 = plan({ desired: d, image: img, state: s1, config: config('b') });
    const s2 = simulate(p2, d, s1);
    const p3 = plan({ desired: d, image: img, state: s2, config: config('a') });
    expect(byKind(p3, 'run-cmd').map((a) => a.reason)).toEqual(['config changed']);
    expect(byKind(p3, 'launch-app').map((a) => a.reason)).toEqual(['config changed']);
    const s3 = simulate(p3, d, s2);
    expect(plan({ desired: d, image: img, state: s3, config: config('a') }).actions).toEqual([]);
  });
});
