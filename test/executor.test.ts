import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { execute } from '../engine/executor/executor.js';
import type { RunContext } from '../engine/executor/run-action.js';
import type { ExecEvent } from '../engine/executor/events.js';
import { TransientError } from '../engine/kernel/errors.js';
import { plan as makePlan } from '../plans/planner.js';
import type { Action } from '../plans/actions.js';
import { LocalStateBackend, createState } from '../state/local.js';
import { ImageStore } from '../engine/image/store.js';
import { removeDir, tempDir } from './helpers/tmp.js';
import { clusterYaml, desired as desiredOf, makeImage } from './planner.helpers.js';
import { parseClusterfile } from '../engine/clusterfile/index.js';

const imageInfo = (tag: string) => makeImage(tag, ['base', 'conf'], ['echo hi']);

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) removeDir(dirs.pop()!);
});

function setup() {
  const dir = tempDir('ci-exec-');
  dirs.push(dir);
  const desired = desiredOf([
    { ips: ['10.0.0.2', '10.0.0.3', '10.0.0.4'], roles: ['master'] },
    { ips: ['10.0.0.5', '10.0.0.6'], roles: ['node'] },
  ]);
  const image = imageInfo('v1');
  const p = makePlan({ desired, image });
  const state = createState(desired.name, desired.provider);
  const backend = new LocalStateBackend(join(dir, 'state.json'));
  const events: ExecEvent[] = [];
  const ctx: RunContext = {
    plan: p,
    desired,
    state,
    store: new ImageStore(dir),
    provider: {} as never,
    connections: { drop: async () => {} } as never,
    reporter: { event: (e) => events.push(e) },
    bytesSent: new Map(),
    uplink: { bytes: 0 },
  };
  return { desired, image, p, state, backend, events, ctx };
}

describe('executor scheduling', () => {
  it('runs every action after its deps, each dep already durable in the state on disk', async () => {
    const { p, backend, ctx } = setup();
    const order: string[] = [];
    const r = await execute(ctx, {
      parallelism: 4,
      backend,
      run: async (_c, a) => {
        const onDisk = await backend.read();
        for (const id of a.deps) {
          expect(order).toContain(id);
          const dep = p.actions.find((x) => x.id === id)!;
          if (dep.kind === 'hook') expect(onDisk?.hosts[dep.host]?.hooks[dep.hook]).toBe(dep.image);
          if (dep.kind === 'send-layers') expect(onDisk?.hosts[dep.host]?.layers).toEqual(expect.arrayContaining(dep.layers));
          if (dep.kind === 'unpack') expect(onDisk?.hosts[dep.host]?.rootfsImage).toBe(dep.image);
        }
        order.push(a.id);
        return {};
      },
    });
    expect(r.failed).toEqual([]);
    expect(order).toHaveLength(p.actions.length);
    // Everything recorded: planning again against the final state gives nothing to do.
    const again = makePlan({ desired: ctx.desired!, image: imageInfo('v1'), state: (await backend.read())! });
    expect(again.actions).toEqual([]);
  });

  it('a failed host skips only what depends on it; the next plan holds just the missing steps', async () => {
    const { desired, backend, ctx, events } = setup();
    const node = desired.hosts.find((h) => !h.roles.includes('master'))!.key;
    const r = await execute(ctx, {
      parallelism: 3,
      backend,
      run: async (_c, a: Action) => {
        if (a.id === `hook:init-host:${node}`) throw new Error('disk full');
        return {};
      },
    });
    expect(r.failed.map((f) => f.action.id)).toEqual([`hook:init-host:${node}`]);
    expect(r.skipped.map((a) => a.id)).toContain(`hook:join-node:${node}`);
    expect(r.skipped.map((a) => a.id)).toContain('set-image');
    // Independent hosts finished.
    expect(r.completed.map((a) => a.id)).toContain(`hook:join-node:${desired.hosts[4].key === node ? desired.hosts[3].key : desired.hosts[4].key}`);
    expect(events.some((e) => e.type === 'action-failed')).toBe(true);
    const next = makePlan({ desired, image: imageInfo('v1'), state: (await backend.read())! });
    const ids = next.actions.map((a) => a.id);
    expect(ids).toContain(`hook:init-host:${node}`);
    expect(ids).toContain(`hook:join-node:${node}`);
    expect(ids.filter((i) => i.startsWith('send-layers:'))).toEqual([]);
    expect(ids.some((i) => i.includes(desired.hosts[0].key))).toBe(false);
  });

  it('retries transient failures with backoff and reports each retry', async () => {
    const { backend, ctx, events } = setup();
    let failures = 0;
    const r = await execute(ctx, {
      parallelism: 2,
      backend,
      retryBaseMs: 1,
      run: async (_c, a) => {
        if (a.kind === 'send-layers' && failures < 2) {
          failures++;
          throw new TransientError('SSH_CONNECTION_LOST', 'connection reset');
        }
        return {};
      },
    });
    expect(r.failed).toEqual([]);
    expect(events.filter((e) => e.type === 'action-retry')).toHaveLength(2);
  });

  it('an interrupt stops new steps, keeps what finished, and leaves the rest for the next apply', async () => {
    const { desired, backend, ctx } = setup();
    const ctl = new AbortController();
    let n = 0;
    const r = await execute(ctx, {
      parallelism: 1,
      backend,
      signal: ctl.signal,
      run: async () => {
        if (++n === 3) ctl.abort();
        return {};
      },
    });
    expect(r.interrupted).toBe(true);
    expect(r.completed).toHaveLength(3);
    const next = makePlan({ desired, image: imageInfo('v1'), state: (await backend.read())! });
    expect(next.actions.length).toBe(ctx.plan.actions.length - 3);
  });

  it('frees a slot while its result is written; dependents start only once it is on disk; writes are shared', async () => {
    const { p, backend, ctx } = setup();
    // The real backend, counted and slowed, so many results finish while one write is under way.
    let writes = 0;
    let writing = 0;
    let startedDuringWrite = 0;
    const slow = Object.create(backend) as LocalStateBackend;
    slow.write = async (s, o) => {
      writes++;
      writing++;
      await new Promise((r) => setTimeout(r, 30));
      try {
        return await backend.write(s, o);
      } finally {
        writing--;
      }
    };
    const byId = new Map(p.actions.map((a) => [a.id, a]));
    const r = await execute(ctx, {
      parallelism: 2,
      backend: slow,
      run: async (_c, a) => {
        if (writing > 0) startedDuringWrite++;
        const onDisk = await backend.read();
        for (const id of a.deps) {
          const dep = byId.get(id)!;
          if (dep.kind === 'hook') expect(onDisk?.hosts[dep.host]?.hooks[dep.hook], `${a.id} started before ${id} was written`).toBe(dep.image);
          if (dep.kind === 'send-layers') expect(onDisk?.hosts[dep.host]?.layers).toEqual(expect.arrayContaining(dep.layers));
          if (dep.kind === 'unpack') expect(onDisk?.hosts[dep.host]?.rootfsImage).toBe(dep.image);
        }
        return {};
      },
    });
    expect(r.failed).toEqual([]);
    expect(r.completed).toHaveLength(p.actions.length);
    // Independent steps went on while results were being written, and writes held several results each.
    expect(startedDuringWrite).toBeGreaterThan(0);
    expect(writes).toBeLessThan(p.actions.length);
    const again = makePlan({ desired: ctx.desired!, image: imageInfo('v1'), state: (await backend.read())! });
    expect(again.actions).toEqual([]);
  });

  it('an apply stopped while a write is under way has every finished step on disk once it returns', async () => {
    const { desired, p, backend, ctx } = setup();
    const ctl = new AbortController();
    const slow = Object.create(backend) as LocalStateBackend;
    slow.write = async (s, o) => {
      await new Promise((r) => setTimeout(r, 20));
      return backend.write(s, o);
    };
    let n = 0;
    const r = await execute(ctx, {
      parallelism: 3,
      backend: slow,
      signal: ctl.signal,
      run: async () => {
        if (++n === 7) ctl.abort();
        return {};
      },
    });
    expect(r.interrupted).toBe(true);
    const onDisk = (await backend.read())!;
    const next = makePlan({ desired, image: imageInfo('v1'), state: onDisk });
    // Exactly the steps that did not finish are left: nothing finished was lost, nothing unfinished recorded.
    expect(next.actions.map((a) => a.id).sort()).toEqual(p.actions.filter((a) => !r.completed.includes(a)).map((a) => a.id).sort());
  });
  // Counts how many of each kind run at once; every step waits a little so overlaps show.
  async function peaks(ctx: RunContext, backend: LocalStateBackend, opts: { parallelism: number; transfers?: number }) {
    let sends = 0;
    let others = 0;
    const peak = { sends: 0, others: 0, all: 0 };
    const r = await execute(ctx, {
      ...opts,
      backend,
      run: async (_c, a) => {
        const send = a.kind === 'send-layers';
        if (send) peak.sends = Math.max(peak.sends, ++sends);
        else peak.others = Math.max(peak.others, ++others);
        peak.all = Math.max(peak.all, sends + others);
        await new Promise((res) => setTimeout(res, 30));
        if (send) sends--;
        else others--;
        return {};
      },
    });
    expect(r.failed).toEqual([]);
    return peak;
  }

  it('relayed layer sends run under their own cap, so every host receives at once while other steps keep --parallelism', async () => {
    const { desired, backend, ctx } = setup();
    const hosts = desired.hosts.length;
    // With a relay, sends are the hosts' chain: all five receive together although parallelism is 2.
    const relayed = await peaks({ ...ctx, relay: {} as never }, backend, { parallelism: 2 });
    expect(relayed).toMatchObject({ sends: hosts, others: 2 });
    // Without one, every send leaves this machine and counts against parallelism like any step.
    const b = setup();
    expect((await peaks(b.ctx, b.backend, { parallelism: 2 })).all).toBe(2);
    // --transfers bounds the relayed sends.
    const c = setup();
    expect((await peaks({ ...c.ctx, relay: {} as never }, c.backend, { parallelism: 2, transfers: 3 })).sends).toBe(3);
  });
  it('passes gates without running, reporting or counting them, and what waits for one still waits for its deps', async () => {
    const { backend, ctx, events } = setup();
    const text = `${clusterYaml([{ ips: ['10.0.0.2'], roles: ['master'] }, { ips: ['10.0.0.5', '10.0.0.6'], roles: ['node'] }])}---
apiVersion: sealer.io/v1
kind: Plugin
metadata: {name: swap}
spec:
  type: SHELL
  action: PreInstall
  on: "master,node"
  data: |
    swapoff -a
`;
    const d = parseClusterfile(text, 'Clusterfile', {});
    const p = makePlan({ desired: d, image: imageInfo('v1') });
    const gates = p.actions.filter((a) => a.kind === 'gate');
    expect(gates.map((g) => g.id)).toEqual(['gate:pre-install']);
    const ran: string[] = [];
    const r = await execute({ ...ctx, plan: p, desired: d }, {
      parallelism: 3,
      backend,
      run: async (_c, a) => {
        expect(a.kind).not.toBe('gate');
        // Every host's install after every host's pre-install step.
        if (a.kind === 'hook' && (a.hook === 'init-host' || a.hook.startsWith('join') || a.hook === 'init-master0')) {
          for (const h of d.hosts) expect(ran).toContain(`plugin:swap:${h.key}`);
        }
        ran.push(a.id);
        return {};
      },
    });
    expect(r.failed).toEqual([]);
    expect(r.completed).toHaveLength(p.actions.length - 1);
    expect(events.some((e) => 'action' in e && e.action.kind === 'gate')).toBe(false);
  });
});

