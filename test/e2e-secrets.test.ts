/**
 * Secrets over a whole cluster lifecycle through the `ci` CLI, on BAREMETAL hosts (light lab hosts) logged in with a
 * password (a second sshd on port 2222 accepts it) and with a passphrase-protected key. The image's hooks make
 * outputs (a join token, an admin key, notes) and print them, and the Clusterfile's env hands the password to the
 * hooks, which print it too: from the hook that made an output, from later hooks in the same apply, and from hooks
 * of later applies that get the outputs from the state.
 *
 * Every byte the CLI printed, every log file, every version of state.json and its backup seen along the way, every
 * plan file and every other file under CI_HOME must hold none of them in clear. The outputs must still reach the
 * hooks (each join proves it holds master0's token), and while a hook runs with them in its environment no process
 * on any host, nor on this machine, has one in its command line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { cleanupHome, makeHome, waitFor, writeClusterfile, type E2eHome } from './helpers/e2e.js';
import { removeDir, tempDir, writeTree, type Tree } from './helpers/tmp.js';
import type { CliResult } from './helpers/cli.js';
import { connectSsh } from '../providers/ssh/session.js';
import { LocalStateBackend } from '../state/local.js';
import { stateKeys } from '../state/keys.js';

const CLUSTER = 'sec';
const PASSWORD = `pw-${randomBytes(9).toString('base64url')}`;
const PASSPHRASE = `pp-${randomBytes(9).toString('base64url')}`;
const D = '/var/lib/e2e-sec';

const hook = (body: string) => ({ content: `#!/bin/sh\nset -eu\n. ./hooks/lib.sh\n${body}\n`, mode: 0o755 });

/** The image: hooks that make outputs and print them (and the password they get as env), in three releases. */
function imageTree(release: number): Tree {
  const tree: Tree = {
    Kubefile: [
      'FROM scratch',
      'COPY hooks/ /hooks/',
      'COPY release/ /release/',
      `CMD printf 'cmd token %s\\n' "$JOIN_TOKEN"; printf 'cmd admin %s\\n' "$ADMIN_KEY" >&2; printf %s "$JOIN_TOKEN" | sha256sum | cut -d' ' -f1 > ${D}/cmd-saw`,
      '',
    ].join('\n'),
    'release/number': `${release}\n`,
    'hooks/lib.sh': `D=${D}\nrand() { head -c 24 /dev/urandom | base64 | tr -d '\\n/+='; }\nproof() { printf %s "$1" | sha256sum | cut -d' ' -f1; }\n`,
    'hooks/init-host': hook('mkdir -p "$D" && chmod 700 "$D"\necho "init-host on $CI_HOST"'),
    'hooks/init-master0': hook(
      [
        // Like `kubeadm init`: the hook makes the token, prints it, and hands it on as an output.
        'if [ ! -f "$D/token" ]; then (umask 077; echo "tok-$(rand)" > "$D/token"; echo "adm-$(rand)" > "$D/admin"); fi',
        't=$(cat "$D/token"); a=$(cat "$D/admin")',
        'echo "JOIN_TOKEN=$t" >> "$CI_OUTPUT"',
        'echo "ADMIN_KEY=$a" >> "$CI_OUTPUT"',
        'proof "$t" > "$D/token.sha"',
        'echo "join with: --token $t"',
        'echo "admin key: $a" >&2',
      ].join('\n'),
    ),
    'hooks/join-master': hook(joinBody()),
    'hooks/join-node': hook(joinBody()),
    'hooks/reconfigure': hook('echo "reconfigure on $CI_HOST sees admin key $ADMIN_KEY"'),
    'hooks/upgrade': hook(
      [
        'if [ "$CI_HOST" = "$CI_MASTER0" ] && [ -f release/fail-upgrade ]; then',
        '  f="fresh-$(rand)"; (umask 077; echo "$f" > "$D/fresh"); echo "FRESH_SECRET=$f" >> "$CI_OUTPUT"',
        '  echo "upgrade failed: token $JOIN_TOKEN, fresh $f, password $DEPLOY_PASSWORD" >&2',
        '  exit 3',
        'fi',
        'if [ "$CI_HOST" = "$CI_MASTER0" ]; then',
        '  n="note-$(rand)"; (umask 077; echo "$n" > "$D/note"); echo "UPGRADE_NOTE=$n" >> "$CI_OUTPUT"; echo "upgrade note $n"',
        'fi',
        'echo "upgrading $CI_HOST with token $JOIN_TOKEN" >&2',
      ].join('\n'),
    ),
    'hooks/clean': hook('echo "clean on $CI_HOST with token $JOIN_TOKEN and note ${UPGRADE_NOTE:-none}"\nrm -rf "$D"'),
  };
  if (release === 3) tree['release/fail-upgrade'] = '';
  return tree;
}

function joinBody(): string {
  return [
    '[ -n "${JOIN_TOKEN:-}" ] || { echo "no join token in the environment" >&2; exit 1; }',
    // Held here while the test looks at every process on the host.
    'if [ "${E2E_HOLD:-}" = 1 ]; then',
    '  touch "$D/holding"; n=0',
    '  while [ ! -f "$D/release" ] && [ "$n" -lt 1200 ]; do sleep 0.1; n=$((n + 1)); done',
    'fi',
    'proof "$JOIN_TOKEN" > "$D/joined"',
    'echo "joining $CI_HOST with token $JOIN_TOKEN"',
    'echo "token on stderr: $JOIN_TOKEN; deploy password $DEPLOY_PASSWORD" >&2',
  ].join('\n');
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** Every regular file under dir (keys excepted: they are the key material, not the values). */
function filesUnder(dir: string, skip: (p: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (skip(p)) continue;
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p, skip));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

const CMDLINES = `for f in /proc/[0-9]*/cmdline; do tr '\\000' ' ' < "$f" 2>/dev/null; echo; done`;

describe.skipIf(!labsAvailable())('secrets over a cluster lifecycle on BAREMETAL hosts', () => {
  let t: TestLab;
  let home: E2eHome;
  let work: string;
  let cf: string;
  const ips: Record<'m1' | 'm2' | 'n1', string> = { m1: '', m2: '', n1: '' };
  const runs: { args: string[]; r: CliResult }[] = [];
  const stateVersions = new Set<string>();
  const planFiles: string[] = [];
  let keyFile: string;

  const rootExec = async (host: keyof typeof ips, command: string, stdin?: string) => {
    const s = await connectSsh(t.lab.sshTarget(host), { pinnedHostKey: t.lab.host(host)!.hostKey });
    try {
      return (await s.execChecked(command, { stdin })).stdout;
    } finally {
      await s.close();
    }
  };

  const snapshotState = () => {
    for (const p of [home.statePath(CLUSTER), `${home.statePath(CLUSTER)}.backup`]) {
      try {
        stateVersions.add(readFileSync(p, 'utf8'));
      } catch {
        // Not there (yet, or any more).
      }
    }
  };

  const ci = async (args: string[], expectCode = 0) => {
    const r = await home.ci(args, { env: { SSH_PASSWORD: PASSWORD, SSH_PASSPHRASE: PASSPHRASE }, cwd: work });
    runs.push({ args, r });
    snapshotState();
    expect(r.code, `ci ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expectCode);
    return r;
  };

  const clusterfile = (image: string, hosts: (keyof typeof ips)[]) =>
    writeClusterfile(cf, {
      apiVersion: 'cloudimage.io/v1',
      kind: 'Cluster',
      metadata: { name: CLUSTER },
      spec: {
        image,
        provider: 'BAREMETAL',
        ssh: { user: 'root', passwd: '${SSH_PASSWORD}', port: 2222 },
        env: ['DEPLOY_PASSWORD=${SSH_PASSWORD}'],
        hosts: [
          { ips: [ips.m1], roles: ['master'] },
          ...(hosts.includes('m2') ? [{ ips: [ips.m2], roles: ['master'], ssh: { passwd: '', port: 22, pk: keyFile, pkPasswd: '${SSH_PASSPHRASE}' } }] : []),
          ...(hosts.includes('n1') ? [{ ips: [ips.n1], roles: ['node'], ssh: { user: 'ops', passwd: '', port: 22, pk: t.lab.privateKeyPath }, env: ['E2E_HOLD=1'] }] : []),
        ],
      },
    });

  const build = async (release: number) => {
    const ctx = writeTree(join(work, `image-v${release}`), imageTree(release));
    await ci(['build', '-t', `sec-app:v${release}`, ctx]);
  };

  const planOut = async (name: string) => {
    const file = join(work, name);
    await ci(['plan', '-f', cf, '--out', file]);
    planFiles.push(file);
    return file;
  };

  beforeAll(async () => {
    home = makeHome('ci-e2e-sec-');
    work = tempDir('ci-e2e-sec-work-');
    cf = join(work, 'Clusterfile');
    t = await openTestLab('ci-e2e-sec-lab-');
    // n1 is a systemd host (it has sudo) where cloudimage logs in as a user who is not root.
    const hosts = await Promise.all([t.lab.addHost('m1', 'light'), t.lab.addHost('m2', 'light'), t.lab.addHost('n1', 'systemd')]);
    ips.m1 = hosts[0].ip;
    ips.m2 = hosts[1].ip;
    ips.n1 = hosts[2].ip;
    // m1 takes root's password on port 2222; m2 a key with a passphrase; n1 the lab's key.
    await rootExec('m1', 'chpasswd', `root:${PASSWORD}\n`);
    await rootExec(
      'm1',
      `/usr/sbin/sshd -h /etc/ssh/ssh_host_ed25519_key -p 2222 -o ListenAddress=${ips.m1} -o UsePAM=no ` +
        '-o PasswordAuthentication=yes -o PermitRootLogin=yes -o PubkeyAuthentication=no -o PidFile=none',
    );
    keyFile = join(work, 'id_pp');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', PASSPHRASE, '-C', 'e2e-secrets', '-f', keyFile]);
    await rootExec('m2', 'cat >> /root/.ssh/authorized_keys', readFileSync(`${keyFile}.pub`, 'utf8'));
    await rootExec(
      'n1',
      [
        'useradd -m -s /bin/bash ops',
        'install -d -m 700 -o ops -g ops /home/ops/.ssh',
        'install -m 600 -o ops -g ops /root/.ssh/authorized_keys /home/ops/.ssh/authorized_keys',
        "echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops",
        'chmod 440 /etc/sudoers.d/ops',
      ].join(' && '),
    );
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, []);
    await t?.cleanup();
    if (work) removeDir(work);
  }, 300_000);

  it('keeps every secret out of output, logs, state and plans, while the outputs reach the hooks', async () => {
    // 1. Create the first master from a saved plan: its own token, printed by itself and by the CMD.
    await build(1);
    clusterfile('sec-app:v1', []);
    await ci(['plan', '-f', cf, '--json']);
    const first = await ci(['apply', '-f', cf, await planOut('create.plan')]);
    expect(first.stdout).toContain(`[${ips.m1}] join with: --token ******`);
    expect(first.stdout).toContain(`[${ips.m1}] admin key: ******`);
    expect(first.stdout).toContain(`[${ips.m1}] cmd token ******`);
    expect(first.stdout).toContain(`[${ips.m1}] cmd admin ******`);
    const token = (await rootExec('m1', `cat ${D}/token`)).trim();
    const admin = (await rootExec('m1', `cat ${D}/admin`)).trim();
    expect(token).toMatch(/^tok-[A-Za-z0-9]{20,}$/);
    expect((await rootExec('m1', `cat ${D}/cmd-saw`)).trim()).toBe(sha(token));
    const sealed = JSON.parse(readFileSync(home.statePath(CLUSTER), 'utf8'));
    expect(sealed.version).toBe(2);
    expect(sealed.sealedOutputs).toMatchObject({ alg: 'AES-256-GCM', keyId: expect.any(String) });
    expect((await new LocalStateBackend(home.statePath(CLUSTER), { keys: stateKeys(home.dir) }).read())!.outputs).toEqual({ JOIN_TOKEN: token, ADMIN_KEY: admin });

    // 2. A second master, in a new apply: the token now comes from the state.
    clusterfile('sec-app:v1', ['m2']);
    const second = await ci(['apply', '-f', cf, '--auto-approve']);
    expect(second.stdout).toContain(`[${ips.m2}] joining ${ips.m2} with token ******`);
    expect(second.stdout).toContain(`[${ips.m2}] token on stderr: ******; deploy password ******`);
    expect(second.stdout).toContain(`[${ips.m1}] reconfigure on ${ips.m1} sees admin key ******`);
    expect((await rootExec('m2', `cat ${D}/joined`)).trim()).toBe(sha(token));

    // 3. Scale out, to a node reached as a user who is not root: while its join hook runs with the outputs and the
    //    password in its environment, no process here or on any host has one of them in its command line.
    clusterfile('sec-app:v1', ['m2', 'n1']);
    const scaling = ci(['apply', '-f', cf, '--auto-approve']);
    let released = false;
    try {
      await waitFor(async () => (await rootExec('n1', `[ -f ${D}/holding ] && echo yes || true`)).trim() === 'yes', 'the join hook to start on n1', 120_000);
      snapshotState();
      const secrets = [token, admin, PASSWORD, PASSPHRASE];
      const seen: [string, string][] = [];
      for (const h of ['m1', 'm2', 'n1'] as const) seen.push([`host ${h}`, await rootExec(h, CMDLINES)]);
      const local = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'latin1').replace(/\0/g, ' ');
        } catch {
          return '';
        }
      });
      seen.push(['this machine', local.join('\n')]);
      // The listing on n1 was taken while the hook ran, under the sudo that started it (which stays, with its command
      // line, for as long as the hook runs), and the hook holds the values in its environment.
      expect(seen[2][1]).toMatch(/\/bin\/sh \S*hooks\/join-node/);
      expect(seen[2][1]).toMatch(/^sudo -n sh -c /m);
      const environ = await rootExec(
        'n1',
        `for p in /proc/[0-9]*; do if tr '\\000' ' ' < $p/cmdline 2>/dev/null | grep -q 'hooks/join-nod[e]'; then tr '\\000' '\\n' < $p/environ; fi; done`,
      );
      expect(environ.split('\n')).toEqual(expect.arrayContaining([`JOIN_TOKEN=${token}`, `ADMIN_KEY=${admin}`, `DEPLOY_PASSWORD=${PASSWORD}`]));
      const hits = seen.flatMap(([where, text]) => secrets.filter((s) => text.includes(s)).map(() => where));
      expect(hits, 'a secret in a process command line').toEqual([]);
      await rootExec('n1', `touch ${D}/release`);
      released = true;
    } finally {
      if (!released) await rootExec('n1', `touch ${D}/release`).catch(() => undefined);
      await scaling.catch(() => undefined);
    }
    const scaled = await scaling;
    expect(scaled.stdout).toContain(`[${ips.n1}] joining ${ips.n1} with token ******`);
    expect((await rootExec('n1', `cat ${D}/joined`)).trim()).toBe(sha(token));

    // 4. Upgrade: a new output made on master0, the old ones printed on every host.
    await build(2);
    clusterfile('sec-app:v2', ['m2', 'n1']);
    const upgraded = await ci(['apply', '-f', cf, await planOut('upgrade.plan')]);
    expect(upgraded.stdout).toContain(`[${ips.m1}] upgrade note ******`);
    for (const ip of Object.values(ips)) expect(upgraded.stdout).toContain(`[${ip}] upgrading ${ip} with token ******`);
    const note = (await rootExec('m1', `cat ${D}/note`)).trim();

    // 5. A failing hook prints an output from the state, a new output of its own and the password in its error.
    await build(3);
    clusterfile('sec-app:v3', ['m2', 'n1']);
    await ci(['plan', '-f', cf, '--json']);
    const failed = await ci(['apply', '-f', cf, '--auto-approve', '--debug'], 1);
    expect(failed.stdout).toContain(`[${ips.m1}] upgrade failed: token ******, fresh ******, password ******`);
    expect(failed.stdout).toMatch(new RegExp(`failed: ${ips.m1.replace(/\./g, '\\.')}: hook upgrade: .*hook upgrade exited with 3\\n.*upgrade failed: token \\*{6}, fresh \\*{6}, password \\*{6}`));
    const fresh = (await rootExec('m1', `cat ${D}/fresh`)).trim();
    expect(fresh).toMatch(/^fresh-/);
    const afterFailure = (await new LocalStateBackend(home.statePath(CLUSTER), { keys: stateKeys(home.dir) }).read())!;
    expect(afterFailure.outputs).toEqual({ JOIN_TOKEN: token, ADMIN_KEY: admin, UPGRADE_NOTE: note });
    // Nothing of a hook's outputs is left in clear on a host once they are read.
    expect(await rootExec('m1', 'cat /var/lib/cloudimage/clusters/sec/outputs/* 2>/dev/null; true')).toBe('');

    // 6. Without the key the state's hosts can be listed, but nothing that needs the outputs runs.
    await ci(['state', 'list', '-f', cf]);
    await ci(['state', 'show', ips.m1, '-f', cf]);
    const keys = join(home.dir, 'keys');
    renameSync(keys, `${keys}.away`);
    try {
      await ci(['state', 'list', '-f', cf]);
      const refused = await ci(['plan', '-f', cf, '--debug'], 1);
      expect(refused.stderr).toContain(`error: state ${home.statePath(CLUSTER)} has hook outputs sealed with key ${sealed.sealedOutputs.keyId}, which is not in ${keys}`);
      expect(refused.stderr).toContain(`hint: copy the key file from the machine that wrote the state ($CI_HOME/keys/state.key there) to ${join(keys, 'state.key')}`);
    } finally {
      renameSync(`${keys}.away`, keys);
    }
    const keyText = readFileSync(join(keys, 'state.key'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).join('');

    // 7. Destroy: clean runs everywhere with the outputs; nothing of the cluster is left on the hosts.
    const destroyed = await ci(['destroy', '-f', cf, '--auto-approve']);
    expect(destroyed.stdout).toContain(`[${ips.m2}] clean on ${ips.m2} with token ****** and note ******`);
    expect(destroyed.stdout).toContain('Destroy complete!');
    for (const h of ['m1', 'm2', 'n1'] as const) {
      expect(await rootExec(h, `ls /var/lib/cloudimage/clusters 2>/dev/null; ls ${D} 2>/dev/null; true`)).toBe('');
    }

    // Every byte the CLI printed or kept: none of the secrets in clear.
    const secrets: [string, string][] = [
      ['ssh password', PASSWORD],
      ['key passphrase', PASSPHRASE],
      ['JOIN_TOKEN', token],
      ['ADMIN_KEY', admin],
      ['UPGRADE_NOTE', note],
      ['FRESH_SECRET (output of the failed hook)', fresh],
      ['state key', keyText],
    ];
    const logs = join(home.dir, 'clusters', CLUSTER, 'logs');
    expect(readdirSync(logs).filter((f) => f.startsWith('apply-')).length).toBe(5);
    expect(readdirSync(logs).filter((f) => f.startsWith('destroy-')).length).toBe(1);
    const places: [string, Buffer][] = [
      ...runs.flatMap(({ args, r }): [string, Buffer][] => [
        [`stdout of ci ${args.join(' ')}`, Buffer.from(r.stdout)],
        [`stderr of ci ${args.join(' ')}`, Buffer.from(r.stderr)],
      ]),
      ...[...stateVersions].map((text, i): [string, Buffer] => [`state version ${i}`, Buffer.from(text)]),
      ...planFiles.map((f): [string, Buffer] => [`plan file ${f}`, readFileSync(f)]),
      // Everything else kept in CI_HOME: logs, the state's last backup, the image store.
      ...filesUnder(home.dir, (p) => p === keys).map((f): [string, Buffer] => [f, readFileSync(f)]),
    ];
    expect(stateVersions.size).toBeGreaterThan(5);
    expect(places.some(([where]) => where.endsWith('state.json.backup'))).toBe(true);
    // Destroy leaves an empty state of the same lineage: no hosts, and no outputs left to seal.
    const last = JSON.parse(readFileSync(home.statePath(CLUSTER), 'utf8'));
    expect(last.hosts).toEqual({});
    expect(last.sealedOutputs).toBeUndefined();
    const hits = places.flatMap(([where, bytes]) => secrets.filter(([, s]) => bytes.includes(s)).map(([name]) => `${name} in ${where}`));
    expect(hits).toEqual([]);
  }, 900_000);
});
