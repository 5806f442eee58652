/**
 * sealer-style images on LOCAL light hosts, through the `ci` CLI: a base image with CMDS, an image FROM it with
 * sealer's usual COPY lines (`COPY imageList manifests` into the base's directory, `COPY x .`, `COPY . .` with a
 * .dockerignore), two APPs (a `*.sh` one and one with APPCMDS) and LAUNCH. Apply runs the CMD then the apps, in order, on master0 only,
 * each in its folder; a second apply runs nothing; changing one app's file re-runs that app alone; a YAML app on a
 * host without kubectl fails naming the app, the host and kubectl, having run nothing.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, clusterDoc, describeRun, labExec, makeHome, writeClusterfile, serialSteps, type E2eHome } from './helpers/e2e.js';
import { writeTree } from './helpers/tmp.js';

const CLUSTER = 'launch-e2e';
const LOG = `/var/lib/cloudimage/clusters/${CLUSTER}/launch.log`;
const ROOTFS = `/var/lib/cloudimage/clusters/${CLUSTER}/rootfs`;
const LONG = 180_000;

describe.skipIf(!labsAvailable())('LAUNCH of apps on LOCAL hosts', () => {
  let home: E2eHome;
  let ctx: string;
  let clusterfile: string;

  const master0 = `${CLUSTER}-master-1`;
  const other = `${CLUSTER}-master-2`;
  const log = async (host = master0) => (await labExec(home.labDir(CLUSTER), host, `cat ${LOG} 2>/dev/null || true`)).stdout.trim().split('\n').filter(Boolean);
  const write = (image: string) =>
    writeClusterfile(clusterfile, clusterDoc(CLUSTER, { image, provider: 'LOCAL', hosts: [{ count: 2, kind: 'light', roles: ['master'] }] }));
  const apply = async () => {
    const r = await home.ci(['apply', '-f', clusterfile, '--auto-approve']);
    return { ...r, why: describeRun(['apply', '-f', clusterfile, '--auto-approve'], r) };
  };

  const step = serialSteps(LONG);

  beforeAll(async () => {
    home = makeHome('ci-e2e-launch-');
    ctx = join(home.dir, 'ctx');
    clusterfile = join(home.dir, 'Clusterfile');
    const append = (what: string) => `echo "${what}" >> "$CI_ROOTFS/../launch.log"`;
    const baseCtx = join(home.dir, 'base');
    writeTree(baseCtx, {
      Kubefile: ['FROM scratch', 'COPY etc/ /etc/', 'COPY manifests/ /manifests/', `CMDS ${JSON.stringify([append('cmd on $CI_HOSTNAME'), append('cmd again')])}`].join('\n') + '\n',
      'etc/launch-e2e.conf': 'base\n',
      'manifests/base.yaml': 'kind: List\n',
    });
    writeTree(ctx, {
      Kubefile: [
        'FROM launch-base:v1',
        // sealer's usual lines: a file into a directory the base already has, a file into /, the whole context.
        'COPY imageList manifests',
        'COPY site.conf .',
        'COPY . .',
        'APP first local://first/',
        'APP second local://second/greet.sh',
        `APPCMDS second ${JSON.stringify(['sh greet.sh hello', append('second done')])}`,
        'LAUNCH ["first", "second"]',
      ].join('\n') + '\n',
      'Kubefile.yaml': [
        'FROM launch-base:v1',
        'APP first local://first/',
        'APP manifests local://k8s/',
        'LAUNCH ["first", "manifests"]',
      ].join('\n') + '\n',
      imageList: 'registry.example.com/app:v1\n',
      'site.conf': 'site\n',
      'extra/notes.txt': 'notes\n',
      '.dockerignore': 'Kubefile*\n.dockerignore\n',
      'first/run.sh': `${append('first v1 in $(pwd) as $CI_APP')}\n`,
      'second/greet.sh': `${append('second says $1 in $(pwd)')}\n`,
      'k8s/deploy.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n',
    });
    await home.ciOk(['build', '-q', '-t', 'launch-base:v1', baseCtx]);
    await home.ciOk(['build', '-q', '-t', 'launch-app:v1', ctx]);
  }, LONG);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  step('ci inspect shows the apps and the launch list', async () => {
    const r = await home.ciOk(['inspect', 'launch-app:v1']);
    const info = JSON.parse(r.stdout);
    expect(info.apps.map((a: { name: string; dir: string }) => [a.name, a.dir])).toEqual([
      ['first', 'application/apps/first'],
      ['second', 'application/apps/second'],
    ]);
    expect(info.apps[0].launch).toEqual({ by: 'shell', cmds: ['sh ./run.sh'], needs: [] });
    expect(info.launch.map((l: { app: string }) => l.app)).toEqual(['first', 'second']);
  });

  step('apply runs the CMDs, then the apps in LAUNCH order, in their folders, on master0 only', async () => {
    write('launch-app:v1');
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(/launch app first \(shell\) on launch-e2e-master-1 +# new cluster/);
    expect(plan.stdout).toMatch(/launch app second \(2 APPCMDS\) on launch-e2e-master-1 +# new cluster/);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect(await log()).toEqual([
      `cmd on ${master0}`,
      'cmd again',
      `first v1 in ${ROOTFS}/application/apps/first as first`,
      `second says hello in ${ROOTFS}/application/apps/second`,
      'second done',
    ]);
    expect(await log(other)).toEqual([]);
    const tree = await labExec(home.labDir(CLUSTER), master0, `cd ${ROOTFS} && find manifests site.conf imageList extra -print | sort; ls Kubefile .dockerignore 2>&1 | wc -l`);
    expect(tree.stdout.trim().split('\n')).toEqual(['extra', 'extra/notes.txt', 'imageList', 'manifests', 'manifests/base.yaml', 'manifests/imageList', 'site.conf', '2']);
    expect(home.readState(CLUSTER)!.appsLaunched).toEqual(Object.fromEntries(JSON.parse((await home.ciOk(['inspect', 'launch-app:v1'])).stdout).launch.map((l: { app: string; identity: string }) => [l.app, l.identity])));
  });

  step('a second apply with no change runs nothing', async () => {
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(/^No changes\./);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect(await log()).toHaveLength(5);
  });

  step('changing one app\'s file rebuilds and re-runs only that app', async () => {
    writeFileSync(join(ctx, 'first/run.sh'), `echo "first v2 as $CI_APP" >> "$CI_ROOTFS/../launch.log"\n`);
    await home.ciOk(['build', '-q', '-t', 'launch-app:v1', ctx]);
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(/launch app first \(shell\) on launch-e2e-master-1 +# app changed/);
    expect(plan.stdout).not.toMatch(/launch app second|run CMD/);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    const lines = await log();
    expect(lines).toHaveLength(6);
    expect(lines[5]).toBe('first v2 as first');
    expect((await home.ciOk(['plan', '-f', clusterfile])).stdout).toMatch(/^No changes\./);
  });

  step('a YAML app on a host without kubectl fails naming the app, the host and kubectl, and runs nothing', async () => {
    await home.ciOk(['build', '-q', '-t', 'launch-yaml:v1', '-f', join(ctx, 'Kubefile.yaml'), ctx]);
    // The host's /usr is its own overlay: this removes kubectl from the host only.
    const rm = await labExec(home.labDir(CLUSTER), master0, 'rm -f /usr/bin/kubectl /usr/local/bin/kubectl; command -v kubectl || echo gone');
    expect(rm.stdout.trim()).toBe('gone');
    write('launch-yaml:v1');
    const before = await log();
    const r = await apply();
    expect(r.code, r.why).not.toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/app manifests on launch-e2e-master-1[^\n]*: it is launched with kubectl \(its files are Kubernetes YAML\), which is not installed on the host/);
    expect(out).toMatch(/install kubectl on launch-e2e-master-1/);
    expect(out).not.toMatch(/command not found/);
    expect(await log()).toEqual(before);
    // The failure is remembered as not done: the next plan holds the launch again.
    expect((await home.ciOk(['plan', '-f', clusterfile])).stdout).toMatch(/launch app manifests \(kubectl\) on launch-e2e-master-1/);
  });
});
