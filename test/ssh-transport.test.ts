import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { connectSsh, type SshSession } from '../providers/ssh/session.js';
import type { SshTarget } from '../providers/ssh/target.js';
import { SshAuthError, SshKeyError, RemoteTimeoutError } from '../providers/ssh/errors.js';
import { DigestMismatchError, HostKeyMismatchError, HostUnreachableError, RemoteCommandError, CiError } from '../engine/kernel/errors.js';
import { sha256 } from '../engine/kernel/digest.js';
import { redact } from '../engine/kernel/redact.js';

const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;
const PASSPHRASE = `pp-${randomBytes(6).toString('hex')}`;

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe.skipIf(!labsAvailable())('ssh transport against real sshd', () => {
  let t: TestLab;
  let keyDir: string;
  let root: SshSession;
  let encryptedKey: string;
  let alice: (over?: Partial<SshTarget>) => SshTarget;

  beforeAll(async () => {
    t = await openTestLab();
    // Light host for root work; systemd host for a non-root user (it has sudo).
    await Promise.all([t.lab.addHost('light1', 'light'), t.lab.addHost('sys1', 'systemd')]);
    root = await connectSsh(t.lab.sshTarget('light1'), { pinnedHostKey: t.lab.host('light1')!.hostKey });

    keyDir = mkdtempSync(join(tmpdir(), 'ci-ssh-key-'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', PASSPHRASE, '-f', join(keyDir, 'id'), '-C', 'alice']);
    encryptedKey = readFileSync(join(keyDir, 'id'), 'utf8');
    const pub = readFileSync(join(keyDir, 'id.pub'), 'utf8').trim();
    const sys = await connectSsh(t.lab.sshTarget('sys1'));
    await sys.execChecked(
      [
        'useradd -m -s /bin/bash alice',
        'chpasswd',
        'install -d -m 700 -o alice -g alice /home/alice/.ssh',
        `printf '%s\\n' "$PUB" > /home/alice/.ssh/authorized_keys`,
        'chown alice:alice /home/alice/.ssh/authorized_keys',
        `echo 'alice ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/alice`,
        'chmod 440 /etc/sudoers.d/alice',
      ].join(' && '),
      { stdin: `alice:${PASSWORD}\n`, env: { PUB: pub } },
    );
    await sys.close();
    const ip = t.lab.host('sys1')!.ip;
    alice = (over = {}) => ({ host: ip, port: 22, user: 'alice', ...over });
  });

  afterAll(async () => {
    await root?.close().catch(() => undefined);
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
    await t?.cleanup();
  });

  it('logs in with a key and reports the host key fingerprint', async () => {
    expect(root.hostKey).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(root.hostKey).toBe(t.lab.host('light1')!.hostKey);
    expect((await root.execChecked('id -u')).stdout).toBe('0\n');
  });

  it('logs in with a password; a non-root user runs commands through sudo', async () => {
    const s = await connectSsh(alice({ password: PASSWORD }));
    try {
      const r = await s.execChecked('id -un; echo "$SUDO_USER"');
      expect(r.stdout).toBe('root\nalice\n');
      const env = await s.execChecked('printf %s "$X"', { env: { X: "it's $ok" } });
      expect(env.stdout).toBe("it's $ok");
    } finally {
      await s.close();
    }
  });

  it('logs in with a passphrase-protected key, and names a wrong passphrase without showing it', async () => {
    const s = await connectSsh(alice({ privateKey: encryptedKey, passphrase: PASSPHRASE }));
    expect((await s.execChecked('echo "$SUDO_USER"')).stdout).toBe('alice\n');
    await s.close();
    const err = await connectSsh(alice({ privateKey: encryptedKey, passphrase: 'not-it' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SshKeyError);
    expect((err as Error).message).toContain('alice@');
    expect((err as Error).message).not.toContain(PASSPHRASE);
  });

  it('refuses a wrong password with a typed error, without retrying and without the password', async () => {
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    let retries = 0;
    const err = await connectSsh(alice({ password: wrong }), { onRetry: () => retries++ }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SshAuthError);
    const msg = (err as CiError).message;
    expect(msg).toContain(`alice@${t.lab.host('sys1')!.ip}:22`);
    expect(msg).toContain('password');
    expect(msg).not.toContain(wrong);
    expect(redact(`x ${wrong} y`)).toBe('x ****** y');
    expect(retries).toBe(0);
  });

  it('refuses a host whose key differs from the pinned one', async () => {
    const otherKey = t.lab.host('sys1')!.hostKey;
    const err = await connectSsh(t.lab.sshTarget('light1'), { pinnedHostKey: otherKey }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostKeyMismatchError);
    expect((err as Error).message).toContain(otherKey);
    expect((err as Error).message).toContain(root.hostKey);
    expect((err as HostKeyMismatchError).hint).toContain(`\`ci state rm-host-key ${t.lab.host('light1')!.ip} -f Clusterfile\``);
  });

  it('reports exit codes, signals, stderr and exported env', async () => {
    expect((await root.exec('exit 3')).code).toBe(3);
    const sig = await root.exec('kill -TERM $$');
    expect(sig.code).toBeNull();
    expect(sig.signal).toBe('SIGTERM');
    const err = await root.execChecked('echo oops >&2; exit 4').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteCommandError);
    expect((err as RemoteCommandError).exitStatus).toBe(4);
    expect((err as RemoteCommandError).stderrTail).toBe('oops');
    const tricky = `a 'quoted' "value" $HOME \`x\`\nsecond line`;
    expect((await root.execChecked('printf %s "$V"', { env: { V: tricky } })).stdout).toBe(tricky);
    await expect(root.exec('true', { env: { 'BAD-NAME': '1' } })).rejects.toThrow(/invalid environment variable name "BAD-NAME"/);
  });

  it('passes env on stdin, never in a command line, as root and through sudo, and leaves the rest of stdin to the command', async () => {
    const secret = `env-${randomBytes(8).toString('hex')}`;
    const cmdlines = 'for f in /proc/[0-9]*/cmdline; do tr "\\000" " " < "$f"; echo; done';
    const asAlice = await connectSsh(alice({ password: PASSWORD }));
    try {
      for (const s of [root, asAlice]) {
        // The listing runs while its own shell (and sudo) are alive, so their command lines are in it.
        const r = await s.execChecked(`printf '%s\\n' "$V"; ${cmdlines}`, { env: { V: secret, W: 'x\ny' } });
        const [first, ...rest] = r.stdout.split('\n');
        expect(first).toBe(secret);
        expect(rest.join('\n')).toContain('__ci_env');
        expect(rest.join('\n')).not.toContain(secret);
        const piped = await s.execChecked('printf "%s|%s|" "$V" "$W"; cat', { env: { V: secret, W: 'x\ny' }, stdin: 'after the env\n' });
        expect(piped.stdout).toBe(`${secret}|x\ny|after the env\n`);
        const streamed = await s.execChecked('printf "%s|" "$V"; wc -c', { env: { V: secret }, stdin: Readable.from([Buffer.alloc(50_000, 1)]) });
        expect(streamed.stdout.replace(/\s+/g, '')).toBe(`${secret}|50000`);
      }
      expect((await asAlice.execChecked(`${cmdlines}`, { env: { V: secret } })).stdout).toMatch(/sudo -n sh -c/);
    } finally {
      await asAlice.close();
    }
  });

  it('feeds stdin from strings and streams, and streams output as it comes', async () => {
    expect((await root.execChecked('cat', { stdin: 'abc' })).stdout).toBe('abc');
    const r = await root.execChecked('wc -c', { stdin: Readable.from([Buffer.alloc(70_000, 1), Buffer.alloc(30_000, 2)]) });
    expect(r.stdout.trim()).toBe('100000');
    const seen: string[] = [];
    await root.execChecked('echo one; echo two >&2', { onStdout: (c) => seen.push(`out:${c}`), onStderr: (c) => seen.push(`err:${c}`) });
    expect(seen.sort()).toEqual(['err:two\n', 'out:one\n']);
  });

  it('queues more commands than the channel limit on one connection', async () => {
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => root.execChecked(`sleep 0.1; echo ${i}`)));
    expect(results.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 24 }, (_, i) => String(i)));
  });

  it('stops a command at its time limit and stays usable', async () => {
    const err = await root.exec('sleep 30', { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteTimeoutError);
    expect((await root.execChecked('echo still')).stdout).toBe('still\n');
  });

  it('uploads a file, verifies its digest on the host and renames it into place', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const before = root.bytesUploaded;
    const res = await root.upload(data, '/opt/ci-test/deep/blob.bin', { expectedDigest: sha256(data), mode: 0o640 });
    expect(res.bytes).toBe(data.length);
    expect(root.bytesUploaded - before).toBe(data.length);
    const r = await root.execChecked('sha256sum /opt/ci-test/deep/blob.bin; stat -c %a /opt/ci-test/deep/blob.bin; ls -a /opt/ci-test/deep');
    const [sum, mode, listing] = [r.stdout.split(' ')[0], r.stdout.split('\n')[1], r.stdout.split('\n').slice(2).join(' ')];
    expect(`sha256:${sum}`).toBe(sha256(data));
    expect(mode).toBe('640');
    expect(listing.trim().split(/\s+/)).toEqual(['.', '..', 'blob.bin']);
    // From a stream, without a known digest: checked against what was sent.
    const streamed = await root.upload(Readable.from([Buffer.from('hello '), Buffer.from('world')]), '/opt/ci-test/hello.txt');
    expect(streamed.bytes).toBe(11);
    expect((await root.execChecked('cat /opt/ci-test/hello.txt')).stdout).toBe('hello world');
  });

  it('refuses an upload whose content does not match the expected digest and leaves nothing behind', async () => {
    const data = Buffer.from('the real content');
    const claimed = sha256('something else');
    const err = await root.upload(data, '/opt/ci-test/bad/file.txt', { expectedDigest: claimed }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as Error).message).toContain(claimed);
    expect((err as Error).message).toContain(sha256(data));
    expect((await root.execChecked('ls -A /opt/ci-test/bad')).stdout).toBe('');
  });

  it('gives up on an unreachable host after retries with HostUnreachableError', async () => {
    const port = await closedPort();
    const delays: number[] = [];
    const err = await connectSsh(
      { host: '127.0.0.1', port, user: 'root', password: 'x-unused' },
      { attempts: 3, retryBaseMs: 20, onRetry: (_e, _n, d) => delays.push(d) },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostUnreachableError);
    expect((err as Error).message).toMatch(/after 3 attempt\(s\).*ECONNREFUSED/);
    expect(delays).toHaveLength(2);
  });

  it('says which login methods are missing when none is given', async () => {
    const err = await connectSsh({ host: '127.0.0.1', port: 22, user: 'bob' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SshAuthError);
    expect((err as Error).message).toContain('bob@127.0.0.1:22');
  });
});
