/**
 * The offline flow: build on one machine, `ci save` to a file, `ci load` it into an empty CI_HOME (no registry
 * anywhere), `ci apply` to light local hosts, then destroy and check nothing of the lab is left.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { runCli, type CliResult } from './helpers/cli.js';
import { tempDir, removeDir, writeTree } from './helpers/tmp.js';
import { LocalLab } from '../providers/local/lab.js';
import { labDirFor } from '../providers/local/provider.js';
import { connectSsh } from '../providers/ssh/session.js';
import type { ClusterState } from '../state/model.js';

// Named for a registry on a closed loopback port: if apply tried to pull instead of using the loaded image, it fails.
const IMAGE = '127.0.0.1:9/offline/app:v1';
const hook = (name: string) => ({ content: `#!/bin/sh\nset -eu\necho "${name} $CI_HOST $CI_IMAGE" >> /root/hooks.log\n`, mode: 0o755 });

const netnsList = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
const ok = (r: CliResult, what: string) => expect(r.code, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);

describe.skipIf(!labsAvailable())('offline delivery: save, load into an empty home, apply', () => {
  const cluster = `offl-${randomBytes(3).toString('hex')}`;
  let root: string;
  let buildHome: string;
  let siteHome: string;
  let clusterfile: string;
  let archive: string;
  const onSite = (args: string[]) => runCli(args, { env: { CI_HOME: siteHome } });

  beforeAll(async () => {
    root = tempDir('ci-offline-');
    buildHome = join(root, 'build-home');
    siteHome = join(root, 'site-home');
    archive = join(root, 'app.tar');
    const ctx = writeTree(join(root, 'ctx'), {
      Kubefile: 'FROM scratch\nCOPY hooks/ /hooks/\nCOPY data/ /data/\nCMD echo "cmd $CI_CLUSTER" > /root/cmd.log\n',
      'hooks/init-host': hook('init-host'),
      'hooks/init-master0': hook('init-master0'),
      'hooks/join-node': hook('join-node'),
      'data/app.conf': 'mode=offline\n',
    });
    clusterfile = join(root, 'Clusterfile');
    writeTree(root, {
      Clusterfile: `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: ${cluster}}
spec:
  image: ${IMAGE}
  provider: LOCAL
  hosts:
    - {count: 1, roles: [master], kind: light}
    - {count: 1, roles: [node], kind: light}
`,
    });
    ok(await runCli(['build', '-q', '-t', IMAGE, ctx], { env: { CI_HOME: buildHome } }), 'build');
    ok(await runCli(['save', '-o', archive, IMAGE], { env: { CI_HOME: buildHome } }), 'save');
  });

  afterAll(async () => {
    // Whatever the tests got to, leave no host, namespace or bridge behind.
    if (siteHome && existsSync(join(siteHome, 'clusters', cluster, 'state.json'))) {
      await onSite(['destroy', '-f', clusterfile, '--auto-approve']);
    }
    const lab = siteHome && labDirFor(siteHome, cluster);
    if (lab && existsSync(join(lab, 'lab.json'))) await (await LocalLab.open(lab)).destroy();
    if (root) removeDir(root);
  });

  it('loads the archive into an empty store', async () => {
    const before = await onSite(['images', '--json']);
    ok(before, 'images');
    expect(JSON.parse(before.stdout)).toEqual([]);
    const load = await onSite(['load', '-i', archive]);
    ok(load, 'load');
    expect(load.stdout).toContain(`loaded ${IMAGE} sha256:`);
    const after = JSON.parse((await onSite(['images', '--json'])).stdout) as { name: string; tag: string }[];
    expect(after.map((i) => `${i.name}:${i.tag}`)).toEqual([IMAGE]);
  });

  it('applies the loaded image to local hosts without a registry, running every hook and the CMD', async () => {
    const r = await onSite(['apply', '-f', clusterfile, '--auto-approve']);
    ok(r, 'apply');
    expect(r.stdout).toMatch(/Apply complete! \d+ done, 0 failed, 0 skipped/);

    const state = JSON.parse(readFileSync(join(siteHome, 'clusters', cluster, 'state.json'), 'utf8')) as ClusterState;
    expect(state.image?.ref).toBe(IMAGE);
    const hosts = Object.values(state.hosts);
    expect(hosts.map((h) => h.roles[0]).sort()).toEqual(['master', 'node']);

    const lab = await LocalLab.open(labDirFor(siteHome, cluster));
    for (const h of hosts) {
      const s = await connectSsh(lab.sshTarget(h.key), { pinnedHostKey: h.hostKey });
      try {
        const log = (await s.execChecked('cat /root/hooks.log')).stdout;
        const expected = h.key === state.master0 ? ['init-host', 'init-master0'] : ['init-host', 'join-node'];
        expect(log).toBe(expected.map((n) => `${n} ${h.ip} ${IMAGE}\n`).join(''));
        const cmd = await s.exec('cat /root/cmd.log');
        if (h.key === state.master0) expect(cmd.stdout).toBe(`cmd ${cluster}\n`);
        else expect(cmd.code).not.toBe(0);
      } finally {
        await s.close();
      }
    }

    const plan = await onSite(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    expect(plan.stdout).toContain('No changes.');
  });

  it('destroys the cluster and leaves nothing of the lab behind', async () => {
    const labId = (JSON.parse(readFileSync(join(labDirFor(siteHome, cluster), 'lab.json'), 'utf8')) as { id: string }).id;
    ok(await onSite(['destroy', '-f', clusterfile, '--auto-approve']), 'destroy');
    expect(netnsList()).not.toContain(`ci-${labId}-`);
    expect(existsSync(labDirFor(siteHome, cluster))).toBe(false);
    // What stays is an empty state of the same lineage.
    const state = JSON.parse(readFileSync(join(siteHome, 'clusters', cluster, 'state.json'), 'utf8')) as { hosts: object; image?: unknown };
    expect(state.hosts).toEqual({});
    expect(state.image).toBeUndefined();
  });
});
