/**
 * Configs on LOCAL light hosts, through the `ci` CLI: a Config merges into a file of the image that a CMD reads and
 * a template is rendered with the cluster's env; changing the Config re-sends only the small config layer and
 * re-runs the CMD; an unchanged Config runs nothing; removing it gives the image's file back without a full unpack.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, clusterDoc, describeRun, labExec, makeHome, serialSteps, type E2eHome } from './helpers/e2e.js';
import { writeTree } from './helpers/tmp.js';
import { digestHex } from '../engine/kernel/digest.js';

const CLUSTER = 'configs-e2e';
const DIR = `/var/lib/cloudimage/clusters/${CLUSTER}`;
const LONG = 180_000;

describe.skipIf(!labsAvailable())('Configs on LOCAL hosts', () => {
  let home: E2eHome;
  let clusterfile: string;
  const host = `${CLUSTER}-master-1`;
  const onHost = async (cmd: string) => (await labExec(home.labDir(CLUSTER), host, cmd)).stdout;
  const runs = async () => (await onHost(`cat ${DIR}/cmd.log 2>/dev/null || true`)).split('\n').filter(Boolean);
  const write = (replicas: number) =>
    writeFileSync(
      clusterfile,
      [
        clusterDoc(CLUSTER, { image: 'configs-app:v1', provider: 'LOCAL', env: ['SITE=eu-1'], hosts: [{ count: 1, kind: 'light', roles: ['master'] }] }),
        { apiVersion: 'sealer.io/v1', kind: 'Config', metadata: { name: 'app-values' }, spec: { path: 'etc/app/values.yaml', strategy: 'merge', data: `replicas: ${replicas}\ndb:\n  password: pw-${replicas}-secret\n` } },
      ]
        .map((d) => stringify(d))
        .join('---\n'),
    );
  const apply = async () => {
    const r = await home.ci(['apply', '-f', clusterfile, '--auto-approve']);
    return { ...r, why: describeRun(['apply', '-f', clusterfile, '--auto-approve'], r) };
  };
  const planJson = async () => JSON.parse((await home.ciOk(['plan', '-f', clusterfile, '--json'])).stdout);
  const step = serialSteps(LONG);

  beforeAll(async () => {
    home = makeHome('ci-e2e-configs-');
    clusterfile = join(home.dir, 'Clusterfile');
    const ctx = join(home.dir, 'ctx');
    writeTree(ctx, {
      Kubefile: ['FROM scratch', 'COPY etc/ /etc/', `CMDS ${JSON.stringify(['grep replicas "$CI_ROOTFS/etc/app/values.yaml" >> "$CI_ROOTFS/../cmd.log"'])}`].join('\n') + '\n',
      'etc/app/values.yaml': '# defaults\nreplicas: 1\ndb:\n  host: db\n  password: image-default\n',
      'etc/site.conf.tmpl': 'site={{ .SITE }}\nzone={{ .ZONE | default "a" }}\n',
      // Bulk, so a re-sent image layer could not pass for the config layer.
      'etc/bulk.dat': 'x'.repeat(200_000),
    });
    await home.ciOk(['build', '-q', '-t', 'configs-app:v1', ctx]);
  }, LONG);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  step('apply merges the Config into the image file a CMD reads, and renders the template', async () => {
    write(3);
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(/config layer [0-9a-f]{12} \(\d+ B\): 2 files change/);
    expect(plan.stdout).toContain('-replicas: 1\n');
    expect(plan.stdout).toContain('+replicas: 3\n');
    expect(plan.stdout).not.toMatch(/pw-3-secret|image-default/);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('pw-3-secret');
    expect(await runs()).toEqual(['replicas: 3']);
    expect(await onHost(`cat ${DIR}/rootfs/etc/app/values.yaml`)).toBe('# defaults\nreplicas: 3\ndb:\n  host: db\n  password: pw-3-secret\n');
    expect(await onHost(`cat ${DIR}/rootfs/etc/site.conf`)).toBe('site=eu-1\nzone=a\n');
  });

  step('an unchanged Config runs nothing', async () => {
    expect((await home.ciOk(['plan', '-f', clusterfile])).stdout).toMatch(/^No changes\./);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect(await runs()).toEqual(['replicas: 3']);
  });

  step('changing the Config re-sends only the config layer and re-runs the CMD', async () => {
    const before = home.readState(CLUSTER)!;
    const imageLayers = before.image!.layers;
    write(5);
    const p = await planJson();
    const cfg = p.config;
    const sends = p.actions.filter((a: { kind: string }) => a.kind === 'send-layers');
    expect(sends).toEqual([expect.objectContaining({ host, layers: [cfg.digest], bytes: cfg.size, reason: 'config changed' })]);
    expect(p.actions.filter((a: { kind: string }) => a.kind === 'run-cmd').map((a: { reason: string }) => a.reason)).toEqual(['config changed']);
    expect(cfg.changes.map((c: { path: string }) => c.path)).toEqual(['etc/app/values.yaml']);
    expect(cfg.changes[0].diff).toContain('-replicas: 3\n+replicas: 5\n');
    expect(JSON.stringify(p)).not.toMatch(/pw-[35]-secret/);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`layer bytes sent: ${cfg.size} B`));
    expect(cfg.size).toBeLessThan(2000);
    expect(await runs()).toEqual(['replicas: 3', 'replicas: 5']);
    const held = (await onHost('ls /var/lib/cloudimage/layers')).split(/\s+/).filter(Boolean);
    expect(held).toEqual(expect.arrayContaining([...imageLayers, before.image!.config!, cfg.digest].map((d) => `${digestHex(d)}.tar.gz`)));
    const after = home.readState(CLUSTER)!;
    expect(after.image!.config).toBe(cfg.digest);
    expect(after.hosts[host].rootfsConfig).toBe(cfg.digest);
    expect((await home.ciOk(['plan', '-f', clusterfile])).stdout).toMatch(/^No changes\./);
  });

  step('a merge into a file the image lacks is refused naming the Config and its line, and changes nothing', async () => {
    const text = readFileSync(clusterfile, 'utf8').replace('etc/app/values.yaml', 'etc/app/missing.yaml');
    writeFileSync(clusterfile, text);
    const line = text.split('\n').findIndex((l) => l.startsWith('kind: Config')) + 1;
    const r = await home.ci(['plan', '-f', clusterfile]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Clusterfile:${line}: Config app-values: spec.path etc/app/missing.yaml: strategy merge needs the file in the image`);
    expect(await runs()).toEqual(['replicas: 3', 'replicas: 5']);
  });

  step("removing the Config gives the image's own file back, built on the host's rootfs instead of unpacked in full", async () => {
    const text = readFileSync(clusterfile, 'utf8');
    writeFileSync(clusterfile, text.slice(0, text.indexOf('---\n')));
    const p = await planJson();
    expect(p.actions.filter((a: { kind: string }) => a.kind === 'send-layers')).toEqual([
      expect.objectContaining({ host, layers: [p.config.digest], reason: 'config changed' }),
    ]);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect(r.stdout + r.stderr).toContain('cloudimage: rootfs unpacked incrementally');
    expect(await onHost(`cat ${DIR}/rootfs/etc/app/values.yaml`)).toBe('# defaults\nreplicas: 1\ndb:\n  host: db\n  password: image-default\n');
    expect(await onHost(`cat ${DIR}/rootfs/etc/site.conf`)).toBe('site=eu-1\nzone=a\n');
    expect(await runs()).toEqual(['replicas: 3', 'replicas: 5', 'replicas: 1']);
    expect((await home.ciOk(['plan', '-f', clusterfile])).stdout).toMatch(/^No changes\./);
  });
});
