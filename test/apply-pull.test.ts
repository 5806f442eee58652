/**
 * `ci apply` fetches the Clusterfile's image when the local store lacks it: an image pushed to a real registry
 * (Debian's docker-registry, plain HTTP on loopback, htpasswd) is pulled by apply from an empty CI_HOME and deployed.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { runCli, type CliResult } from './helpers/cli.js';
import { requireTools, startRegistry, type RunningRegistry } from './helpers/registry.js';
import { tempDir, removeDir, writeTree } from './helpers/tmp.js';
import { LocalLab } from '../providers/local/lab.js';
import { labDirFor } from '../providers/local/provider.js';

const USER = 'deployer';
const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;
const hook = (name: string) => ({ content: `#!/bin/sh\nset -eu\necho "${name} $CI_HOST" >> /root/hooks.log\n`, mode: 0o755 });
const ok = (r: CliResult, what: string) => expect(r.code, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);

const clusterYaml = (name: string, image: string) => `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: ${name}}
spec:
  image: ${image}
  provider: LOCAL
  hosts:
    - {count: 2, roles: [master], kind: light}
`;

interface ImageRow {
  name: string;
  tag: string;
  id: string;
}

describe.skipIf(!labsAvailable())('ci apply pulls a missing image from the registry', () => {
  const cluster = `pull-${randomBytes(3).toString('hex')}`;
  let registry: RunningRegistry | undefined;
  let root: string;
  let buildHome: string;
  let siteHome: string;
  let image: string;
  let pushedDigest: string;
  const ci = (home: string, args: string[], input?: string) => runCli(args, { env: { CI_HOME: home }, input });

  beforeAll(async () => {
    requireTools();
    root = tempDir('ci-apply-pull-');
    buildHome = join(root, 'build-home');
    siteHome = join(root, 'site-home');
    registry = await startRegistry({ htpasswd: { [USER]: PASSWORD } });
    image = `${registry.host}/x:v1`;
    const ctx = writeTree(join(root, 'ctx'), {
      Kubefile: 'FROM scratch\nCOPY hooks/ /hooks/\nCOPY data/ /data/\n',
      'hooks/init-host': hook('init-host'),
      'hooks/init-master0': hook('init-master0'),
      'hooks/join-master': hook('join-master'),
      'data/app.conf': 'mode=pulled\n',
    });
    const build = await ci(buildHome, ['build', '-q', '-t', 'x-local:v1', ctx]);
    ok(build, 'build');
    pushedDigest = build.stdout.trim();
    ok(await ci(buildHome, ['login', registry.host, '-u', USER, '--password-stdin', '--insecure'], PASSWORD), 'login on the build machine');
    ok(await ci(buildHome, ['push', '--insecure', 'x-local:v1', image]), 'push');
  });

  afterAll(async () => {
    try {
      if (siteHome && existsSync(join(siteHome, 'clusters', cluster, 'state.json'))) {
        await ci(siteHome, ['destroy', '-f', join(root, 'Clusterfile'), '--auto-approve']);
      }
      const lab = siteHome && labDirFor(siteHome, cluster);
      if (lab && existsSync(join(lab, 'lab.json'))) await (await LocalLab.open(lab)).destroy();
    } finally {
      await registry?.stop();
      if (root) removeDir(root);
    }
  });

  it('refuses an image the registry does not have, before creating any host', async () => {
    const missing = join(root, 'Missing');
    writeTree(root, { Missing: clusterYaml(`${cluster}m`, `${registry!.host}/x:nope`) });
    ok(await ci(siteHome, ['login', registry!.host, '-u', USER, '--password-stdin', '--insecure'], PASSWORD), 'login on the site');
    const r = await ci(siteHome, ['apply', '-f', missing, '--auto-approve']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${registry!.host}/x:nope was not found`);
    expect(r.stderr + r.stdout).not.toContain(PASSWORD);
    expect(existsSync(labDirFor(siteHome, `${cluster}m`))).toBe(false);
    expect(JSON.parse((await ci(siteHome, ['images', '--json'])).stdout)).toEqual([]);
  });

  it('pulls the image into an empty store and applies it to two local hosts', async () => {
    const clusterfile = join(root, 'Clusterfile');
    writeTree(root, { Clusterfile: clusterYaml(cluster, image) });
    const r = await ci(siteHome, ['apply', '-f', clusterfile, '--auto-approve']);
    ok(r, 'apply');
    expect(r.stdout).toMatch(/Apply complete! \d+ done, 0 failed, 0 skipped/);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);

    const rows = JSON.parse((await ci(siteHome, ['images', '--json'])).stdout) as ImageRow[];
    expect(rows.map((i) => ({ ref: `${i.name}:${i.tag}`, id: i.id }))).toEqual([{ ref: image, id: pushedDigest }]);

    const plan = await ci(siteHome, ['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
  });

  it('destroys the cluster', async () => {
    ok(await ci(siteHome, ['destroy', '-f', join(root, 'Clusterfile'), '--auto-approve']), 'destroy');
    expect(existsSync(labDirFor(siteHome, cluster))).toBe(false);
  });
});
