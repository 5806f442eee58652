/** `ci state rm` below the CLI: which hosts are forgotten, what else goes with the last one, what is refused. */
import { describe, expect, test } from 'vitest';
import { forgetHosts } from '../state/forget.js';
import { UsageError } from '../engine/kernel/errors.js';
import { plan } from '../plans/planner.js';
import type { ClusterState } from '../state/model.js';
import { desired, makeImage, simulate } from './planner.helpers.js';

const v1 = makeImage('v1', ['base'], ['echo ready']);
const d = desired([{ ips: ['10.0.0.2', '10.0.0.3'], roles: ['master'] }, { ips: ['10.0.0.5', '10.0.0.6'], roles: ['node'] }]);

function running(): ClusterState {
  const s = simulate(plan({ desired: d, image: v1 }), d, undefined);
  s.outputs = { TOKEN: 'join-t0ken' };
  s.hosts['10.0.0.6'].name = 'worker-2';
  return s;
}

const refusal = (fn: () => unknown): UsageError => {
  try {
    fn();
  } catch (e) {
    return e as UsageError;
  }
  throw new Error('not refused');
};

describe('forgetting hosts', () => {
  test('by key, IP or name, each once; the rest of the state is kept as it was', () => {
    const s = running();
    const before = structuredClone(s);
    const f = forgetHosts(s, ['10.0.0.5', 'worker-2', '10.0.0.5'], '/x/state.json');
    expect(f.removed.map((h) => h.key)).toEqual(['10.0.0.5', '10.0.0.6']);
    expect(Object.keys(f.state.hosts)).toEqual(['10.0.0.2', '10.0.0.3']);
    expect(f.emptied).toBe(false);
    const { hosts: _a, ...restAfter } = f.state;
    const { hosts: _b, ...restBefore } = before;
    expect(restAfter).toEqual(restBefore);
    // The state given is not changed.
    expect(s).toEqual(before);
  });

  test('the next plan treats a forgotten host still in the Clusterfile as new, and leaves the others alone', () => {
    const f = forgetHosts(running(), ['10.0.0.5'], 'state.json');
    const p = plan({ desired: d, image: v1, state: f.state });
    expect(p.hosts.find((h) => h.key === '10.0.0.5')?.impact).toBe('add');
    expect(p.actions.map((a) => a.id)).toEqual(['send-layers:10.0.0.5', 'unpack:10.0.0.5', 'hook:init-host:10.0.0.5', 'hook:join-node:10.0.0.5']);
    // Taken out of the Clusterfile too: nothing is done on it, the members that stay learn the new membership.
    const d2 = desired([{ ips: ['10.0.0.2', '10.0.0.3'], roles: ['master'] }, { ips: ['10.0.0.6'], roles: ['node'] }]);
    const p2 = plan({ desired: d2, image: v1, state: f.state });
    expect(p2.actions.every((a) => a.host !== '10.0.0.5')).toBe(true);
    expect(p2.actions.map((a) => a.id)).toEqual(['hook:reconfigure:10.0.0.2', 'hook:reconfigure:10.0.0.3', 'hook:reconfigure:10.0.0.6']);
  });

  test('unknown hosts are a usage error naming all of them, and nothing is forgotten', () => {
    const s = running();
    const err = refusal(() => forgetHosts(s, ['10.0.0.5', '10.0.0.9', 'nope'], '/x/state.json'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.exitCode).toBe(64);
    expect(err.message).toBe('hosts 10.0.0.9, nope are not in the state /x/state.json');
    expect(err.hint).toBe('run `ci state list --state /x/state.json` to see the hosts');
    expect(Object.keys(s.hosts)).toHaveLength(4);
  });

  test('master0 is refused while other hosts stay: the next plan would initialise the running cluster again', () => {
    const s = running();
    expect(s.master0).toBe('10.0.0.2');
    const err = refusal(() => forgetHosts(s, ['10.0.0.2', '10.0.0.5'], 'state.json'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe('10.0.0.2 is master0 of cluster demo: with it forgotten and 2 other hosts kept, the next plan would run init-master0 again on a running cluster');
    expect(err.hint).toContain('take 10.0.0.2 out of the Clusterfile and apply');
    // Why: without master0 the planner sees a cluster that was never initialised.
    const without = structuredClone(s);
    delete without.hosts['10.0.0.2'];
    expect(plan({ desired: d, image: v1, state: without }).actions.map((a) => a.id)).toContain('hook:init-master0:10.0.0.2');
  });

  test('every host at once: the state is left as destroy leaves one, infrastructure and lineage kept', () => {
    const s = running();
    // Recorded as a provider that makes infrastructure records it (BAREMETAL makes none: only the record matters here).
    s.infra = { vpc: { spec: 'sha256:aa' as never, data: { id: 'vpc-1' } } };
    const f = forgetHosts(s, ['10.0.0.2', '10.0.0.3', '10.0.0.5', '10.0.0.6'], 'state.json');
    expect(f.emptied).toBe(true);
    expect(f.state).toEqual({
      version: s.version,
      lineage: s.lineage,
      serial: s.serial,
      cluster: 'demo',
      provider: 'BAREMETAL',
      cmdsRun: [],
      outputs: {},
      hosts: {},
      infra: s.infra,
    });
    // The next plan makes the cluster anew: master0 initialised, the CMDs run.
    const p = plan({ desired: d, image: v1, state: { ...f.state, infra: undefined } });
    expect(p.actions.map((a) => a.id)).toEqual(expect.arrayContaining(['hook:init-master0:10.0.0.2', 'run-cmd:0', 'set-image']));
  });

  test('the only host, master0, can be forgotten', () => {
    const one = desired([{ ips: ['10.0.0.2'], roles: ['master'] }]);
    const s = simulate(plan({ desired: one, image: v1 }), one, undefined);
    const f = forgetHosts(s, ['10.0.0.2'], 'state.json');
    expect(f.emptied).toBe(true);
    expect(f.state.master0).toBeUndefined();
    expect(f.state.image).toBeUndefined();
  });
});
