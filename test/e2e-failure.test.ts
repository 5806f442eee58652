/**
 * Failure and recovery on real hosts: one host's network is cut while its hook runs. The other hosts finish, the
 * apply reports the failure naming that host, and the state records exactly what finished; once the link is back,
 * the next plan holds only the missing steps and the next apply completes. Also: a second apply while the state is
 * locked fails at once and names the holder.
 *
 * The failing apply runs in-process to shorten the connection timeouts (the CLI's defaults would spend minutes
 * retrying an unreachable host); it uses the CLI's own reporter and summary, and the rest goes through `ci`.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, clusterDoc, labExec, makeHome, writeClusterfile, type E2eHome } from './helpers/e2e.js';
import { applyCluster } from '../engine/executor/converge.js';
import type { ExecEvent, Reporter } from '../engine/executor/events.js';
import { LineReporter, renderSummary } from '../engine/cli/progress.js';
import { LocalLab } from '../providers/local/lab.js';
import { LocalStateBackend } from '../state/local.js';

const CLUSTER = 'fail-e2e';
const MASTER = `${CLUSTER}-master-1`;
const NODE = `${CLUSTER}-node-1`;
const VICTIM = `${CLUSTER}-node-2`;

const HOOKS: Record<string, string> = {
  'init-host': 'mkdir -p /var/lib/e2e && echo "$CI_HOST" > /var/lib/e2e/init-host',
  'init-master0': 'echo master0 > /var/lib/e2e/role',
  // Long enough to cut the link while it runs.
  'join-node': 'sleep 3; echo joined > /var/lib/e2e/joined',
  clean: 'rm -rf /var/lib/e2e',
};

function writeImageSource(dir: string): void {
  mkdirSync(join(dir, 'hooks'), { recursive: true });
  for (const [name, body] of Object.entries(HOOKS)) {
    writeFileSync(join(dir, 'hooks', name), `#!/bin/sh\nset -eu\n${body}\n`);
    chmodSync(join(dir, 'hooks', name), 0o755);
  }
  writeFileSync(join(dir, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\nCMD echo ran > /var/lib/e2e/cmd\n');
}

describe.skipIf(!labsAvailable())('an apply that loses a host midway, then resumes', () => {
  let home: E2eHome;
  let clusterfile: string;

  beforeAll(async () => {
    home = makeHome('ci-e2e-fail-');
    const src = join(home.dir, 'image');
    writeImageSource(src);
    await home.ciOk(['build', '-t', 'fail-e2e:v1', src]);
    clusterfile = writeClusterfile(
      join(home.dir, 'Clusterfile'),
      clusterDoc(CLUSTER, {
        image: 'fail-e2e:v1',
        provider: 'LOCAL',
        hosts: [
          { count: 1, roles: ['master'] },
          { count: 2, roles: ['node'] },
        ],
      }),
    );
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  it('finishes the other hosts, names the lost one, records what finished, and resumes with only the missing steps', async () => {
    let out = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        out += chunk.toString();
        done();
      },
    });
    const lines = new LineReporter(sink, { color: false });
    let cut: Promise<void> | undefined;
    const reporter: Reporter = {
      event(e: ExecEvent) {
        lines.event(e);
        if (e.type === 'action-start' && e.action.id === `hook:join-node:${VICTIM}` && !cut) {
          // Let the hook start on the host, then partition it.
          cut = new Promise((r) => setTimeout(r, 1000)).then(async () => (await LocalLab.open(home.labDir(CLUSTER))).cutLink(VICTIM));
        }
      },
    };

    const started = Date.now();
    let result;
    try {
      ({ result } = await applyCluster({
        clusterfile,
        home: home.dir,
        env: { ...process.env, ...home.env },
        confirm: async () => true,
        reporter: () => reporter,
        tuning: { timeoutMs: 2000, attempts: 1, keepaliveIntervalMs: 1000 },
      }));
    } finally {
      await cut?.catch(() => undefined);
      await lines.close();
    }
    expect(cut, 'the victim host never started join-node').toBeDefined();
    expect(Date.now() - started).toBeLessThan(120_000);
    expect(result).toBeDefined();
    const r = result!;

    // Only the victim's join failed; what needed it was skipped, everything else finished.
    expect(r.failed.map((f) => f.action.id), out).toEqual([`hook:join-node:${VICTIM}`]);
    expect(r.skipped.map((a) => a.id).sort()).toEqual(['run-cmd:0', 'set-image']);
    expect(r.completed.map((a) => a.id)).toEqual(expect.arrayContaining([`hook:init-master0:${MASTER}`, `hook:join-node:${NODE}`, `hook:init-host:${VICTIM}`]));
    // `ci apply` exits 1 exactly when something failed and nothing was interrupted.
    expect(r.interrupted).toBe(false);
    const summary = renderSummary(r, 'Apply');
    expect(summary).toMatch(new RegExp(`failed: ${VICTIM}: hook join-node`));
    expect(summary).toContain('run the same command again to resume');
    expect(out).toContain(`[${VICTIM}] hook join-node: FAILED`);

    const state = home.readState(CLUSTER)!;
    expect(state.hosts[MASTER].hooks['init-master0']).toBeDefined();
    expect(state.hosts[NODE].hooks['join-node']).toBeDefined();
    expect(state.hosts[VICTIM].hooks['init-host']).toBeDefined();
    expect(state.hosts[VICTIM].hooks['join-node']).toBeUndefined();
    expect(state.image).toBeUndefined();

    await (await LocalLab.open(home.labDir(CLUSTER))).restoreLink(VICTIM);

    const plan = await home.ciOk(['plan', '-f', clusterfile, '--json']);
    const ids = (JSON.parse(plan.stdout) as { actions: { id: string }[] }).actions.map((a) => a.id);
    expect(ids).toEqual([`hook:join-node:${VICTIM}`, 'run-cmd:0', 'set-image']);
    const planned = await home.ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(planned.code).toBe(2);

    const again = await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    expect(again.stdout).toContain('Apply complete! 3 done, 0 failed, 0 skipped');
    const after = home.readState(CLUSTER)!;
    expect(after.hosts[VICTIM].hooks['join-node']).toBeDefined();
    expect(after.image?.ref).toBe('fail-e2e:v1');
    const onVictim = await labExec(home.labDir(CLUSTER), VICTIM, 'cat /var/lib/e2e/joined');
    expect(onVictim.stdout).toBe('joined\n');
    const onMaster = await labExec(home.labDir(CLUSTER), MASTER, 'cat /var/lib/e2e/cmd');
    expect(onMaster.stdout).toBe('ran\n');
    const noop = await home.ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(noop.code, noop.stdout + noop.stderr).toBe(0);
  }, 600_000);

  it('refuses a second apply at once while the state is locked, naming the holder', async () => {
    const backend = new LocalStateBackend(home.statePath(CLUSTER));
    const lock = await backend.lock({ operation: 'apply' });
    try {
      const started = Date.now();
      const r = await home.ci(['apply', '-f', clusterfile, '--auto-approve']);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`is locked by`);
      expect(r.stderr).toContain(`(pid ${process.pid}, apply)`);
      expect(r.stderr).toContain(`ci force-unlock ${lock.info.id}`);
    } finally {
      await lock.release();
    }
    // Released: the same command works again (nothing to do).
    const ok = await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    expect(ok.stdout).toContain('No changes.');
  }, 120_000);

  it('`ci apply` exits 1 and names the host it cannot reach', async () => {
    // A new CMD makes a new image: every host gets the upgrade step.
    const src = join(home.dir, 'image');
    writeFileSync(join(src, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\nCMD echo ran2 > /var/lib/e2e/cmd\n');
    await home.ciOk(['build', '-t', 'fail-e2e:v2', src]);
    writeClusterfile(clusterfile, clusterDoc(CLUSTER, {
      image: 'fail-e2e:v2',
      provider: 'LOCAL',
      hosts: [
        { count: 1, roles: ['master'] },
        { count: 2, roles: ['node'] },
      ],
    }));
    const lab = await LocalLab.open(home.labDir(CLUSTER));
    await lab.cutLink(NODE);
    try {
      const started = Date.now();
      const r = await home.ci(['apply', '-f', clusterfile, '--auto-approve']);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(Date.now() - started).toBeLessThan(150_000);
      expect(r.stdout).toMatch(new RegExp(`failed: ${NODE}: stage rootfs \\w+[^:]*: root@${lab.host(NODE)!.ip.replace(/\./g, '\\.')}:22: cannot connect`));
      // Every new rootfs is staged before the roll: one that cannot be staged stops the roll before it starts.
      expect(r.stdout).toContain(`[${MASTER}] hook upgrade: skipped`);
      expect(r.stdout).toContain(`[${VICTIM}] hook upgrade: skipped`);
      expect(r.stdout).toContain('run the same command again to resume');
      const state = home.readState(CLUSTER)!;
      expect(state.hosts[MASTER].hooks.upgrade).toBeUndefined();
      expect(state.hosts[NODE].hooks.upgrade).toBeUndefined();
      // The members staged theirs beside the rootfs they run; the state still says they run v1.
      expect(state.hosts[MASTER].rootfsImage).toBe(state.image?.digest);
      expect(state.image?.ref).toBe('fail-e2e:v1');
    } finally {
      await lab.restoreLink(NODE);
    }
    await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    expect(home.readState(CLUSTER)!.image?.ref).toBe('fail-e2e:v2');
  }, 300_000);
});
