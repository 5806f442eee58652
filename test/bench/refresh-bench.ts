/**
 * Refresh cost. Synthetic: a converged state of thousands of hosts, each host's answer generated as the text it
 * would print (no SSH), parsed, compared and planned from, with 1% of hosts drifted. Local: a cluster of light
 * local hosts asked over SSH, shallow and deep, against a plan without refresh; the cluster is destroyed afterwards.
 */
import { promises as fs, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { plan } from '../../plans/planner.js';
import { refreshState, type HostAnswer } from '../../plans/drift.js';
import { parseRefreshAnswer } from '../../engine/executor/refresh.js';
import { applyCluster, destroyCluster, planCluster } from '../../engine/executor/converge.js';
import { labDirFor } from '../../providers/local/provider.js';
import { LocalLab } from '../../providers/local/lab.js';
import type { ClusterState } from '../../state/model.js';
import { simulate } from '../planner.helpers.js';
import { syntheticCluster, syntheticImage } from './synthetic.js';
import { CI_BIN, localClusterfile, run, writeImageContext } from './fixture.js';
import { round, summarize, timeOnce, timeSync, type Timing } from './stats.js';

export interface SyntheticRefreshFigures {
  hosts: number;
  layers: number;
  driftedHosts: number;
  /** Parsing every host's answer text. */
  parse: Timing & { answerBytes: number };
  /** Answers compared with the state (drift and refreshed state). */
  compare: Timing & { driftItems: number };
  /** The plan from the refreshed state. */
  plan: Timing & { actions: number };
}

/** The text a host that holds `layers` and the rootfs of `image` prints; `drop` leaves out one layer. */
function answerText(state: ClusterState, key: string, drop: boolean): string {
  const hs = state.hosts[key];
  const lines = ['__ci_refresh__ begin'];
  hs.layers.forEach((d, i) => {
    if (!(drop && i === 0)) lines.push(`L ${d.slice(7)}.tar.gz ${1_000_000 + i * 4096} 1700000000.0`);
  });
  lines.push('R present 4242', 'D', 'C present', '==> lineage <==', state.lineage, '');
  lines.push('==> rootfs.id <==', `image ${hs.rootfsImage}`, 'config -', 'inode 4242', '');
  for (const [h, d] of Object.entries(hs.hooks)) lines.push(`==> done/${h} <==`, d!, '');
  lines.push('__ci_refresh__ end');
  return lines.join('\n') + '\n';
}

export function benchRefreshSynthetic(opts: { hosts: number; layers: number; runs: number }): SyntheticRefreshFigures {
  const image = syntheticImage('v1', opts.layers);
  const desired = syntheticCluster(opts.hosts, 3, image.ref);
  const state = simulate(plan({ desired, image }), desired, undefined);
  const sizes = new Map(image.layers.map((l) => [l.digest, l.size]));
  const keys = Object.keys(state.hosts);
  const drifted = new Set(keys.filter((_, i) => i % 100 === 7));
  const texts = keys.map((k) => answerText(state, k, drifted.has(k)));
  const answerBytes = texts.reduce((n, t) => n + t.length, 0);

  const parsed = timeSync(opts.runs, () => keys.map((host, i): HostAnswer => ({ host, found: parseRefreshAnswer(texts[i])! })));
  const compared = timeSync(opts.runs, () => refreshState(state, parsed.result, { depth: 'shallow', sizeOf: (d) => sizes.get(d) }));
  const planned = timeSync(opts.runs, () => plan({ desired, image, state: compared.result.state, refresh: compared.result.refresh }));
  if (planned.result.actions.length !== drifted.size) {
    throw new Error(`expected one send-layers step per drifted host (${drifted.size}), got ${planned.result.actions.length} actions`);
  }
  return {
    hosts: opts.hosts,
    layers: opts.layers,
    driftedHosts: drifted.size,
    parse: { ...parsed.timing, answerBytes },
    compare: { ...compared.timing, driftItems: compared.result.refresh.drift.length },
    plan: { ...planned.timing, actions: planned.result.actions.length },
  };
}

export interface LocalRefreshFigures {
  hosts: number;
  /** `ci plan` by planCluster: no refresh, shallow, deep (the store is small here). */
  planNoRefresh: Timing;
  planShallow: Timing;
  planDeep: Timing;
  error?: string;
}

export async function benchRefreshLocal(opts: { hosts: number; runs: number; log: (line: string) => void }): Promise<LocalRefreshFigures> {
  const work = await fs.mkdtemp(join(tmpdir(), 'ci-bench-refresh-'));
  const home = join(work, 'home');
  const env = { ...process.env, CI_HOME: home };
  const name = `bench-refresh-n${opts.hosts}`;
  const clusterfile = join(work, `${name}.yaml`);
  const base = { clusterfile, home, env, confirm: async () => true, reporter: () => ({ event: () => undefined }) };
  try {
    const ctx = join(work, 'context');
    await writeImageContext(ctx, 100_000);
    opts.log(`refresh: building the image, applying ${opts.hosts} local hosts`);
    await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'bench-refresh:v1', ctx], { env });
    await fs.writeFile(clusterfile, localClusterfile(name, 'bench-refresh:v1', opts.hosts));
    const applied = await applyCluster(base);
    if (applied.result && applied.result.failed.length > 0) throw new Error(`apply failed: ${applied.result.failed.map((f) => f.error.message).join('; ')}`);
    const time = async (refresh: 'off' | 'shallow' | 'deep') => {
      const samples: number[] = [];
      for (let i = 0; i < opts.runs; i++) {
        const t0 = performance.now();
        const p = await planCluster({ clusterfile, home, env, refresh });
        samples.push(performance.now() - t0);
        if (p.plan.actions.length !== 0 || p.warnings.length !== 0) throw new Error(`refresh ${refresh}: expected no changes and no warnings`);
      }
      return summarize(samples);
    };
    opts.log('refresh: timing plans');
    return { hosts: opts.hosts, planNoRefresh: await time('off'), planShallow: await time('shallow'), planDeep: await time('deep') };
  } catch (err) {
    const none = { medianMs: 0, minMs: 0, maxMs: 0, runs: 0 };
    return { hosts: opts.hosts, planNoRefresh: none, planShallow: none, planDeep: none, error: (err as Error).message };
  } finally {
    opts.log('refresh: destroying the bench cluster');
    const destroyed = await timeOnce(() => destroyCluster(base).catch(() => undefined));
    opts.log(`refresh: destroyed in ${round(destroyed.ms)} ms`);
    const dir = labDirFor(home, name);
    if (existsSync(join(dir, 'lab.json'))) await (await LocalLab.open(dir)).destroy();
    await fs.rm(work, { recursive: true, force: true });
  }
}
