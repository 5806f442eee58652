/** LAUNCH in plans: launched apps run on master0 after the joins and CMDs, in order, and again only when they change. */
import { describe, expect, test } from 'vitest';
import { sha256 } from '../engine/kernel/digest.js';
import { plan } from '../plans/planner.js';
import type { Action, ImageInfo, LaunchAppAction, LaunchInfo, Plan } from '../plans/actions.js';
import { renderPlanText } from '../plans/render/index.js';
import { assertDag, desired, makeImage, simulate } from './planner.helpers.js';

const M = ['10.0.0.2', '10.0.0.3'];
const N = ['10.0.0.5'];

const app = (name: string, files: string, cmds = [`sh ./${name}.sh`]): LaunchInfo => ({
  app: name,
  dir: `application/apps/${name}`,
  by: 'shell',
  cmds,
  needs: [],
  identity: sha256(`${name}|${files}|${cmds.join(';')}`),
});

function withApps(tag: string, apps: LaunchInfo[], cmds: string[] = ['echo cmd']): ImageInfo {
  const base = makeImage(tag, ['base', ...apps.map((a) => a.identity)], cmds);
  return { ...base, launch: apps };
}

const launches = (p: Plan) => p.actions.filter((a): a is LaunchAppAction => a.kind === 'launch-app');
const d = desired([{ ips: M, roles: ['master'] }, { ips: N, roles: ['node'] }]);

function created(img: ImageInfo) {
  const p = plan({ desired: d, image: img });
  return { p, state: simulate(p, d, undefined) };
}

describe('planner: LAUNCH', () => {
  const v1 = withApps('v1', [app('first', 'f1'), app('second', 's1')]);

  test('apps launch on master0 after every join and the CMDs, in LAUNCH order', () => {
    const { p, state } = created(v1);
    assertDag(p);
    const l = launches(p);
    expect(l.map((a) => [a.id, a.host, a.reason])).toEqual([
      ['launch-app:first', '10.0.0.2', 'new cluster'],
      ['launch-app:second', '10.0.0.2', 'new cluster'],
    ]);
    expect(l[0].deps).toEqual(expect.arrayContaining(['hook:init-master0:10.0.0.2', 'hook:join-master:10.0.0.3', 'hook:join-node:10.0.0.5', 'run-cmd:0']));
    expect(l[1].deps).toContain('launch-app:first');
    // Listed after the CMD, before the bookkeeping, which waits for them.
    const order = p.actions.map((a) => a.id);
    expect(order.indexOf('run-cmd:0')).toBeLessThan(order.indexOf('launch-app:first'));
    expect(order.indexOf('launch-app:second')).toBeLessThan(order.indexOf('set-image'));
    expect((p.actions.find((a) => a.id === 'set-image') as Extract<Action, { kind: 'set-image' }>).deps).toContain('launch-app:second');
    expect(l[0]).toMatchObject({ dir: 'application/apps/first', cmds: ['sh ./first.sh'], identity: v1.launch![0].identity });
    expect(state.appsLaunched).toEqual({ first: v1.launch![0].identity, second: v1.launch![1].identity });
    expect(plan({ desired: d, image: v1, state }).actions).toEqual([]);
    expect(renderPlanText(p)).toMatch(/~ launch app first \(shell\) on 10\.0\.0\.2 +# new cluster/);
  });

  test('a changed app re-runs alone; the CMD and the other app do not', () => {
    const { state } = created(v1);
    const v2 = withApps('v2', [app('first', 'f1'), app('second', 's2')]);
    // The CMD's identity is unchanged (as when only the app's own layer changed and the CMD comes before it).
    v2.cmds = v1.cmds;
    const p = plan({ desired: d, image: v2, state });
    assertDag(p);
    expect(launches(p).map((a) => [a.app, a.reason])).toEqual([['second', 'app changed']]);
    expect(p.actions.some((a) => a.kind === 'run-cmd')).toBe(false);
    expect(p.summary.change).toBeGreaterThanOrEqual(1);
    const after = simulate(p, d, state);
    expect(after.appsLaunched).toEqual({ first: v1.launch![0].identity, second: v2.launch![1].identity });
    expect(after.image?.launch).toEqual(v2.launch!.map((l) => ({ app: l.app, identity: l.identity })));
    expect(plan({ desired: d, image: v2, state: after }).actions).toEqual([]);
  });

  test('changed commands re-run the app; a new app runs as new; a dropped app is forgotten', () => {
    const { state } = created(v1);
    const v2 = withApps('v2', [app('first', 'f1', ['sh ./first.sh --again']), app('third', 't1')]);
    v2.cmds = v1.cmds;
    const p = plan({ desired: d, image: v2, state });
    expect(launches(p).map((a) => [a.app, a.reason])).toEqual([
      ['first', 'app changed'],
      ['third', 'new app'],
    ]);
    const after = simulate(p, d, state);
    expect(Object.keys(after.appsLaunched ?? {}).sort()).toEqual(['first', 'third']);
    // Launched again later, unchanged: it runs again, as the cluster no longer has it.
    const back = plan({ desired: d, image: v1, state: after });
    expect(launches(back).map((a) => [a.app, a.reason])).toEqual([
      ['first', 'app changed'],
      ['second', 'new app'],
    ]);
  });

  test('a failed launch is retried by the next plan, and the apps after it still run in order', () => {
    const { p } = created(v1);
    const upTo = p.actions.findIndex((a) => a.id === 'launch-app:first');
    // Everything before the first launch succeeded; the launch itself failed.
    const partial = simulate(p, d, undefined, upTo);
    const next = plan({ desired: d, image: v1, state: partial });
    assertDag(next);
    expect(launches(next).map((a) => [a.app, a.reason])).toEqual([
      ['first', 'new cluster'],
      ['second', 'new cluster'],
    ]);
    expect(next.actions.some((a) => a.kind === 'run-cmd' || a.kind === 'hook')).toBe(false);
    // After the first launch succeeded and the second failed, only the second is left (and the bookkeeping).
    const more = simulate(p, d, undefined, upTo + 1);
    expect(plan({ desired: d, image: v1, state: more }).actions.map((a) => a.id)).toEqual(['launch-app:second', 'set-image']);
  });

  test('a new master0 (the old one removed) launches nothing again: launches belong to the cluster', () => {
    const { state } = created(v1);
    const d2 = desired([{ ips: ['10.0.0.3'], roles: ['master'] }, { ips: N, roles: ['node'] }]);
    const p = plan({ desired: d2, image: v1, state });
    expect(p.master0).toBe('10.0.0.3');
    expect(launches(p)).toEqual([]);
  });

  test('an image with no LAUNCH plans no launches and leaves the state without any', () => {
    const img = makeImage('plain', ['base'], ['echo cmd']);
    const { p, state } = created(img);
    expect(launches(p)).toEqual([]);
    expect(state.appsLaunched).toBeUndefined();
    expect(state.image?.launch).toBeUndefined();
  });
});
