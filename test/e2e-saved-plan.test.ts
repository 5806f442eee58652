import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from './helpers/cli.js';
import { labsAvailable } from './helpers/lab.js';
import { removeDir, tempDir, writeTree } from './helpers/tmp.js';
import { LocalLab } from '../providers/local/lab.js';
import { describeAction } from '../plans/render/text.js';
import type { Action } from '../plans/actions.js';

const clusterfile = (image: string, count: number) => `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: saved}
spec:
  image: ${image}
  provider: LOCAL
  env: [GREETING=hello]
  hosts:
  - {count: ${count}, roles: [master]}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
networking: {podSubnet: 100.64.0.0/10}
---
apiVersion: v1
kind: Secret
metadata: {name: registry-auth}
stringData: {htpasswd: ${DOC_SECRET}}
`;
const DOC_SECRET = 'd0c-s3cret-htpasswd';

describe.skipIf(!labsAvailable())('saved plans, approval and apply on local hosts', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let cf: string;

  beforeAll(async () => {
    dir = tempDir('ci-saved-');
    env = { CI_HOME: join(dir, 'home') };
    writeTree(join(dir, 'ctx'), {
      Kubefile: 'FROM scratch\nCOPY hooks/ /hooks/\nCMD echo "$GREETING from $CI_HOSTNAME" > /root/cmd.out\n',
      'hooks/init-host': {
        content:
          '#!/bin/sh\necho "init-host on $CI_HOST" > /root/init-host.out\necho TOKEN=s3cr3t-token-value >> "$CI_OUTPUT"\n' +
          'cp "$CI_CLUSTER_DOCUMENTS" /root/docs.yaml && stat -c "%a $CI_CLUSTER_DOCUMENTS" "$CI_CLUSTER_DOCUMENTS" > /root/docs.stat\n',
        mode: 0o755,
      },
      'hooks/join-master': { content: '#!/bin/sh\n[ "$TOKEN" = s3cr3t-token-value ] && echo joined > /root/join.out\n', mode: 0o755 },
    });
    cf = join(dir, 'Clusterfile');
    writeFileSync(cf, clusterfile('saved-app:v1', 2));
    expect((await runCli(['build', '-q', '-t', 'saved-app:v1', join(dir, 'ctx')], { env })).code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await runCli(['destroy', '-f', cf, '--auto-approve'], { env });
    const labDir = join(dir, 'home/local/saved');
    if (existsSync(labDir)) await (await LocalLab.open(labDir)).destroy();
    removeDir(dir);
  }, 300_000);

  it('refuses to apply without a terminal or --auto-approve, and changes nothing', async () => {
    const r = await runCli(['apply', '-f', cf], { env });
    expect(r.code).toBe(64); // a usage error: the fix is a flag
    expect(r.stderr).toMatch(/error: no terminal to confirm/);
    expect(existsSync(join(dir, 'home/clusters/saved/state.json'))).toBe(false);
    expect(existsSync(join(dir, 'home/local/saved/lab.json'))).toBe(false);
  });

  it('applies exactly a saved plan, then says there is nothing left to do', async () => {
    const planFile = join(dir, 'plan.json');
    const plan = await runCli(['plan', '-f', cf, '--out', planFile, '--detailed-exitcode'], { env });
    expect(plan.code).toBe(2);
    expect(plan.stdout).toContain('documents for hooks: ClusterConfiguration, Secret/registry-auth');
    expect(plan.stdout + plan.stderr).not.toContain(DOC_SECRET);
    const saved = JSON.parse(readFileSync(planFile, 'utf8')).plan;
    expect(readFileSync(planFile, 'utf8')).not.toContain(DOC_SECRET);
    const r = await runCli(['apply', '-f', cf, planFile], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Every saved step ran, and nothing else did.
    for (const a of saved.actions as Action[]) expect(r.stdout).toContain(`[${a.host ?? 'cluster'}] ${describeAction(a)}: done`);
    expect(r.stdout).toMatch(/Apply complete! (\d+) done, 0 failed/);
    expect(Number(/Apply complete! (\d+) done/.exec(r.stdout)![1])).toBe(saved.actions.length);
    // The hook output is kept in state but never printed, and it reached the later hook as env.
    expect(r.stdout).not.toContain('s3cr3t-token-value');
    const again = await runCli(['plan', '-f', cf, '--detailed-exitcode'], { env });
    expect(again.code).toBe(0);
    const state = JSON.parse(readFileSync(join(dir, 'home/clusters/saved/state.json'), 'utf8'));
    expect(Object.keys(state.hosts)).toHaveLength(2);
    expect(state.hosts['saved-master-2'].hooks['join-master']).toBe(state.image.digest);
    const lab = await LocalLab.open(join(dir, 'home/local/saved'));
    const { connectSsh } = await import('../providers/ssh/session.js');
    const s = await connectSsh(lab.sshTarget('saved-master-2'), { pinnedHostKey: lab.host('saved-master-2')!.hostKey });
    try {
      expect((await s.execChecked('cat /root/join.out')).stdout.trim()).toBe('joined');
    } finally {
      await s.close();
    }
    const s1 = await connectSsh(lab.sshTarget('saved-master-1'), { pinnedHostKey: lab.host('saved-master-1')!.hostKey });
    try {
      expect((await s1.execChecked('cat /root/cmd.out')).stdout.trim()).toBe('hello from saved-master-1');
      // The hooks got the Clusterfile's other documents, root's only, in the cluster's own directory, secrets masked.
      expect((await s1.execChecked('cat /root/docs.stat')).stdout.trim()).toBe('600 /var/lib/cloudimage/clusters/saved/documents.yaml');
      const docs = (await s1.execChecked('cat /root/docs.yaml')).stdout;
      expect(docs).toContain('kind: ClusterConfiguration');
      expect(docs).toContain('podSubnet: 100.64.0.0/10');
      expect(docs).toContain('htpasswd: "******"');
      expect(docs).not.toContain(DOC_SECRET);
    } finally {
      await s1.close();
    }
  }, 300_000);

  it('refuses a saved plan once the Clusterfile or the state moved on', async () => {
    const planFile = join(dir, 'plan2.json');
    writeFileSync(cf, clusterfile('saved-app:v1', 3));
    expect((await runCli(['plan', '-f', cf, '--out', planFile], { env })).code).toBe(0);
    writeFileSync(cf, clusterfile('saved-app:v1', 4));
    const stale = await runCli(['apply', '-f', cf, planFile], { env });
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/the Clusterfile changed since the plan was made/);
    writeFileSync(cf, clusterfile('saved-app:v1', 3));
    const ok = await runCli(['apply', '-f', cf, planFile], { env });
    expect(ok.code).toBe(0);
    // The same saved plan cannot run twice: the state it was made against is gone.
    const twice = await runCli(['apply', '-f', cf, planFile], { env });
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/state changed since the plan was made/);
  }, 300_000);
});
