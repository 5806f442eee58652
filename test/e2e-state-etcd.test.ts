/**
 * A team sharing one cluster's state in etcd (a real 3-member etcd on loopback), through the `ci` a user runs: two
 * operators with their own CI_HOME apply the same Clusterfile to the same BAREMETAL hosts. The second is refused at
 * once with the holder's details; the first is killed with SIGKILL and the second then proceeds by itself once the
 * lease runs out; the etcd leader is stopped in the middle of a scale-up and the apply finishes or resumes; the state
 * versions never skip a serial; and no hook output is ever in etcd in clear.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { CI_BIN } from './helpers/cli.js';
import { cleanupHome, describeRun, makeHome, serialSteps, waitFor, writeClusterfile, type E2eHome } from './helpers/e2e.js';
import { etcdDump, etcdGet, startEtcdCluster, type EtcdCluster } from './helpers/etcd.js';
import { openStateBackend } from '../state/open.js';

const EXAMPLE = fileURLToPath(new URL('../examples/etcd', import.meta.url));
const CLUSTER = 'team';
const PASSPHRASE = 'team passphrase for the e2e';
const PREFIX = '/e2e';

describe.skipIf(!labsAvailable())('two operators, one cluster, its state in etcd', () => {
  let etcd: EtcdCluster;
  let t: TestLab;
  let alice: E2eHome;
  let bob: E2eHome;
  let clusterfile: string;
  const ips: string[] = [];
  const env = { CI_STATE_PASSPHRASE: PASSPHRASE };
  const step = serialSteps(600_000);

  const write = (hosts: number) =>
    writeClusterfile(join(alice.dir, 'Clusterfile'), {
      apiVersion: 'sealer.cloud/v2',
      kind: 'Cluster',
      metadata: { name: CLUSTER },
      spec: {
        image: 'etcd-example:v1',
        provider: 'BAREMETAL',
        backend: { type: 'etcd', endpoints: etcd.endpoints, prefix: PREFIX, lockTTL: '5s' },
        ssh: { user: 'root', pk: t.lab.privateKeyPath },
        hosts: [{ ips: ips.slice(0, hosts), roles: ['master'] }],
      },
    });
  const historyKeys = () => etcdGet(etcd.endpoints, `${PREFIX}/clusters/${CLUSTER}/history/`, true).split('\n').filter(Boolean);
  const serials = async (home: E2eHome) => {
    const r = await home.ci(['state', 'history', '-f', clusterfile]);
    expect(r.code, describeRun(['state', 'history'], r)).toBe(0);
    return [...r.stdout.matchAll(/^(\d+)\s/gm)].map((m) => Number(m[1]));
  };

  beforeAll(async () => {
    etcd = await startEtcdCluster(3);
    t = await openTestLab('ci-e2e-etcd-lab-');
    const hosts = await Promise.all(['a', 'b', 'c', 'd'].map((n) => t.lab.addHost(n, 'light')));
    ips.push(...hosts.map((h) => h.ip));
    alice = makeHome('ci-e2e-alice-');
    bob = makeHome('ci-e2e-bob-');
    for (const h of [alice, bob]) await h.ciOk(['build', '-t', 'etcd-example:v1', EXAMPLE]);
    clusterfile = write(3);
  }, 600_000);

  afterAll(async () => {
    if (bob) await bob.ci(['destroy', '-f', clusterfile, '--auto-approve'], { env }).catch(() => undefined);
    for (const h of [alice, bob]) if (h) await cleanupHome(h, []);
    await t?.cleanup();
    await etcd?.destroy();
  }, 600_000);

  step('without the team passphrase, the etcd backend is refused before anything is done', async () => {
    const r = await alice.ci(['plan', '-f', clusterfile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('CI_STATE_PASSPHRASE is not set');
  });

  step('the second apply is refused at once with the holder; SIGKILL of the first, and the second proceeds after the lease TTL', async () => {
    const first = spawn(process.execPath, [CI_BIN, 'apply', '-f', clusterfile, '--auto-approve'], {
      env: { ...process.env, ...env, CI_HOME: alice.dir, FORCE_COLOR: '0' },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => first.once('exit', r));
    try {
      // Mid-apply: a few steps recorded, the hosts not all done.
      await waitFor(() => historyKeys().length >= 3, 'the first apply to record some steps', 300_000, 100);
      const refused = await bob.ci(['apply', '-f', clusterfile, '--auto-approve'], { env });
      expect(refused.code, describeRun(['apply'], refused)).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`locked by root@\\S+ \\(pid ${first.pid}, apply\\) since \\d{4}-`));
      expect(refused.stderr).toMatch(/expires by itself within 5s/);
    } finally {
      first.kill('SIGKILL');
      await exited;
    }
    const started = Date.now();
    const second = await bob.ci(['apply', '-f', clusterfile, '--auto-approve', '--lock-timeout', '60s'], { env });
    expect(second.code, describeRun(['apply'], second)).toBe(0);
    expect(second.stdout).toContain('Apply complete!');
    expect(Date.now() - started).toBeLessThan(120_000);
    // Alice, from her own home, sees the state Bob wrote: nothing left to do.
    const plan = await alice.ci(['plan', '-f', clusterfile, '--detailed-exitcode'], { env });
    expect(plan.code, describeRun(['plan'], plan)).toBe(0);
    expect(plan.stdout).toMatch(/No changes/);
  });

  step('the etcd leader stopped during a scale-up: the apply finishes, or stops clearly and the rerun finishes', async () => {
    clusterfile = write(4);
    const before = historyKeys().length;
    const run = alice.ci(['apply', '-f', clusterfile, '--auto-approve'], { env });
    await waitFor(() => historyKeys().length > before, 'the scale-up to record a step', 300_000, 100);
    const leader = etcd.leader();
    expect(leader).toBeGreaterThanOrEqual(0);
    await etcd.stop(leader, true);
    const r = await run;
    if (r.code !== 0) {
      expect(r.stderr, describeRun(['apply'], r)).toMatch(/^error: .*etcd/m);
      const rerun = await alice.ci(['apply', '-f', clusterfile, '--auto-approve', '--lock-timeout', '60s'], { env });
      expect(rerun.code, describeRun(['apply'], rerun)).toBe(0);
    } else {
      expect(r.stdout).toContain('Apply complete!');
    }
    await etcd.start(leader);
    const plan = await bob.ci(['plan', '-f', clusterfile, '--detailed-exitcode'], { env });
    expect(plan.code, describeRun(['plan'], plan)).toBe(0);
    const kept = await serials(bob);
    expect(kept.length).toBeGreaterThan(5);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => kept[0] + i));
  });

  step('no hook output, and not the passphrase, is in etcd in clear, in the state or any version', async () => {
    const pulled = await bob.ci(['state', 'pull', '-f', clusterfile], { env });
    expect(pulled.code).toBe(0);
    const stored = JSON.parse(pulled.stdout);
    expect(stored.outputs).toBeUndefined();
    const backend = openStateBackend({ cluster: CLUSTER, home: bob.dir, spec: { type: 'etcd', endpoints: etcd.endpoints, prefix: PREFIX }, env });
    const state = await backend.read().finally(() => backend.close());
    const all = etcdDump(etcd.endpoints, `${PREFIX}/clusters/${CLUSTER}/`);
    expect(all).toContain('/history/');
    for (const value of Object.values(state!.outputs)) expect(all).not.toContain(value);
    if (Object.keys(state!.outputs).length > 0) expect(stored.sealedOutputs?.alg).toBe('AES-256-GCM');
    expect(all).not.toContain(PASSPHRASE);
  });

  step('migrate to a local file and back keeps lineage and serial; destroy from the other home leaves an empty state', async () => {
    const before = JSON.parse((await bob.ci(['state', 'pull', '-f', clusterfile], { env })).stdout);
    const toLocal = await bob.ci(['state', 'migrate', '--to', 'local', '-f', clusterfile], { env });
    expect(toLocal.code, describeRun(['state', 'migrate'], toLocal)).toBe(0);
    expect(bob.readState(CLUSTER)).toMatchObject({ lineage: before.lineage, serial: before.serial });
    const refused = await bob.ci(['plan', '-f', clusterfile], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/no longer in etcd .* moved to /);
    const back = await bob.ci(['state', 'migrate', '--to', 'etcd', '-f', clusterfile], { env });
    expect(back.code, describeRun(['state', 'migrate'], back)).toBe(0);
    const after = JSON.parse((await alice.ci(['state', 'pull', '-f', clusterfile], { env })).stdout);
    expect(after).toMatchObject({ lineage: before.lineage, serial: before.serial });
    const destroyed = await bob.ci(['destroy', '-f', clusterfile, '--auto-approve'], { env });
    expect(destroyed.code, describeRun(['destroy'], destroyed)).toBe(0);
    const list = await alice.ci(['state', 'list', '-f', clusterfile], { env });
    expect(list.stdout).toMatch(/no hosts/);
  });
});
