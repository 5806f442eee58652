/**
 * Plugins on LOCAL light hosts, through the `ci` CLI: PreInit plugins run on the hosts they select, in name order,
 * before init-host; a PostInstall plugin runs on master0 after the CMDs; a changed plugin runs again and an
 * unchanged one does not; a HOSTNAME plugin renames its host; spec.hostAliases is a marked block of each host's /etc/hosts, replaced and removed
 * without touching any other line; a LABEL plugin on a master0 without kubectl fails naming the plugin and host.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, clusterDoc, describeRun, labExec, makeHome, serialSteps, type E2eHome } from './helpers/e2e.js';
import { writeTree } from './helpers/tmp.js';

const CLUSTER = 'plug-e2e';
const DIR = `/var/lib/cloudimage/clusters/${CLUSTER}`;
const LONG = 120_000;
const BEGIN = `# BEGIN cloudimage cluster ${CLUSTER} hostAliases`;
const END = `# END cloudimage cluster ${CLUSTER} hostAliases`;

describe.skipIf(!labsAvailable())('Plugins on LOCAL hosts', () => {
  let home: E2eHome;
  let clusterfile: string;
  const master0 = `${CLUSTER}-master-1`;
  const node = `${CLUSTER}-node-1`;

  const on = (host: string, cmd: string) => labExec(home.labDir(CLUSTER), host, cmd);
  const log = async (host: string) => (await on(host, `cat ${DIR}/plugins.log 2>/dev/null || true`)).stdout.trim().split('\n').filter(Boolean);
  const etcHosts = async (host: string) => (await on(host, 'cat /etc/hosts')).stdout;
  const outsideBlock = (text: string) => {
    const lines = text.split('\n');
    const b = lines.indexOf(BEGIN);
    const e = lines.indexOf(END);
    return b < 0 ? lines : [...lines.slice(0, b), ...lines.slice(e + 1)];
  };
  const plugin = (name: string, action: string, data: string, where?: Record<string, string>) => ({
    apiVersion: 'sealer.io/v1',
    kind: 'Plugin',
    metadata: { name },
    spec: { type: 'SHELL', action, ...where, data },
  });
  const write = (opts: { aliases?: { ip: string; hostnames: string[] }[]; second?: string; extra?: Record<string, unknown>[] } = {}) => {
    const docs = [
      clusterDoc(CLUSTER, {
        image: 'plug-e2e:v1',
        provider: 'LOCAL',
        ...(opts.aliases ? { hostAliases: opts.aliases } : {}),
        hosts: [
          { count: 1, kind: 'light', roles: ['master'] },
          { count: 1, kind: 'light', roles: ['node'] },
        ],
      }),
      // Files under the cluster's directory, which is where plugins run.
      plugin('b-everywhere', 'PreInit', `echo "b-everywhere ${opts.second ?? 'v1'} on $CI_HOSTNAME" >> plugins.log`),
      plugin('a-nodes', 'pre-init-host', 'echo "a-nodes on $CI_HOSTNAME at $CI_PLUGIN_POINT in $(pwd)" >> plugins.log', { scope: 'node' }),
      plugin('report', 'PostInstall', 'echo "report after $(cat plugins.log | wc -l) lines" >> plugins.log', { on: 'master0' }),
      ...(opts.extra ?? []),
    ];
    writeFileSync(clusterfile, docs.map((d) => stringify(d)).join('---\n'));
  };
  const apply = async () => {
    const r = await home.ci(['apply', '-f', clusterfile, '--auto-approve']);
    return { ...r, why: describeRun(['apply', '-f', clusterfile, '--auto-approve'], r) };
  };
  const step = serialSteps(LONG);

  beforeAll(async () => {
    home = makeHome('ci-e2e-plugins-');
    clusterfile = join(home.dir, 'Clusterfile');
    const ctx = join(home.dir, 'ctx');
    writeTree(ctx, {
      Kubefile: ['FROM scratch', 'COPY hooks/ /hooks/', `CMDS ${JSON.stringify(['echo "cmd on $CI_HOSTNAME" >> ../plugins.log'])}`].join('\n') + '\n',
      'hooks/init-host': 'echo "init-host on $CI_HOSTNAME" >> ../plugins.log\n',
    });
    await home.ciOk(['build', '-q', '-t', 'plug-e2e:v1', ctx]);
  }, LONG);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  step('the plan shows each plugin under its hosts', async () => {
    write({ aliases: [{ ip: '10.9.9.9', hostnames: ['reg.e2e.local'] }] });
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(new RegExp(`host ${node}[^]*plugin a-nodes at pre-init[^]*plugin b-everywhere at pre-init[^]*hook init-host`));
    expect(plan.stdout).toMatch(/write \/etc\/hosts block: 10\.9\.9\.9 reg\.e2e\.local/);
    const master = plan.stdout.slice(plan.stdout.indexOf(`host ${master0}`), plan.stdout.indexOf(`host ${node}`));
    expect(master).not.toMatch(/a-nodes/);
    expect(master).toMatch(/plugin report at post-install/);
  });

  step('apply runs PreInit plugins on the selected hosts, in name order, before init-host; PostInstall after the CMD', async () => {
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect(await log(master0)).toEqual([`b-everywhere v1 on ${master0}`, `init-host on ${master0}`, `cmd on ${master0}`, 'report after 3 lines']);
    expect(await log(node)).toEqual([`a-nodes on ${node} at pre-init in ${DIR}`, `b-everywhere v1 on ${node}`, `init-host on ${node}`]);
  });

  step('hostAliases: a marked block in /etc/hosts, the host\'s own lines kept', async () => {
    for (const h of [master0, node]) {
      const text = await etcHosts(h);
      const lines = text.split('\n');
      expect(lines.slice(lines.indexOf(BEGIN), lines.indexOf(END) + 1)).toEqual([BEGIN, '10.9.9.9 reg.e2e.local', END]);
      expect(lines).toContain('127.0.0.1\tlocalhost');
      expect((await on(h, 'getent hosts reg.e2e.local')).stdout).toMatch(/^10\.9\.9\.9\s+reg\.e2e\.local/);
    }
    // A line the host's owner adds after the block stays where it is through every change.
    await on(node, 'echo "10.1.1.1 owners-line" >> /etc/hosts');
  });

  step('a second apply runs nothing', async () => {
    expect((await home.ciOk(['plan', '-f', clusterfile])).stdout).toMatch(/^No changes\./);
  });

  step('a changed plugin runs again on its hosts; the unchanged ones and the hooks do not', async () => {
    const before = await etcHosts(node);
    write({ aliases: [{ ip: '10.9.9.9', hostnames: ['reg.e2e.local', 'sea.hub'] }], second: 'v2' });
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(/plugin b-everywhere at pre-init +# plugin changed/);
    expect(plan.stdout).not.toMatch(/a-nodes|report|hook|run CMD/);
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect((await log(master0)).slice(4)).toEqual([`b-everywhere v2 on ${master0}`]);
    expect((await log(node)).slice(3)).toEqual([`b-everywhere v2 on ${node}`]);
    const after = await etcHosts(node);
    expect(after).toContain(`${BEGIN}\n10.9.9.9 reg.e2e.local sea.hub\n${END}\n`);
    expect(outsideBlock(after)).toEqual(outsideBlock(before));
    expect(after).toMatch(/10\.1\.1\.1 owners-line/);
  });

  step('dropping hostAliases removes the block and nothing else', async () => {
    const before = await etcHosts(node);
    write({ second: 'v2' });
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    const after = await etcHosts(node);
    expect(after).not.toContain('cloudimage');
    expect(after.split('\n')).toEqual(outsideBlock(before));
    expect((await log(node)).length).toBe(4);
  });

  step('a HOSTNAME plugin renames the selected host only, and later steps see the name', async () => {
    const hostname = (name: string) => ({ apiVersion: 'sealer.io/v1', kind: 'Plugin', metadata: { name: 'names' }, spec: { type: 'HOSTNAME', data: `${node} ${name}\n` } });
    write({ second: 'v2', extra: [hostname('renamed-node')] });
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(new RegExp(`host ${node}[^]*plugin names at pre-init +# new plugin`));
    expect(plan.stdout).not.toMatch(new RegExp(`host ${master0}`));
    const r = await apply();
    expect(r.code, r.why).toBe(0);
    expect((await on(node, 'hostname; cat /etc/hostname')).stdout.trim().split('\n')).toEqual(['renamed-node', 'renamed-node']);
    expect((await on(master0, 'hostname')).stdout.trim()).toBe(master0);
    expect(home.readState(CLUSTER)!.hosts[node].hostname).toBe('renamed-node');
    // The next plugin step on that host gets the new name in its environment.
    write({ second: 'v3', extra: [hostname('renamed-node')] });
    expect((await apply()).code).toBe(0);
    expect((await log(node)).slice(-1)).toEqual(['b-everywhere v3 on renamed-node']);
  });

  step('a LABEL plugin on a master0 without kubectl fails naming the plugin and the host, and changes nothing', async () => {
    // The host's /usr is its own overlay: this removes kubectl from that host only.
    const rm = await on(master0, 'rm -f /usr/bin/kubectl /usr/local/bin/kubectl; command -v kubectl || echo gone');
    expect(rm.stdout.trim()).toBe('gone');
    write({ second: 'v3', extra: [{ apiVersion: 'sealer.io/v1', kind: 'Plugin', metadata: { name: 'names' }, spec: { type: 'HOSTNAME', data: `${node} renamed-node\n` } }, { apiVersion: 'sealer.io/v1', kind: 'Plugin', metadata: { name: 'zones' }, spec: { type: 'LABEL', data: `${node} zone=a\n` } }] });
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(new RegExp(`set node ${node}: zone=a \\(plugin zones\\)`));
    const r = await apply();
    expect(r.code, r.why).not.toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(new RegExp(`plugin zones sets Kubernetes node labels and taints with kubectl on ${master0}[^\\n]*, which does not have it`));
    expect(out).toMatch(new RegExp(`install kubectl on ${master0}`));
    expect(home.readState(CLUSTER)!.hosts[node].applied?.['plugin:zones@post-install']).toBeUndefined();
  });
});
