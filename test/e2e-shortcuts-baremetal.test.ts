/**
 * sealer's shortcuts on BAREMETAL hosts (light lab hosts standing in for machines that exist already): `ci run -m IP
 * -p PASSWORD` (the password kept only in the 0600 Clusterfile, never in output, state or logs; `-p '${VAR}'` keeps
 * only the reference), and `ci run -m IP --pk KEY` then `ci join -n IP` / `ci delete -n IP` by address, with
 * an IP already in, or not in, the cluster refused by name.
 *
 * The lab's sshd refuses root passwords, so the password host also runs a second sshd on port 2222 that accepts them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { cleanupHome, describeRun, makeHome, type E2eHome } from './helpers/e2e.js';
import type { CliResult } from './helpers/cli.js';
import { connectSsh } from '../providers/ssh/session.js';

const PASSWORD = `pw-${randomBytes(9).toString('base64url')}`;

describe.skipIf(!labsAvailable())('ci run, join and delete on BAREMETAL hosts', () => {
  let t: TestLab;
  let home: E2eHome;
  const ips: Record<string, string> = {};
  const outputs: CliResult[] = [];
  const stored = (name: string) => join(home.dir, 'clusters', name, 'Clusterfile');

  const rootExec = async (host: string, command: string, stdin?: string) => {
    const s = await connectSsh(t.lab.sshTarget(host), { pinnedHostKey: t.lab.host(host)!.hostKey });
    try {
      return (await s.execChecked(command, { stdin })).stdout;
    } finally {
      await s.close();
    }
  };
  const ci = async (args: string[], code = 0, env: NodeJS.ProcessEnv = {}) => {
    const r = await home.ci(args, { env });
    outputs.push(r);
    expect(r.code, describeRun(args, r)).toBe(code);
    return r;
  };
  const inState = (name: string) => Object.keys(home.readState(name)?.hosts ?? {}).sort();
  const clusterDirs = (host: string) => rootExec(host, 'ls /var/lib/cloudimage/clusters 2>/dev/null; true').then((s) => s.trim());

  beforeAll(async () => {
    home = makeHome('ci-e2e-bm-shortcuts-');
    t = await openTestLab('ci-e2e-bm-sc-lab-');
    const hosts = await Promise.all(['pw', 'k1', 'k2'].map((n) => t.lab.addHost(n, 'light')));
    for (const h of hosts) ips[h.name] = h.ip;
    await rootExec('pw', 'chpasswd', `root:${PASSWORD}\n`);
    await rootExec(
      'pw',
      `/usr/sbin/sshd -h /etc/ssh/ssh_host_ed25519_key -p 2222 -o ListenAddress=${ips.pw} -o UsePAM=no ` +
        '-o PasswordAuthentication=yes -o PermitRootLogin=yes -o PubkeyAuthentication=no -o PidFile=none',
    );
    const src = join(home.dir, 'image');
    mkdirSync(join(src, 'hooks'), { recursive: true });
    writeFileSync(join(src, 'hooks', 'init-host'), '#!/bin/sh\nset -eu\necho "${SITE:-}" > "$CI_ROOTFS/../site"\n');
    chmodSync(join(src, 'hooks', 'init-host'), 0o755);
    writeFileSync(join(src, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\n');
    await home.ciOk(['build', '-q', '-t', 'bm-sc:v1', src]);
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, ['bm-pw', 'bm-key'].map(stored));
    await t?.cleanup();
  }, 300_000);

  it('-p: the password logs in, is kept only in the 0600 Clusterfile, and with ${VAR} not even there', async () => {
    const run = await ci(['run', 'bm-sc:v1', '-m', ips.pw, '-p', PASSWORD, '--port', '2222', '--name', 'bm-pw', '-e', 'SITE=dc1', '--auto-approve']);
    expect(run.stdout).toContain('Apply complete!');
    expect(run.stderr).toContain('note: the secret given with -p is kept in that file (mode 0600)');
    expect(inState('bm-pw')).toEqual([ips.pw]);
    expect(home.readState('bm-pw')!.hosts[ips.pw].ssh).toEqual({ user: 'root', port: 2222 });
    expect((await rootExec('pw', 'cat /var/lib/cloudimage/clusters/bm-pw/site')).trim()).toBe('dc1');
    expect(statSync(stored('bm-pw')).mode & 0o777).toBe(0o600);
    expect(readFileSync(stored('bm-pw'), 'utf8')).toContain(`passwd: ${PASSWORD}`);
    const state = readFileSync(home.statePath('bm-pw'), 'utf8');
    await ci(['delete', '--all', '--name', 'bm-pw', '--auto-approve']);
    expect(await clusterDirs('pw')).toBe('');
    expect(existsSync(stored('bm-pw'))).toBe(false);

    // The reference form: the file names the variable, the password comes from the environment of each run.
    await ci(['run', 'bm-sc:v1', '-m', ips.pw, '-p', '${SSH_PASSWORD}', '--port', '2222', '--name', 'bm-pw', '--auto-approve'], 0, { SSH_PASSWORD: PASSWORD });
    const text = readFileSync(stored('bm-pw'), 'utf8');
    expect(text).toContain('passwd: ${SSH_PASSWORD}');
    expect(text).not.toContain(PASSWORD);
    expect(inState('bm-pw')).toEqual([ips.pw]);
    await ci(['delete', '--all', '--name', 'bm-pw', '--auto-approve'], 0, { SSH_PASSWORD: PASSWORD });

    const places: [string, string][] = [
      ...outputs.flatMap((r, i): [string, string][] => [[`stdout of run ${i}`, r.stdout], [`stderr of run ${i}`, r.stderr]]),
      ['state file', state],
      ['logs', home.logs('bm-pw')],
    ];
    for (const [where, what] of places) expect(what.includes(PASSWORD), `password found in ${where}`).toBe(false);
  }, 300_000);

  it('--pk, then join and delete by address', async () => {
    await ci(['run', 'bm-sc:v1', '-m', ips.k1, '--pk', t.lab.privateKeyPath, '--name', 'bm-key', '--auto-approve']);
    expect(inState('bm-key')).toEqual([ips.k1]);

    await ci(['join', '-n', ips.k2, '--name', 'bm-key', '--auto-approve']);
    expect(inState('bm-key')).toEqual([ips.k1, ips.k2].sort());
    expect(home.readState('bm-key')!.hosts[ips.k2].roles).toEqual(['node']);
    expect(await clusterDirs('k2')).toBe('bm-key');

    const again = await ci(['join', '-n', ips.k2, '--name', 'bm-key', '--auto-approve'], 64);
    expect(again.stderr).toContain(`error: ${ips.k2} is already in cluster bm-key (as node)`);
    const wrongRole = await ci(['delete', '-m', ips.k2, '--name', 'bm-key', '--auto-approve'], 64);
    expect(wrongRole.stderr).toContain(`error: ${ips.k2} is a node of cluster bm-key, not a master\nhint: delete it with -n`);

    await ci(['delete', '-n', ips.k2, '--name', 'bm-key', '--auto-approve']);
    expect(inState('bm-key')).toEqual([ips.k1]);
    expect(await clusterDirs('k2')).toBe('');
    expect(readFileSync(stored('bm-key'), 'utf8')).not.toContain(ips.k2);
    const absent = await ci(['delete', '-n', ips.k2, '--name', 'bm-key', '--auto-approve'], 64);
    expect(absent.stderr).toContain(`error: ${ips.k2} is not in cluster bm-key`);

    await ci(['delete', '--all', '--name', 'bm-key', '--auto-approve']);
    expect(await clusterDirs('k1')).toBe('');
  }, 300_000);
});
