/**
 * The executor's own cost on a large plan: a fresh cluster's plan executed with a fake, instant transport (each step
 * only builds what the SSH runner would send: a hook's environment), recording into a real local state file. What
 * is left is the executor's bookkeeping: scheduling, recording, and the state writes. A bench only: tests run steps
 * on real hosts.
 */
import { join } from 'node:path';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { plan } from '../../plans/planner.js';
import type { Action } from '../../plans/actions.js';
import { execute } from '../../engine/executor/executor.js';
import { hookEnv } from '../../engine/executor/hook-env.js';
import type { RunContext } from '../../engine/executor/run-action.js';
import { ImageStore } from '../../engine/image/store.js';
import { LocalStateBackend, createState } from '../../state/local.js';
import type { ClusterState } from '../../state/model.js';
import { syntheticCluster, syntheticImage } from './synthetic.js';
import { round } from './stats.js';

export interface ExecFigures {
  hosts: number;
  actions: number;
  parallelism: number;
  ms: number;
  /** Whole-state writes the apply made (each holds every result recorded since the one before). */
  stateWrites: number;
  stateBytes: number;
  /** Mean time one write took (the local backend: read, encode, backup and state written atomically). */
  writeMeanMs: number;
}

export async function benchExecutor(opts: { hosts: number; layers: number; parallelism: number }): Promise<ExecFigures> {
  const image = syntheticImage('v1', opts.layers);
  const desired = syntheticCluster(opts.hosts, 3, image.ref);
  const p = plan({ desired, image });
  const dir = mkdtempSync(join(tmpdir(), 'ci-exec-bench-'));
  try {
    const real = new LocalStateBackend(join(dir, 'state.json'));
    let writes = 0;
    let writeMs = 0;
    // The real backend, timed: every write goes through it.
    const backend = Object.create(real) as LocalStateBackend;
    backend.write = async (s: ClusterState, o?: { keepSerial?: boolean }) => {
      const t0 = performance.now();
      try {
        return await real.write(s, o);
      } finally {
        writes++;
        writeMs += performance.now() - t0;
      }
    };
    const state = await real.write(createState(desired.name, desired.provider));
    writes = 0;
    const ctx: RunContext = {
      plan: p,
      desired,
      state,
      store: new ImageStore(dir),
      provider: {} as never,
      connections: { drop: async () => {} } as never,
      reporter: { event: () => {} },
      bytesSent: new Map(),
      uplink: { bytes: 0 },
    };
    // What the SSH runner builds before it sends a step; the step itself then answers at once.
    const run = async (c: RunContext, a: Action) => {
      if (a.kind === 'hook' || a.kind === 'run-cmd') hookEnv(c, a);
      await new Promise((r) => setImmediate(r));
      return {};
    };
    const t0 = performance.now();
    const r = await execute(ctx, { parallelism: opts.parallelism, backend, run });
    const ms = performance.now() - t0;
    if (r.failed.length || r.completed.length !== p.actions.length) throw new Error(`the synthetic apply did not complete: ${r.failed.length} failed`);
    return {
      hosts: opts.hosts,
      actions: p.actions.length,
      parallelism: opts.parallelism,
      ms: round(ms),
      stateWrites: writes,
      stateBytes: statSync(join(dir, 'state.json')).size,
      writeMeanMs: round(writes ? writeMs / writes : 0),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
