/**
 * Terraform's verbs on LOCAL light hosts, through the `ci` CLI: `ci apply --target` makes one node and what it needs
 * (master0), and nothing else; the full apply does the rest; `ci state rm` forgets a node, which the next apply
 * takes as new (its host was left as it was); `ci plan --destroy --out` shows and saves the destroy, changing
 * nothing; and `ci apply` of that plan destroys the cluster, leaving nothing of its lab behind.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { relayOwner } from '../engine/executor/relay.js';
import { cleanupHome, clusterDoc, describeRun, labExec, labFootprint, leftovers, makeHome, serialSteps, writeClusterfile, type E2eHome, type LabFootprint } from './helpers/e2e.js';

const CLUSTER = 'verbs-e2e';
const M0 = `${CLUSTER}-master-1`;
const N1 = `${CLUSTER}-node-1`;
const N2 = `${CLUSTER}-node-2`;
/** Every hook leaves a line on its host, so what ran where is read back from the hosts themselves. */
const HOOK = 'echo "$0" >> /root/hooks.log\n';

describe.skipIf(!labsAvailable())('apply --target, state rm and plan --destroy on LOCAL hosts', () => {
  let home: E2eHome;
  let cf: string;
  let footprint: LabFootprint | undefined;
  const step = serialSteps(300_000);

  const ci = async (args: string[], code = 0) => {
    const r = await home.ci(args);
    expect(r.code, describeRun(args, r)).toBe(code);
    return r;
  };
  const hooksRan = async (host: string) =>
    (await labExec(home.labDir(CLUSTER), host, 'cat /root/hooks.log 2>/dev/null || true')).stdout.trim().split('\n').filter(Boolean).map((l) => l.split('/').pop());

  beforeAll(async () => {
    home = makeHome('ci-e2e-verbs-');
    const src = join(home.dir, 'image');
    mkdirSync(join(src, 'hooks'), { recursive: true });
    for (const name of ['init-host', 'init-master0', 'join-node', 'reconfigure', 'clean']) {
      writeFileSync(join(src, 'hooks', name), `#!/bin/sh\nset -eu\n${HOOK}`);
      chmodSync(join(src, 'hooks', name), 0o755);
    }
    writeFileSync(join(src, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\nCMD echo cmd >> /root/hooks.log\n');
    await home.ciOk(['build', '-q', '-t', 'verbs-e2e:v1', src]);
    cf = writeClusterfile(
      join(home.dir, 'Clusterfile'),
      clusterDoc(CLUSTER, { image: 'verbs-e2e:v1', provider: 'LOCAL', hosts: [{ count: 1, roles: ['master'] }, { count: 2, roles: ['node'] }] }),
    );
  }, 120_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, [cf]);
  }, 300_000);

  step('apply --target one node makes it and master0, and nothing else; the summary says the apply was partial', async () => {
    const r = await ci(['apply', '-f', cf, '--target', N1, '--auto-approve']);
    expect(r.stdout).toContain(`ci will apply cluster ${CLUSTER} with image verbs-e2e:v1`);
    expect(r.stdout).toContain(`only for ${N1} and what it needs:`);
    expect(r.stdout).toContain('Note: --target given: this plan is partial; run `ci plan` without --target to see what else differs.');
    expect(r.stdout).toContain(`Only ${N1} and what they need were applied (--target); run \`ci plan\` to see what else differs.`);
    const state = home.readState(CLUSTER)!;
    expect(Object.keys(state.hosts).sort()).toEqual([M0, N1]);
    expect(state.image).toBeUndefined(); // set-image is the whole cluster's
    expect(await hooksRan(M0)).toEqual(['init-host', 'init-master0']);
    expect(await hooksRan(N1)).toEqual(['init-host', 'join-node']);
    footprint = await labFootprint(home.labDir(CLUSTER));
  });

  step('the full plan then holds exactly the rest: node-2, the CMD and set-image', async () => {
    const plan = await ci(['plan', '-f', cf, '--detailed-exitcode'], 2);
    expect(plan.stdout).not.toContain('Note: --target');
    expect(plan.stdout).toContain(`+ host ${N2}`);
    expect(plan.stdout).toContain('run CMD');
    expect(plan.stdout).toContain('set image verbs-e2e:v1');
    expect(plan.stdout).not.toContain('init-master0');
    // Left on master0 by an earlier, killed apply of this cluster (a partial layer, an upload temp), and by another
    // cluster's apply in flight. master0 is sent nothing now, but it runs the CMD: the finished apply removes them.
    const owner = relayOwner(CLUSTER, home.readState(CLUSTER)!.lineage);
    const layers = '/var/lib/cloudimage/layers';
    const stale = [`${'ab'.repeat(32)}.tar.gz.${owner}.partial`, `${'ab'.repeat(32)}.tar.gz.ci-${owner}-0123456789ab.tmp`];
    const theirs = `${'ab'.repeat(32)}.tar.gz.${'0'.repeat(12)}.partial`;
    await labExec(home.labDir(CLUSTER), M0, `mkdir -p ${layers} && cd ${layers} && touch ${[...stale, theirs].join(' ')}`);
    await ci(['apply', '-f', cf, '--auto-approve']);
    expect((await labExec(home.labDir(CLUSTER), M0, `cd ${layers} && ls | grep -v '\\.tar\\.gz$' || true`)).stdout.trim().split('\n')).toEqual([theirs]);
    await ci(['plan', '-f', cf, '--detailed-exitcode'], 0);
    expect(await hooksRan(N2)).toEqual(['init-host', 'join-node']);
    // master0 and node-1 joined knowing the whole membership: no reconfigure for them.
    expect(await hooksRan(M0)).toEqual(['init-host', 'init-master0', 'cmd']);
    footprint = await labFootprint(home.labDir(CLUSTER));
  });

  step('state rm forgets a node without touching it; the next apply takes it as new', async () => {
    const before = home.readState(CLUSTER)!;
    const r = await ci(['state', 'rm', N2, '-f', cf]);
    expect(r.stdout).toContain(`Removed 1 host from the state ${home.statePath(CLUSTER)} (serial ${before.serial} -> ${before.serial + 1}):\n  ${N2} (`);
    expect(r.stdout).toContain(`${N2} was made by provider LOCAL; forgetting does not delete it.`);
    expect(Object.keys(home.readState(CLUSTER)!.hosts).sort()).toEqual([M0, N1]);
    // Nothing was done on it.
    expect(await hooksRan(N2)).toEqual(['init-host', 'join-node']);
    const master0 = await ci(['state', 'rm', M0, '-f', cf], 64);
    expect(master0.stderr).toContain(`error: ${M0} is master0 of cluster ${CLUSTER}`);
    const plan = await ci(['plan', '-f', cf, '--detailed-exitcode'], 2);
    expect(plan.stdout).toContain(`+ host ${N2}`);
    expect(plan.stdout).toContain('hook join-node');
    await ci(['apply', '-f', cf, '--target', N2, '--auto-approve']);
    expect(await hooksRan(N2)).toEqual(['init-host', 'join-node', 'init-host', 'join-node']);
    await ci(['plan', '-f', cf, '--detailed-exitcode'], 0);
  });

  step('plan --destroy shows and saves what destroy does, changing nothing; apply of that plan destroys the cluster', async () => {
    const stateText = readFileSync(home.statePath(CLUSTER), 'utf8');
    const planFile = join(home.dir, 'destroy.plan');
    const plan = await ci(['plan', '-f', cf, '--destroy', '--detailed-exitcode', '--out', planFile], 2);
    expect(plan.stdout).toMatch(new RegExp(`^ci will destroy cluster ${CLUSTER}:\\n`));
    for (const h of [M0, N1, N2]) expect(plan.stdout).toContain(`- host ${h}`);
    expect(plan.stdout).toContain('Plan: 0 to add, 0 to change, 3 to destroy.');
    const json = JSON.parse((await ci(['plan', '-f', cf, '--destroy', '--json'])).stdout);
    expect(json.operation).toBe('destroy');
    expect(readFileSync(home.statePath(CLUSTER), 'utf8')).toBe(stateText);
    expect(await hooksRan(M0)).not.toContain('clean');
    const r = await ci(['apply', '-f', cf, planFile]);
    expect(r.stdout).toMatch(/Destroy complete! \d+ done, 0 failed/);
    const state = home.readState(CLUSTER)!;
    expect(state.hosts).toEqual({});
    expect(await leftovers(footprint!)).toEqual({ netns: [], links: [], procs: [], dir: false });
    // The plan ran once: against the emptied state it is stale.
    const again = await ci(['apply', '-f', cf, planFile], 1);
    expect(again.stderr).toContain('hint: run `ci plan --destroy` again and review the new plan');
  });
});
