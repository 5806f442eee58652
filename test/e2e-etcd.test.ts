/**
 * The whole lifecycle of the etcd example on systemd hosts this machine creates, through the `ci` CLI: create,
 * no-op plan, scale out and in, upgrade that sends only the changed layer, destroy that leaves nothing behind.
 * The steps share one CI_HOME and run in order; a failed step makes the later ones meaningless, so they stop.
 */
import { describe, expect, beforeAll, afterAll } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labsAvailable } from './helpers/lab.js';
import {
  cleanupHome, clusterDoc, etcdctl, etcdMembers, labExec, labFootprint, leftovers, makeHome, writeClusterfile, serialSteps, type E2eHome } from './helpers/e2e.js';
import { humanSize } from '../engine/cli/format.js';

const EXAMPLE = fileURLToPath(new URL('../examples/etcd', import.meta.url));
const CLUSTER = 'etcd-e2e';
const LONG = 600_000;

describe.skipIf(!labsAvailable())('etcd example lifecycle on LOCAL systemd hosts', () => {
  let home: E2eHome;
  let clusterfile: string;

  const write = (image: string, count: number) =>
    writeClusterfile(
      clusterfile,
      clusterDoc(CLUSTER, {
        image,
        provider: 'LOCAL',
        env: ['ETCD_QUOTA=2147483648'],
        hosts: [{ count, kind: 'systemd', roles: ['master'] }],
      }),
    );

  const hostIps = () => {
    const state = home.readState(CLUSTER)!;
    return Object.values(state.hosts).map((h) => h.ip).sort();
  };
  /** The settings each member's etcd really runs with that differ between v1 and v2. */
  const configOnHosts = async () => {
    const out: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const res = await labExec(home.labDir(CLUSTER), `${CLUSTER}-master-${i}`, "grep -E '^ETCD_(CONFIG_REVISION|SNAPSHOT_COUNT)=' /etc/etcd-example/etcd.env | sort | tr '\\n' ' '");
      out.push(res.stdout.trim());
    }
    return out;
  };
  const endpoint = () => `http://${home.readState(CLUSTER)!.hosts[`${CLUSTER}-master-1`].ip}:2379`;

  const step = serialSteps(LONG);

  beforeAll(async () => {
    home = makeHome('ci-e2e-etcd-');
    clusterfile = join(home.dir, 'Clusterfile');
    await home.ciOk(['build', '-t', 'etcd-example:v1', EXAMPLE]);
    await home.ciOk(['build', '-t', 'etcd-example:v2', '--build-arg', 'CONFIG=v2', EXAMPLE]);
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  step('applies 3 masters: a healthy etcd cluster that stores keys', async () => {
    write('etcd-example:v1', 3);
    const r = await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    expect(r.stdout).toContain('Apply complete!');
    expect(hostIps()).toHaveLength(3);
    const health = etcdctl(endpoint(), ['endpoint', 'health', '--cluster']);
    expect(health.match(/is healthy/g)).toHaveLength(3);
    expect(etcdMembers(endpoint())).toHaveLength(3);
    etcdctl(endpoint(), ['put', '/e2e/answer', '42']);
    // The Kubefile's CMD ran once on master0.
    expect(etcdctl(endpoint(), ['get', '--print-value-only', '/cloudimage/installed-by']).trim()).toBe(CLUSTER);
  });

  step('plans no changes right after apply (exit 0 with --detailed-exitcode)', async () => {
    const r = await home.ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  step('scales out to 5 members', async () => {
    write('etcd-example:v1', 5);
    await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    const members = etcdMembers(endpoint());
    expect(members).toHaveLength(5);
    expect(members.map((m) => new URL(m.client).hostname).sort()).toEqual(hostIps());
    expect(etcdctl(endpoint(), ['endpoint', 'health', '--cluster']).match(/is healthy/g)).toHaveLength(5);
  });

  step('scales back in to 3 members, matching the hosts in state', async () => {
    write('etcd-example:v1', 3);
    await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    const state = home.readState(CLUSTER)!;
    expect(Object.keys(state.hosts).sort()).toEqual([1, 2, 3].map((i) => `${CLUSTER}-master-${i}`));
    const members = etcdMembers(endpoint());
    expect(members).toHaveLength(3);
    expect(members.map((m) => new URL(m.client).hostname).sort()).toEqual(hostIps());
    expect(etcdctl(endpoint(), ['get', '--print-value-only', '/e2e/answer']).trim()).toBe('42');
  });

  step('upgrades to v2 sending only the changed layer, without losing data', async () => {
    const v1 = JSON.parse((await home.ciOk(['inspect', 'etcd-example:v1'])).stdout) as { layers: { digest: string; size: number }[] };
    const v2 = JSON.parse((await home.ciOk(['inspect', 'etcd-example:v2'])).stdout) as { layers: { digest: string; size: number }[] };
    const known = new Set(v1.layers.map((l) => l.digest));
    const changed = v2.layers.filter((l) => !known.has(l.digest));
    expect(changed).toHaveLength(1);

    write('etcd-example:v2', 3);
    const plan = await home.ciOk(['plan', '-f', clusterfile, '--json']);
    const sends = (JSON.parse(plan.stdout) as { actions: { kind: string; host?: string; layers?: string[]; bytes?: number }[] }).actions.filter(
      (a) => a.kind === 'send-layers',
    );
    expect(sends).toHaveLength(3);
    for (const s of sends) {
      expect(s.layers).toEqual([changed[0].digest]);
      expect(s.bytes).toBe(changed[0].size);
    }

    const r = await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    // Every host needs the layer, so a total of exactly 3 layer sizes means each host got exactly that layer.
    expect(r.stdout).toContain(`layer bytes sent: ${humanSize(3 * changed[0].size)}.`);
    expect(home.readState(CLUSTER)!.image?.ref).toBe('etcd-example:v2');
    expect(etcdctl(endpoint(), ['get', '--print-value-only', '/e2e/answer']).trim()).toBe('42');
    expect(etcdctl(endpoint(), ['endpoint', 'health', '--cluster']).match(/is healthy/g)).toHaveLength(3);
    for (let i = 1; i <= 3; i++) {
      const host = `${CLUSTER}-master-${i}`;
      const res = await labExec(home.labDir(CLUSTER), host, 'systemctl is-active etcd-example; grep -c . /etc/etcd-example/etcd.env');
      expect(res.stdout.split('\n')[0], `${host}: ${res.stdout}${res.stderr}`).toBe('active');
    }
    const again = await home.ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(await configOnHosts()).toEqual(['ETCD_CONFIG_REVISION=v2 ETCD_SNAPSHOT_COUNT=5000', 'ETCD_CONFIG_REVISION=v2 ETCD_SNAPSHOT_COUNT=5000', 'ETCD_CONFIG_REVISION=v2 ETCD_SNAPSHOT_COUNT=5000']);
  });

  step('rolls back to v1: upgrade runs on every member again, nothing is sent, the members run v1\'s configuration', async () => {
    write('etcd-example:v1', 3);
    const plan = JSON.parse((await home.ciOk(['plan', '-f', clusterfile, '--json'])).stdout) as { actions: { kind: string; hook?: string; host?: string; reason: string }[] };
    expect(plan.actions.filter((a) => a.kind === 'send-layers')).toEqual([]);
    const upgrades = plan.actions.filter((a) => a.kind === 'hook' && a.hook === 'upgrade');
    expect(upgrades.map((a) => a.host)).toEqual([1, 2, 3].map((i) => `${CLUSTER}-master-${i}`));
    expect(upgrades[0].reason).toBe('image changed v2 -> v1');
    const r = await home.ciOk(['apply', '-f', clusterfile, '--auto-approve']);
    expect(r.stdout).toContain('layer bytes sent: 0 B.');
    expect(home.readState(CLUSTER)!.image?.ref).toBe('etcd-example:v1');
    expect(await configOnHosts()).toEqual(['ETCD_SNAPSHOT_COUNT=10000', 'ETCD_SNAPSHOT_COUNT=10000', 'ETCD_SNAPSHOT_COUNT=10000']);
    expect(etcdctl(endpoint(), ['get', '--print-value-only', '/e2e/answer']).trim()).toBe('42');
    expect(etcdctl(endpoint(), ['endpoint', 'health', '--cluster']).match(/is healthy/g)).toHaveLength(3);
    const again = await home.ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  step('destroys everything: hosts, processes, network and lab directory, leaving an empty state of the same lineage', async () => {
    const lineage = home.readState(CLUSTER)!.lineage;
    const before = await labFootprint(home.labDir(CLUSTER));
    expect(before.netns).toHaveLength(3);
    expect(before.procs.length).toBeGreaterThan(3);
    const r = await home.ciOk(['destroy', '-f', clusterfile, '--auto-approve']);
    expect(r.stdout).toContain('Destroy complete!');
    expect(await leftovers(before)).toEqual({ netns: [], links: [], procs: [], dir: false });
    expect(home.readState(CLUSTER)).toMatchObject({ lineage, hosts: {}, cmdsRun: [] });
    expect(home.readState(CLUSTER)).not.toHaveProperty('sealedOutputs');
    expect(home.readState(CLUSTER)!.image).toBeUndefined();
    expect(existsSync(`${home.statePath(CLUSTER)}.backup`)).toBe(true);
  });
});
