/**
 * The etcd example on BAREMETAL hosts (light lab hosts standing in for machines that already exist), each group
 * logging in its own way: root password (from ${SSH_PASSWORD}), a key file, and a key file with a passphrase (from
 * ${SSH_PASSPHRASE}). Neither secret may show up in any output, the state, or the apply logs.
 *
 * The lab's sshd refuses root passwords (PermitRootLogin=prohibit-password on its command line), so the password
 * host also runs a second sshd on port 2222 that accepts them; it lives in the host and dies with it.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { cleanupHome, etcdctl, etcdMembers, makeHome, writeClusterfile, type E2eHome } from './helpers/e2e.js';
import type { CliResult } from './helpers/cli.js';
import { connectSsh } from '../providers/ssh/session.js';

const EXAMPLE = fileURLToPath(new URL('../examples/etcd', import.meta.url));
const CLUSTER = 'etcd-bm';
const PASSWORD = `pw-${randomBytes(9).toString('base64url')}`;
const PASSPHRASE = `pp-${randomBytes(9).toString('base64url')}`;

describe.skipIf(!labsAvailable())('etcd example on BAREMETAL hosts with password, key and passphrase logins', () => {
  let t: TestLab;
  let home: E2eHome;
  let clusterfile: string;
  const outputs: CliResult[] = [];
  const ips: string[] = [];
  const secretEnv = { SSH_PASSWORD: PASSWORD, SSH_PASSPHRASE: PASSPHRASE };

  const rootExec = async (host: string, command: string, stdin?: string) => {
    const s = await connectSsh(t.lab.sshTarget(host), { pinnedHostKey: t.lab.host(host)!.hostKey });
    try {
      return await s.execChecked(command, { stdin });
    } finally {
      await s.close();
    }
  };

  const ci = async (args: string[], expectCode = 0) => {
    const r = await home.ci(args, { env: secretEnv });
    outputs.push(r);
    expect(r.code, `ci ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expectCode);
    return r;
  };

  beforeAll(async () => {
    home = makeHome('ci-e2e-bm-');
    t = await openTestLab('ci-e2e-bm-lab-');
    const hosts = await Promise.all(['pw', 'key', 'pp'].map((n) => t.lab.addHost(n, 'light')));
    ips.push(...hosts.map((h) => h.ip));

    // Password host: root's password set, and an sshd that allows it on port 2222.
    await rootExec('pw', 'chpasswd', `root:${PASSWORD}\n`);
    await rootExec(
      'pw',
      `/usr/sbin/sshd -h /etc/ssh/ssh_host_ed25519_key -p 2222 -o ListenAddress=${hosts[0].ip} -o UsePAM=no ` +
        '-o PasswordAuthentication=yes -o PermitRootLogin=yes -o PubkeyAuthentication=no -o PidFile=none',
    );

    // Passphrase host: a new key, encrypted, authorised for root.
    const keyFile = join(home.dir, 'id_pp');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', PASSPHRASE, '-C', 'e2e-passphrase', '-f', keyFile]);
    await rootExec('pp', 'cat >> /root/.ssh/authorized_keys', readFileSync(`${keyFile}.pub`, 'utf8'));

    await home.ciOk(['build', '-t', 'etcd-example:v1', EXAMPLE]);
    clusterfile = writeClusterfile(join(home.dir, 'Clusterfile'), {
      apiVersion: 'sealer.cloud/v2',
      kind: 'Cluster',
      metadata: { name: CLUSTER },
      spec: {
        image: 'etcd-example:v1',
        provider: 'BAREMETAL',
        ssh: { user: 'root', passwd: '${SSH_PASSWORD}', port: '2222' },
        hosts: [
          { ips: [hosts[0].ip], roles: ['master'] },
          { ips: [hosts[1].ip], roles: ['master'], ssh: { passwd: '', port: 22, pk: t.lab.privateKeyPath } },
          { ips: [hosts[2].ip], roles: ['master'], ssh: { passwd: '', port: 22, pk: keyFile, pkPasswd: '${SSH_PASSPHRASE}' } },
        ],
      },
    });
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, []);
    await t?.cleanup();
  }, 300_000);

  it('applies, plans no changes, destroys, and never reveals the password or passphrase', async () => {
    const applied = await ci(['apply', '-f', clusterfile, '--auto-approve']);
    expect(applied.stdout).toContain('Apply complete!');

    const endpoint = `http://${ips[0]}:2379`;
    expect(etcdctl(endpoint, ['endpoint', 'health', '--cluster']).match(/is healthy/g)).toHaveLength(3);
    expect(etcdMembers(endpoint).map((m) => new URL(m.client).hostname).sort()).toEqual([...ips].sort());

    const state = home.readState(CLUSTER)!;
    expect(Object.keys(state.hosts).sort()).toEqual([...ips].sort());
    expect(state.hosts[ips[0]].ssh).toEqual({ user: 'root', port: 2222 });
    expect(state.hosts[ips[2]].ssh).toEqual({ user: 'root', port: 22 });
    for (const ip of ips) expect(state.hosts[ip].hostKey).toBe(t.lab.hosts().find((h) => h.ip === ip)!.hostKey);
    const stateText = readFileSync(home.statePath(CLUSTER), 'utf8');

    await ci(['plan', '-f', clusterfile, '--detailed-exitcode'], 0);
    await ci(['state', 'list']);

    const destroyed = await ci(['destroy', '-f', clusterfile, '--auto-approve']);
    expect(destroyed.stdout).toContain('Destroy complete!');
    expect(home.readState(CLUSTER)).toMatchObject({ lineage: state.lineage, hosts: {} });
    const remaining: Record<string, string> = {};
    for (const name of ['pw', 'key', 'pp']) {
      // The machines stay (bare metal), but cloudimage's files and the example's etcd are gone.
      const r = await rootExec(name, 'ls /var/lib/cloudimage/clusters 2>/dev/null; pgrep -a -x etcd-example; true');
      remaining[name] = r.stdout.trim();
    }
    expect(remaining, destroyed.stdout).toEqual({ pw: '', key: '', pp: '' });

    const logs = home.logs(CLUSTER);
    expect(logs).toContain('hook init-master0: done');
    expect(logs).toContain('hook clean: done');
    const backup = readFileSync(`${home.statePath(CLUSTER)}.backup`, 'utf8');
    const places: [string, string][] = [
      ...outputs.flatMap((r, i): [string, string][] => [[`stdout of run ${i}`, r.stdout], [`stderr of run ${i}`, r.stderr]]),
      ['state file', stateText],
      ['state backup', backup],
      ['apply/destroy logs', logs],
    ];
    for (const [where, text] of places) {
      expect(text.includes(PASSWORD), `password found in ${where}`).toBe(false);
      expect(text.includes(PASSPHRASE), `passphrase found in ${where}`).toBe(false);
    }
  }, 600_000);
});
