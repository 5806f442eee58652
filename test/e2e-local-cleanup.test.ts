/**
 * LOCAL hosts leave nothing behind, through the `ci` CLI: a host that cannot boot (its root filesystem cache is
 * broken) is removed by the failing apply itself, the lab with it when no host was created; a lab refused for its
 * place goes too; and `ci destroy` removes hosts the state never recorded, with or without a state, once confirmed.
 * "Nothing" means no namespace, link, mount, process, subnet claim or lab directory.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import {
  claimsFor, cleanupHome, clusterDoc, describeRun, labFootprint, leftovers, makeHome, mountsMentioning, procsMentioning,
  watchLab, writeClusterfile, type E2eHome, type LabFootprint,
} from './helpers/e2e.js';
import { LocalLab } from '../providers/local/lab.js';
import { vethName } from '../providers/local/names.js';
import { LocalStateBackend, createState } from '../state/local.js';

const NOTHING_LEFT = { netns: [], links: [], procs: [], dir: false };

function writeImageSource(dir: string): void {
  mkdirSync(join(dir, 'hooks'), { recursive: true });
  for (const hook of ['init-host', 'init-master0', 'join-node', 'clean']) {
    writeFileSync(join(dir, 'hooks', hook), `#!/bin/sh\nset -eu\nmkdir -p /var/lib/cleanup-e2e && touch /var/lib/cleanup-e2e/${hook}\n`);
    chmodSync(join(dir, 'hooks', hook), 0o755);
  }
  writeFileSync(join(dir, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\n');
}

/** Everything of the lab in `labDir` that is still on this machine; all empty when it is gone. */
async function remains(fp: LabFootprint) {
  return {
    ...(await leftovers(fp)),
    mounts: mountsMentioning(fp.dir),
    processes: procsMentioning(fp.dir),
    claims: claimsFor(fp.dir),
  };
}
const GONE = { ...NOTHING_LEFT, mounts: [], processes: [], claims: [] };

const hostsInState = (home: E2eHome, cluster: string) => Object.keys(home.readState(cluster)?.hosts ?? {});

describe.skipIf(!labsAvailable())('LOCAL hosts that fail, and leftovers, leave nothing behind', () => {
  let home: E2eHome;
  let brokenRootfs: string;
  const clusterfiles: string[] = [];

  const clusterfile = (cluster: string, hosts: Record<string, unknown>[]) => {
    const f = writeClusterfile(join(home.dir, `${cluster}.yaml`), clusterDoc(cluster, { image: 'cleanup-e2e:v1', provider: 'LOCAL', hosts }));
    clusterfiles.push(f);
    return f;
  };

  beforeAll(async () => {
    home = makeHome('ci-e2e-cleanup-');
    const src = join(home.dir, 'image');
    writeImageSource(src);
    await home.ciOk(['build', '-t', 'cleanup-e2e:v1', src]);
    // A cache that claims to be complete but holds no operating system: systemd-nspawn refuses to boot it.
    brokenRootfs = mkdtempSync(join(tmpdir(), 'ci-broken-rootfs-'));
    writeFileSync(join(brokenRootfs, '.cloudimage-rootfs.json'), '{}\n');
  }, 120_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, clusterfiles);
    if (brokenRootfs) rmSync(brokenRootfs, { recursive: true, force: true });
  }, 120_000);

  it('an apply whose every host fails to boot exits 1 naming each host and why, and removes hosts and lab', async () => {
    const cluster = 'cleanup-all';
    const f = clusterfile(cluster, [{ count: 2, kind: 'systemd', roles: ['master'] }]);
    const watch = watchLab(home.labDir(cluster));
    const r = await home.ci(['apply', '-f', f, '--auto-approve'], { env: { CI_ROOTFS_CACHE: brokenRootfs } });
    const fp = watch.stop();
    expect(r.code, describeRun(['apply'], r)).toBe(1);
    expect(fp, 'the apply made no lab').toBeDefined();
    expect(fp!.netns).toHaveLength(2);
    for (const host of [`${cluster}-master-1`, `${cluster}-master-2`]) {
      expect(r.stdout).toContain(`[${host}] create systemd host: FAILED: local host "${host}" stopped while starting`);
      expect(r.stdout).toContain(`failed: ${host}: create systemd host: local host "${host}" stopped while starting`);
    }
    expect(r.stdout).toContain("doesn't look like an OS root directory (os-release file is missing)");
    expect(r.stdout).toContain(`No host was created. Removed bridge ${fp!.bridge}, subnet `);
    expect(await remains(fp!)).toEqual(GONE);
    expect(hostsInState(home, cluster)).toEqual([]);

    const d = await home.ci(['destroy', '-f', f, '--auto-approve']);
    expect(d.code, describeRun(['destroy'], d)).toBe(0);
    expect(d.stdout).toContain('Nothing to destroy: no hosts in state');
  });

  it('a host that fails among working ones is removed by the apply itself; destroy then removes the rest', async () => {
    const cluster = 'cleanup-some';
    const broken = `${cluster}-node-1`;
    const f = clusterfile(cluster, [
      { count: 1, roles: ['master'] },
      { count: 1, kind: 'systemd', roles: ['node'] },
    ]);
    const watch = watchLab(home.labDir(cluster));
    const r = await home.ci(['apply', '-f', f, '--auto-approve'], { env: { CI_ROOTFS_CACHE: brokenRootfs } });
    const seen = watch.stop();
    expect(r.code, describeRun(['apply'], r)).toBe(1);
    expect(r.stdout).toContain(`failed: ${broken}: create systemd host: local host "${broken}" stopped while starting`);
    expect(r.stdout).toContain(`[${cluster}-master-1] hook init-master0: done`);
    expect(hostsInState(home, cluster)).toEqual([`${cluster}-master-1`]);

    const now = await labFootprint(home.labDir(cluster));
    expect(now.netns).toEqual([`ci-${now.id}-${cluster}-master-1`]);
    expect(seen!.netns).toContain(`ci-${now.id}-${broken}`);
    const brokenDir = join(home.labDir(cluster), 'hosts', broken);
    expect(existsSync(brokenDir)).toBe(false);
    expect(existsSync(`/sys/class/net/${vethName(now.id, broken)}`)).toBe(false);
    expect(procsMentioning(brokenDir)).toEqual([]);
    expect(mountsMentioning(brokenDir)).toEqual([]);

    const d = await home.ci(['destroy', '-f', f, '--auto-approve']);
    expect(d.code, describeRun(['destroy'], d)).toBe(0);
    expect(d.stdout).toContain('Destroy complete!');
    expect(await remains({ ...now, netns: seen!.netns, veths: seen!.veths, procs: [...now.procs, ...seen!.procs] })).toEqual(GONE);
    expect(hostsInState(home, cluster)).toEqual([]);
  });

  it('a light host refused for its lab directory (inside /var) leaves no bridge, subnet claim or directory', async () => {
    const varHome = makeHome('ci-e2e-var-', '/var/tmp');
    try {
      const cluster = 'cleanup-var';
      const f = writeClusterfile(join(varHome.dir, 'Clusterfile'), clusterDoc(cluster, { image: 'cleanup-e2e:v1', provider: 'LOCAL', hosts: [{ count: 1, roles: ['master'] }] }));
      await varHome.ciOk(['build', '-t', 'cleanup-e2e:v1', join(home.dir, 'image')]);
      // Opened first so that its bridge and claim are known; the apply takes it over as it would any earlier lab.
      const fp = await labFootprint((await LocalLab.open(varHome.labDir(cluster))).dir);
      const r = await varHome.ci(['apply', '-f', f, '--auto-approve']);
      expect(r.code, describeRun(['apply'], r)).toBe(1);
      expect(r.stdout).toContain(`lab directory ${varHome.labDir(cluster)} is inside /var, which light hosts overlay`);
      expect(r.stdout).toContain('No host was created. Removed bridge');
      expect(await remains(fp)).toEqual(GONE);
    } finally {
      await cleanupHome(varHome);
    }
  });

  it('destroy with no state removes the hosts a killed apply left, after confirmation, and says what it removed', async () => {
    const cluster = 'cleanup-nostate';
    const f = clusterfile(cluster, [{ count: 2, roles: ['master'] }]);
    // What an apply killed after creating its hosts, before recording them, leaves: a lab with running hosts.
    const lab = await LocalLab.open(home.labDir(cluster));
    const hosts = [`${cluster}-master-1`, `${cluster}-master-2`];
    await Promise.all(hosts.map((h) => lab.addHost(h, 'light')));
    const fp = await labFootprint(lab.dir);
    expect(fp.procs.length).toBeGreaterThanOrEqual(2);
    expect(existsSync(home.statePath(cluster))).toBe(false);

    const refused = await home.ci(['destroy', '-f', f]);
    expect(refused.code, describeRun(['destroy'], refused)).not.toBe(0);
    expect(refused.stderr).toContain('no terminal to confirm');
    for (const h of hosts) expect(refused.stdout).toMatch(new RegExp(`- host ${h}\\n\\s+- delete host\\s+# not in state`));
    expect((await leftovers(fp)).procs).toHaveLength(fp.procs.length);

    const d = await home.ci(['destroy', '-f', f, '--auto-approve']);
    expect(d.code, describeRun(['destroy'], d)).toBe(0);
    expect(d.stdout).toContain('Destroy complete! No hosts in state; removed what an earlier apply left.');
    expect(d.stdout).toContain(`Removed hosts ${hosts.join(', ')} (not in state), bridge ${fp.bridge}, subnet `);
    expect(d.stdout).toContain(`directory ${fp.dir}.`);
    expect(await remains(fp)).toEqual(GONE);
    expect(hostsInState(home, cluster)).toEqual([]);

    const again = await home.ci(['destroy', '-f', f, '--auto-approve']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('Nothing to destroy');
  });

  it('destroy with a state that has no hosts removes lab hosts it never recorded', async () => {
    const cluster = 'cleanup-emptystate';
    const f = clusterfile(cluster, [{ count: 1, roles: ['master'] }]);
    await new LocalStateBackend(home.statePath(cluster)).write(createState(cluster, 'LOCAL'));
    const lab = await LocalLab.open(home.labDir(cluster));
    await lab.addHost(`${cluster}-master-1`, 'light');
    const fp = await labFootprint(lab.dir);

    const d = await home.ci(['destroy', '-f', f, '--auto-approve']);
    expect(d.code, describeRun(['destroy'], d)).toBe(0);
    expect(d.stdout).toContain(`Removed host ${cluster}-master-1 (not in state), bridge ${fp.bridge}`);
    expect(await remains(fp)).toEqual(GONE);
    expect(hostsInState(home, cluster)).toEqual([]);
  });
});
