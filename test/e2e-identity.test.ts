/**
 * A lost or foreign state never re-initialises a live cluster. On real hosts, with an image whose hooks append a line
 * to a file on the host each time they run: the state is deleted (backup kept), replaced by another cluster's
 * state, replaced by a fresh state of another lineage, or lost entirely. Each time `ci plan`, `ci apply` (and
 * `ci destroy` where it applies) exit non-zero with a message saying why, no hook runs again (read back from the
 * hosts), and the backup survives byte for byte; `ci state restore` then brings the state back and the plan is empty.
 *
 * LOCAL: the lab's record of its hosts and their lineage is the sign. BAREMETAL (a lab's hosts reached as existing
 * machines): the lineage marker each host got on first contact is the sign, at plan time (probe) and on contact.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { cleanupHome, clusterDoc, describeRun, labExec, makeHome, writeClusterfile, type E2eHome } from './helpers/e2e.js';
import { connectSsh } from '../providers/ssh/session.js';
import { STATE_VERSION, type ClusterState } from '../state/model.js';

const HOOKS: Record<string, string> = {
  'init-host': 'mkdir -p /var/lib/evidence && echo "$CI_HOST" >> /var/lib/evidence/init-host',
  'init-master0': 'echo "$CI_HOST" >> /var/lib/evidence/init-master0',
  'join-node': 'echo "$CI_HOST" >> /var/lib/evidence/join-node',
  clean: 'rm -rf /var/lib/evidence',
};

async function buildEvidenceImage(home: E2eHome, tag: string): Promise<void> {
  const src = join(home.dir, 'image');
  mkdirSync(join(src, 'hooks'), { recursive: true });
  for (const [name, body] of Object.entries(HOOKS)) {
    writeFileSync(join(src, 'hooks', name), `#!/bin/sh\nset -eu\n${body}\n`);
    chmodSync(join(src, 'hooks', name), 0o755);
  }
  writeFileSync(join(src, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\n');
  await home.ciOk(['build', '-q', '-t', tag, src]);
}

/** How many times each hook ran on a host, read from the host, plus its lineage marker. */
const EVIDENCE_CMD = (cluster: string) =>
  'for f in init-host init-master0 join-node; do printf "%s=%s " $f "$(cat /var/lib/evidence/$f 2>/dev/null | wc -l)"; done; ' +
  `printf "lineage=%s" "$(cat /var/lib/cloudimage/clusters/${cluster}/lineage 2>/dev/null)"`;

function expectRefused(r: { code: number; stdout: string; stderr: string }, args: string[], message: RegExp): void {
  expect(r.code, describeRun(args, r)).not.toBe(0);
  expect(r.stderr + r.stdout, describeRun(args, r)).toMatch(message);
}

describe.skipIf(!labsAvailable())('a lost or foreign state on LOCAL hosts', () => {
  const CLUSTER = 'ident-local';
  const HOSTS = [`${CLUSTER}-master-1`, `${CLUSTER}-node-1`];
  let home: E2eHome;
  let clusterfile: string;
  let statePath: string;
  let backupPath: string;
  let lineage: string;
  let evidence: Record<string, string>;
  let backupBytes: Buffer;

  const readEvidence = async () => {
    const out: Record<string, string> = {};
    for (const h of HOSTS) out[h] = (await labExec(home.labDir(CLUSTER), h, EVIDENCE_CMD(CLUSTER))).stdout;
    return out;
  };

  /** plan and apply (and destroy, when asked) refuse with `message`; no hook ran; the backup is as it was. */
  const expectAllRefused = async (message: RegExp, opts: { destroy?: boolean; backup?: boolean } = {}) => {
    const runs = [['plan', '-f', clusterfile], ['apply', '-f', clusterfile, '--auto-approve'], ['plan', '-f', clusterfile, '--detailed-exitcode']];
    if (opts.destroy) runs.push(['destroy', '-f', clusterfile, '--auto-approve']);
    for (const args of runs) expectRefused(await home.ci(args), args, message);
    expect(await readEvidence()).toEqual(evidence);
    if (opts.backup !== false) expect(readFileSync(backupPath).equals(backupBytes)).toBe(true);
  };

  const expectRestoredAndQuiet = async (restored: { stdout: string }) => {
    expect(restored.stdout).toContain(`Restored ${statePath} from ${backupPath}: cluster ${CLUSTER}, lineage ${lineage}`);
    expect(restored.stdout).toContain('2 hosts, image ident:v1');
    const plan = await home.ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(plan.code, describeRun(['plan'], plan)).toBe(0);
    expect(await readEvidence()).toEqual(evidence);
  };

  beforeAll(async () => {
    home = makeHome('ci-e2e-ident-');
    await buildEvidenceImage(home, 'ident:v1');
    clusterfile = writeClusterfile(
      join(home.dir, 'Clusterfile'),
      clusterDoc(CLUSTER, { image: 'ident:v1', provider: 'LOCAL', hosts: [{ count: 1, roles: ['master'] }, { count: 1, roles: ['node'] }] }),
    );
    await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    statePath = home.statePath(CLUSTER);
    backupPath = `${statePath}.backup`;
    lineage = home.readState(CLUSTER)!.lineage;
    evidence = await readEvidence();
    backupBytes = readFileSync(backupPath);
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  it('applied once: every hook ran once, hosts and lab are marked with the state\'s lineage', () => {
    expect(evidence).toEqual({
      [HOSTS[0]]: `init-host=1 init-master0=1 join-node=0 lineage=${lineage}`,
      [HOSTS[1]]: `init-host=1 init-master0=0 join-node=1 lineage=${lineage}`,
    });
    expect(JSON.parse(readFileSync(join(home.labDir(CLUSTER), 'lab.json'), 'utf8')).lineage).toBe(lineage);
  });

  it('state.json deleted, backup kept: refused (a saved plan too), then restored', async () => {
    const saved = join(home.dir, 'saved.plan');
    await home.ciOk(['plan', '-f', clusterfile, '--out', saved]);
    rmSync(statePath);
    const message = /there is no state at .*state\.json, but its backup exists \(cluster ident-local[\s\S]*hint: put the backup back with `ci state restore --state /;
    const args = ['apply', '-f', clusterfile, saved];
    expectRefused(await home.ci(args), args, message);
    await expectAllRefused(message, { destroy: true });
    expect(existsSync(statePath)).toBe(false);
    const restored = await home.ciOk(['state', 'restore', '-f', clusterfile]);
    expect(restored.stdout).not.toContain('Moved');
    await expectRestoredAndQuiet(restored);
  }, 300_000);

  it('state.json replaced by another cluster\'s state: refused, then restored with the stranger moved aside', async () => {
    const mine = JSON.parse(readFileSync(statePath, 'utf8')) as ClusterState;
    const other: ClusterState = { ...mine, cluster: 'someone-else', lineage: randomUUID(), serial: 12 };
    const otherText = JSON.stringify(other, null, 2);
    writeFileSync(statePath, otherText);
    await expectAllRefused(/have different lineages: one of them is another cluster's state/, { destroy: true });
    const restored = await home.ciOk(['state', 'restore', '-f', clusterfile]);
    const aside = /Moved the state file that was there to (\S+)\.\n/.exec(restored.stdout)?.[1];
    expect(aside && readFileSync(aside, 'utf8')).toBe(otherText);
    await expectRestoredAndQuiet(restored);
  }, 300_000);

  it('state.json replaced by a fresh state of another lineage: refused, then restored', async () => {
    const fresh: ClusterState = { version: STATE_VERSION, lineage: randomUUID(), serial: 1, cluster: CLUSTER, provider: 'LOCAL', cmdsRun: [], outputs: {}, hosts: {} };
    writeFileSync(statePath, JSON.stringify(fresh));
    await expectAllRefused(/have different lineages/, { destroy: true });
    await expectRestoredAndQuiet(await home.ciOk(['state', 'restore', '-f', clusterfile]));
  }, 300_000);

  it('state and backup both gone: the lab\'s hosts are the sign; refused until the state is back', async () => {
    const keep = join(home.dir, 'kept-backup');
    renameSync(backupPath, keep);
    renameSync(statePath, join(home.dir, 'lost-state'));
    await expectAllRefused(/there is no state at .*state\.json, but .*lab\.json holds 2 host\(s\) .* of cluster ident-local: the cluster exists/, { backup: false });
    expect(existsSync(statePath) || existsSync(backupPath)).toBe(false);
    copyFileSync(keep, backupPath);
    await expectRestoredAndQuiet(await home.ciOk(['state', 'restore', '-f', clusterfile]));
    expect(readFileSync(backupPath).equals(backupBytes)).toBe(true);
  }, 300_000);

  it('a fresh state of another lineage and no backup: the lab\'s lineage is the sign', async () => {
    renameSync(backupPath, join(home.dir, 'kept-backup-2'));
    const fresh: ClusterState = { version: STATE_VERSION, lineage: randomUUID(), serial: 1, cluster: CLUSTER, provider: 'LOCAL', cmdsRun: [], outputs: {}, hosts: {} };
    writeFileSync(statePath, JSON.stringify(fresh));
    await expectAllRefused(new RegExp(`has lineage ${fresh.lineage}, but .*lab\\.json holds 2 host\\(s\\) .* of the state with lineage ${lineage}`), { destroy: true, backup: false });
    copyFileSync(join(home.dir, 'kept-backup-2'), backupPath);
    const restored = await home.ciOk(['state', 'restore', '-f', clusterfile]);
    expect(restored.stdout).toContain('Moved the state file that was there to ');
    await expectRestoredAndQuiet(restored);
  }, 300_000);

  it('destroy leaves an empty state of the same lineage, which the next apply continues', async () => {
    const before = home.readState(CLUSTER)!;
    const r = await home.ciOk(['destroy', '-f', clusterfile, '--auto-approve']);
    expect(r.stdout).toContain('Destroy complete!');
    const after = home.readState(CLUSTER)!;
    expect(after).toMatchObject({ cluster: CLUSTER, lineage, hosts: {}, cmdsRun: [] });
    expect(after).not.toHaveProperty('sealedOutputs');
    expect(after.image).toBeUndefined();
    expect(after.serial).toBeGreaterThan(before.serial);
    expect(existsSync(home.labDir(CLUSTER))).toBe(false);
    const list = await home.ciOk(['state', 'list', '-f', clusterfile]);
    expect(list.stdout).toContain(`cluster ${CLUSTER} (LOCAL), image (none applied)`);
    expect(list.stdout).toContain('no hosts: the state holds none');
    expect(list.stdout).not.toContain('HOST');
    const again = await home.ciOk(['destroy', '-f', clusterfile, '--auto-approve']);
    expect(again.stdout).toContain('Nothing to destroy: no hosts in state, and nothing of the cluster is left on this machine.');

    await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    expect(home.readState(CLUSTER)!.lineage).toBe(lineage);
    expect(JSON.parse(readFileSync(join(home.labDir(CLUSTER), 'lab.json'), 'utf8')).lineage).toBe(lineage);
    // New hosts: every hook ran once on them.
    expect(await readEvidence()).toEqual(evidence);
  }, 300_000);
});

describe.skipIf(!labsAvailable())('a lost or foreign state on BAREMETAL hosts: the hosts\' marks stop it', () => {
  const CLUSTER = 'ident-bm';
  let t: TestLab;
  let home: E2eHome;
  let clusterfile: string;
  let statePath: string;
  let ips: string[];
  let lineage: string;
  let evidence: Record<string, string>;
  let savedBackup: string;

  const hostExec = async (name: string, command: string) => {
    const s = await connectSsh(t.lab.sshTarget(name), { pinnedHostKey: t.lab.host(name)!.hostKey });
    try {
      return (await s.execChecked(command)).stdout;
    } finally {
      await s.close();
    }
  };
  const readEvidence = async () => ({ m: await hostExec('m', EVIDENCE_CMD(CLUSTER)), n: await hostExec('n', EVIDENCE_CMD(CLUSTER)) });

  beforeAll(async () => {
    home = makeHome('ci-e2e-ident-bm-');
    t = await openTestLab('ci-e2e-ident-bm-lab-');
    const hosts = await Promise.all(['m', 'n'].map((n) => t.lab.addHost(n, 'light')));
    ips = hosts.map((h) => h.ip);
    await buildEvidenceImage(home, 'ident:v1');
    clusterfile = writeClusterfile(join(home.dir, 'Clusterfile'), {
      apiVersion: 'cloudimage.io/v1',
      kind: 'Cluster',
      metadata: { name: CLUSTER },
      spec: {
        image: 'ident:v1',
        provider: 'BAREMETAL',
        ssh: { user: 'root', pk: t.lab.privateKeyPath },
        hosts: [{ ips: [ips[0]], roles: ['master'] }, { ips: [ips[1]], roles: ['node'] }],
      },
    });
    statePath = home.statePath(CLUSTER);
    await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    lineage = home.readState(CLUSTER)!.lineage;
    evidence = await readEvidence();
    savedBackup = join(home.dir, 'saved-backup');
    copyFileSync(`${statePath}.backup`, savedBackup);
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, []);
    await t?.cleanup();
  }, 300_000);

  it('applied once, and each host carries the state\'s lineage in the cluster\'s directory', () => {
    expect(evidence).toEqual({
      m: `init-host=1 init-master0=1 join-node=0 lineage=${lineage}`,
      n: `init-host=1 init-master0=0 join-node=1 lineage=${lineage}`,
    });
  });

  it('state and backup lost entirely: plan and apply probe the hosts and refuse, touching nothing', async () => {
    rmSync(statePath);
    rmSync(`${statePath}.backup`);
    for (const args of [['plan', '-f', clusterfile], ['apply', '-f', clusterfile, '--auto-approve']]) {
      const r = await home.ci(args);
      expectRefused(r, args, /error: 2 hosts hold files of cluster ident-bm that this state does not own:/);
      expect(r.stderr).toContain(`${ips[0]}: holds files of cluster ident-bm that belong to another state (lineage ${lineage}), not to this cluster, which has no state`);
      expect(r.stderr).toContain(`${ips[1]}: holds files of cluster ident-bm`);
      expect(r.stderr).toMatch(/hint: .*`ci state restore`.*remove \/var\/lib\/cloudimage\/clusters\/ident-bm on the host yourself/);
    }
    // Refused before anything: no state was even created, and no hook ran.
    expect(existsSync(statePath) || existsSync(`${statePath}.backup`)).toBe(false);
    expect(await readEvidence()).toEqual(evidence);
  }, 300_000);

  it('a foreign state that knows the hosts gets past the plan, but every contact is refused, destroy included', async () => {
    const real = JSON.parse(readFileSync(savedBackup, 'utf8')) as ClusterState;
    const foreign: ClusterState = { ...real, lineage: randomUUID() };
    // The node's join is missing from this state, so apply has work to do there.
    delete foreign.hosts[ips[1]].hooks['join-node'];
    writeFileSync(statePath, JSON.stringify(foreign));

    const apply = await home.ci(['apply', '-f', clusterfile, '--auto-approve']);
    expect(apply.code, describeRun(['apply'], apply)).toBe(1);
    expect(apply.stdout).toContain(`failed: ${ips[1]}: hook join-node: root@${ips[1]}:22: holds files of cluster ident-bm that belong to another state (lineage ${lineage})`);
    expect(apply.stdout).toMatch(/\n {4}hint: .*ci state restore/);

    // For destroy, the node's rootfs is unknown to the foreign state: its first step there is remove-files itself.
    const forDestroy = structuredClone(foreign);
    delete forDestroy.hosts[ips[1]].rootfsImage;
    writeFileSync(statePath, JSON.stringify({ ...forDestroy, serial: 50 }));
    const destroy = await home.ci(['destroy', '-f', clusterfile, '--auto-approve']);
    expect(destroy.code, describeRun(['destroy'], destroy)).toBe(1);
    expect(destroy.stdout).toContain(`failed: ${ips[0]}: hook clean: root@${ips[0]}:22: holds files of cluster ident-bm that belong to another state`);
    expect(destroy.stdout).toContain(`[${ips[0]}] remove files: skipped`);
    expect(destroy.stdout).toContain(`failed: ${ips[1]}: remove files: root@${ips[1]}:22: holds files of cluster ident-bm that belong to another state`);
    // Nothing ran, nothing was removed: the evidence the clean hook would wipe and the markers are all there.
    expect(await readEvidence()).toEqual(evidence);
    expect(await hostExec('m', `test -d /var/lib/cloudimage/clusters/${CLUSTER}/rootfs && echo kept`)).toBe('kept\n');
  }, 300_000);

  it('the saved backup restored: plan is empty again; destroy then removes files and marks, leaving an empty state', async () => {
    rmSync(statePath, { force: true });
    rmSync(`${statePath}.backup`, { force: true });
    copyFileSync(savedBackup, `${statePath}.backup`);
    const restored = await home.ciOk(['state', 'restore', '-f', clusterfile]);
    expect(restored.stdout).toContain(`cluster ${CLUSTER}, lineage ${lineage}`);
    const plan = await home.ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(plan.code, describeRun(['plan'], plan)).toBe(0);
    expect(readFileSync(`${statePath}.backup`).equals(readFileSync(savedBackup))).toBe(true);

    await home.ciOk(['destroy', '-f', clusterfile, '--auto-approve']);
    for (const name of ['m', 'n']) expect(await hostExec(name, `ls -A /var/lib/cloudimage/clusters 2>/dev/null; ls /var/lib/evidence 2>/dev/null; true`)).toBe('');
    expect(home.readState(CLUSTER)).toMatchObject({ lineage, hosts: {} });
  }, 300_000);
});
