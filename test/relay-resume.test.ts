/**
 * The relay's host-side scripts and the executor's sendLayer, run for real on this machine: every "host" is a
 * directory standing for its root (the scripts' paths are rewritten into it) and its session runs each command with
 * `sh`. Only the SSH hop between hosts is replaced, by a wrapper that runs the serving host's forced command (the
 * serve script the grant installed) with the words the receiver asked for, counts the bytes it served, and can be
 * told to cut the stream after N bytes (a source dying mid-stream). So what is checked is the scripts' own
 * behaviour: where partial files go and what a revoke removes, how a receiver resumes and what it verifies, and how
 * the executor re-sources a receiver whose source's own transfer failed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { Relay, grantScript, partialPath, receiveScript, relayDir, relayOwner, relaySshCommand, resumeScript, revokeScript, serveScript } from '../engine/executor/relay.js';
import { REMOTE_BASE, remoteLayerPath } from '../engine/executor/remote-layout.js';
import { runAction, type RunContext } from '../engine/executor/run-action.js';
import type { ExecEvent } from '../engine/executor/events.js';
import { ImageStore } from '../engine/image/store.js';
import { digestHex, type Digest } from '../engine/kernel/digest.js';
import { fingerprintOfPublicKeyLine } from '../providers/ssh/fingerprint.js';
import { SshConnectionLostError } from '../providers/ssh/errors.js';
import type { ExecOptions, ExecResult, SshSession } from '../providers/ssh/session.js';
import { shellQuote } from '../providers/ssh/shell.js';
import type { SendLayersAction } from '../plans/actions.js';
import type { ClusterState, HostState } from '../state/model.js';
import { removeDir, tempDir } from './helpers/tmp.js';

const HOST_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBD9pIjL8tDkrMhAYijCN3PGSPlsIHgL7uRNuKcS/yV8 root@h';
const OWNER = relayOwner('resume', 'lineage-1');
const SIZE = 3 * 1024 * 1024 + 17;

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) removeDir(dirs.pop()!);
});

/** Where a host's root is, and the wrapper standing for `ssh` between hosts. */
class Machine {
  readonly root = tempDir('ci-relay-resume-');
  readonly ips = new Map<string, string>();

  constructor() {
    dirs.push(this.root);
    // Run under setsid so that ending it (as cancelScript does with an ssh client) ends what it started too.
    writeFileSync(
      join(this.root, 'fake-ssh'),
      [
        '#!/bin/sh',
        'key=$1 ip=$2 n=$3 o=$4',
        `r=${shellQuote(this.root)}`,
        "trap 'trap - TERM; kill -TERM 0; exit 143' TERM",
        '[ -f "$key" ] || { echo "no relay key" >&2; exit 255; }',
        'h=$(cat "$r/ip-$ip")',
        'serve=$(ls "$r/$h/base/relay/"*/serve-layer)',
        `grep -qF "command=\\"$r/$h/base/relay/" "$r/$h/home/.ssh/authorized_keys" || { echo "not granted" >&2; exit 255; }`,
        'if [ -f "$r/cut-$ip" ]; then lim=$(cat "$r/cut-$ip"); rm -f "$r/cut-$ip"',
        '  { SSH_ORIGINAL_COMMAND="$n $o" sh "$serve"; } | head -c "$lim" | tee -a "$r/served-$ip" &',
        '  wait $!; exit 255',
        'fi',
        '{ SSH_ORIGINAL_COMMAND="$n $o" sh "$serve"; echo $? > "$r/st-$$"; } | tee -a "$r/served-$ip" &',
        'wait $!; st=$(cat "$r/st-$$"); rm -f "$r/st-$$"; exit "$st"',
      ].join('\n'),
    );
  }

  base(host: string): string {
    return join(this.root, host, 'base');
  }

  /** A command as it runs on `host`: its paths inside the host's directory, `ssh` to another host the wrapper. */
  rewrite(host: string, cmd: string): string {
    return cmd
      .replace(/exec ssh -i (\S+) .*? -p \d+ root@(\S+) ([0-9a-f]{64}) (\d+) <\/dev\/null/g, `exec setsid sh ${this.root}/fake-ssh $1 $2 $3 $4`)
      .replaceAll(REMOTE_BASE, this.base(host))
      .replaceAll('/etc/ssh/ssh_host_*_key.pub', join(this.root, host, 'hostkey.pub'));
  }

  host(key: string, ip: string): FakeSession {
    this.ips.set(key, ip);
    writeFileSync(join(this.root, `ip-${ip}`), key);
    mkdirSync(join(this.root, key, 'home'), { recursive: true });
    mkdirSync(join(this.base(key), 'layers'), { recursive: true });
    writeFileSync(join(this.root, key, 'hostkey.pub'), HOST_KEY + '\n');
    return new FakeSession(this, key);
  }

  file(host: string, remotePath: string): string {
    return remotePath.replace(REMOTE_BASE, this.base(host));
  }

  served(ip: string): number {
    const f = join(this.root, `served-${ip}`);
    return existsSync(f) ? readFileSync(f).length : 0;
  }
}

/** A session whose commands run here in `sh`, inside its host's directory. */
class FakeSession {
  readonly name: string;
  readonly hostKey = fingerprintOfPublicKeyLine(HOST_KEY);
  readonly commands: string[] = [];
  /** Lets a test make one command fail as if the connection died, or hold it until something happened. */
  intercept?: (cmd: string) => Promise<void> | void;

  constructor(
    private readonly m: Machine,
    readonly key: string,
  ) {
    this.name = `root@${key}:22`;
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    this.commands.push(command);
    await this.intercept?.(command);
    return new Promise((resolve, reject) => {
      const child = spawn('sh', ['-c', this.m.rewrite(this.key, command)], { env: { ...process.env, HOME: join(this.m.root, this.key, 'home') } });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
      child.stdin.on('error', () => undefined);
      const input = opts.stdin;
      if (input === undefined) child.stdin.end();
      else if (input instanceof Readable) input.pipe(child.stdin);
      else child.stdin.end(input);
    });
  }

  async execChecked(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) throw new Error(`${this.key}: ${command.slice(0, 60)}: exit ${r.code}: ${r.stderr}`);
    return r;
  }

  async upload(source: Readable | Buffer, remotePath: string, opts: { mode?: number } = {}): Promise<{ bytes: number }> {
    const buf = Buffer.isBuffer(source) ? source : Buffer.concat(await source.toArray());
    const p = this.m.file(this.key, remotePath);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, buf, { mode: opts.mode ?? 0o644 });
    return { bytes: buf.length };
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function cluster(names: string[]) {
  const m = new Machine();
  const store = new ImageStore(join(m.root, 'store'));
  const blob = randomBytes(SIZE);
  const { digest } = await store.putBlob(blob);
  const sessions = new Map<string, FakeSession>();
  const hosts: Record<string, HostState> = {};
  names.forEach((n, i) => {
    const ip = `10.9.0.${i + 2}`;
    sessions.set(n, m.host(n, ip));
    hosts[n] = { key: n, ip, roles: ['node'], ssh: { user: 'root', port: 22 }, hostKey: fingerprintOfPublicKeyLine(HOST_KEY), layers: [], hooks: {}, status: 'active' } as HostState;
  });
  const state = { cluster: 'resume', lineage: 'lineage-1', hosts } as unknown as ClusterState;
  const relay = new Relay(() => Object.values(hosts).map((h) => h.ip), { owner: OWNER, canServe: () => true });
  const events: ExecEvent[] = [];
  const ctx = {
    plan: { cluster: 'resume' },
    state,
    store,
    connections: { get: async (h: HostState) => sessions.get(h.key)! as unknown as SshSession },
    reporter: { event: (e: ExecEvent) => events.push(e) },
    bytesSent: new Map(),
    uplink: { bytes: 0 },
    relay,
  } as unknown as RunContext;
  /** The host holds the layer already (an earlier apply's), maybe damaged. */
  const hold = (host: string, content = blob) => {
    const f = m.file(host, remoteLayerPath(digest));
    writeFileSync(f, content);
    relay.distributor.markHeld(digest, host);
  };
  const send = (host: string) => runAction(ctx, { kind: 'send-layers', id: `send-layers:${host}`, host, layers: [digest], bytes: SIZE, deps: [] } as unknown as SendLayersAction);
  const stored = (host: string) => {
    const f = m.file(host, remoteLayerPath(digest));
    return existsSync(f) ? sha(readFileSync(f)) : undefined;
  };
  const partials = (host: string) => readdirSync(join(m.base(host), 'layers')).filter((f) => f.includes('partial'));
  const notes = () => events.map((e) => (e.type === 'note' ? e.message : e.type === 'output' ? e.line : '')).filter(Boolean);
  return { m, blob, digest, sessions, relay, ctx, hold, send, stored, partials, notes, events };
}

describe('relay partial files belong to the cluster that made them', () => {
  it('a revoke removes only its own partial files, grant and relay directory, never another cluster\'s in flight', async () => {
    const c = await cluster(['a']);
    const other = relayOwner('other', 'lineage-2');
    const s = c.sessions.get('a')!;
    // This cluster's apply granted, received part of a layer; another cluster's apply is doing the same right now.
    await s.execChecked(`mkdir -p ${relayDir(OWNER)} ${relayDir(other)} && printf x > ${relayDir(other)}/key`);
    const line = (o: string) => `restrict,command="${relayDir(o)}/serve-layer" ssh-ed25519 AAAA cloudimage-relay-${o}`;
    await s.execChecked(`mkdir -p $HOME/.ssh && printf '%s\\n' ${shellQuote(line(OWNER))} ${shellQuote(line(other))} 'ssh-ed25519 BBBB admin' > $HOME/.ssh/authorized_keys`);
    const mine = partialPath(c.digest, OWNER);
    const theirs = partialPath(c.digest, other);
    await s.execChecked(`printf abc > ${mine} && echo 1 > ${mine}.pid && printf abc > ${theirs} && echo 2 > ${theirs}.pid`);
    expect((await s.exec(revokeScript(OWNER))).code).toBe(0);
    expect(c.partials('a').sort()).toEqual([`${digestHex(c.digest)}.tar.gz.${other}.partial`, `${digestHex(c.digest)}.tar.gz.${other}.partial.pid`]);
    expect(existsSync(c.m.file('a', relayDir(OWNER)))).toBe(false);
    expect(readFileSync(c.m.file('a', `${relayDir(other)}/key`), 'utf8')).toBe('x');
    const keys = readFileSync(join(c.m.root, 'a', 'home', '.ssh', 'authorized_keys'), 'utf8');
    expect(keys).not.toContain(`cloudimage-relay-${OWNER}`);
    expect(keys).toContain(`cloudimage-relay-${other}`);
    expect(keys).toContain('admin');
  });

  it('an apply that did not finish keeps its partial files, and the next resumes from them; the host\'s removal deletes them', async () => {
    const c = await cluster(['a']);
    const s = c.sessions.get('a')!;
    const other = relayOwner('other', 'lineage-2');
    const mine = partialPath(c.digest, OWNER);
    const theirs = partialPath(c.digest, other);
    const name = (o: string) => `${digestHex(c.digest)}.tar.gz.${o}.partial`;
    // Another cluster uses the host too, so removing this cluster's files leaves the shared store.
    await s.execChecked(`mkdir -p ${REMOTE_BASE}/clusters/other && printf abc > ${theirs} && echo 1 > ${mine}.pid`);
    writeFileSync(c.m.file('a', mine), c.blob.subarray(0, 1 << 20));
    expect((await s.exec(revokeScript(OWNER, { keepPartials: true }))).code).toBe(0);
    expect(c.partials('a').sort()).toEqual([name(other), name(OWNER)].sort());
    // The next apply's send resumes at the kept byte and verifies the whole.
    await c.send('a');
    expect(c.notes().some((n) => n.includes(`resuming at byte ${1 << 20} of ${SIZE}`))).toBe(true);
    expect(c.stored('a')).toBe(sha(c.blob));
    // Kept again by an unfinished apply, then the host leaves the cluster: remove-files deletes this cluster's only.
    writeFileSync(c.m.file('a', mine), c.blob.subarray(0, 100));
    await runAction(c.ctx, { kind: 'remove-files', id: 'remove-files:a', host: 'a', reason: 'not in the Clusterfile', deps: [] });
    expect(c.partials('a')).toEqual([name(other)]);
  });

  it('a send first deletes what earlier applies left that it will not resume from: partials of layers it does not send, upload temps', async () => {
    const c = await cluster(['a']);
    const s = c.sessions.get('a')!;
    const other = relayOwner('other', 'lineage-2');
    // A layer the cluster needed once (an earlier image's), partly received by an apply that was killed.
    const gone = `sha256:${'cd'.repeat(32)}` as Digest;
    const goneHex = digestHex(gone);
    const temp = (owner: string) => `${REMOTE_BASE}/layers/${goneHex}.tar.gz.ci-${owner}-0123456789ab.tmp`;
    await s.execChecked(
      [
        `mkdir -p ${REMOTE_BASE}/layers`,
        `printf abc > ${partialPath(gone, OWNER)} && echo 1 > ${partialPath(gone, OWNER)}.pid`,
        `printf abc > ${temp(OWNER)}`,
        // Another cluster's, in flight on the same host: never touched.
        `printf abc > ${partialPath(gone, other)} && echo 2 > ${partialPath(gone, other)}.pid && printf abc > ${temp(other)}`,
      ].join(' && '),
    );
    // The layer this send wants, kept from the same killed apply: resumed, not deleted.
    writeFileSync(c.m.file('a', partialPath(c.digest, OWNER)), c.blob.subarray(0, 1 << 20));
    await c.send('a');
    expect(c.notes().some((n) => n.includes(`resuming at byte ${1 << 20} of ${SIZE}`))).toBe(true);
    expect(c.stored('a')).toBe(sha(c.blob));
    const left = readdirSync(join(c.m.base('a'), 'layers')).filter((f) => f !== `${digestHex(c.digest)}.tar.gz`).sort();
    expect(left).toEqual([`${goneHex}.tar.gz.${other}.partial`, `${goneHex}.tar.gz.${other}.partial.pid`, `${goneHex}.tar.gz.ci-${other}-0123456789ab.tmp`].sort());
    // A finished apply's revoke takes this owner's upload temps too.
    await s.execChecked(`printf abc > ${temp(OWNER)}`);
    expect((await s.exec(revokeScript(OWNER))).code).toBe(0);
    expect(existsSync(c.m.file('a', temp(OWNER)))).toBe(false);
    expect(existsSync(c.m.file('a', temp(other)))).toBe(true);
  });

  it('without a relay, a send resumes nothing: every partial this cluster left goes, the layer is sent whole', async () => {
    const c = await cluster(['a']);
    writeFileSync(c.m.file('a', partialPath(c.digest, OWNER)), c.blob.subarray(0, 1 << 20));
    const ctx = { ...c.ctx, relay: undefined } as RunContext;
    await runAction(ctx, { kind: 'send-layers', id: 'send-layers:a', host: 'a', layers: [c.digest], bytes: SIZE, deps: [] } as unknown as SendLayersAction);
    expect(c.stored('a')).toBe(sha(c.blob));
    expect(c.partials('a')).toEqual([]);
  });

  it('grants and revokes overlapping on one host (two clusters, or a grant still under way) never lose the host\'s own keys', async () => {
    const c = await cluster(['a']);
    const s = c.sessions.get('a')!;
    const other = relayOwner('other', 'lineage-2');
    const admin = 'ssh-ed25519 BBBB admin';
    await s.execChecked(`mkdir -p $HOME/.ssh && printf '%s\\n' ${shellQuote(admin)} > $HOME/.ssh/authorized_keys`);
    const runs: Promise<unknown>[] = [];
    // This cluster grants (twice at once, as two transfers from one source may), while another cluster's applies
    // grant and revoke on the same host.
    for (let i = 0; i < 12; i++) {
      runs.push(s.execChecked(grantScript('ssh-ed25519 AAAA relay', ['10.9.0.2'], OWNER)));
      runs.push(s.execChecked(grantScript('ssh-ed25519 AAAA relay', ['10.9.0.2'], OWNER)));
    }
    runs.push(
      (async () => {
        for (let i = 0; i < 12; i++) {
          await s.execChecked(grantScript('ssh-ed25519 AAAA relay', ['10.9.0.2'], other));
          await s.execChecked(revokeScript(other));
        }
      })(),
    );
    await Promise.all(runs);
    const keys = readFileSync(join(c.m.root, 'a', 'home', '.ssh', 'authorized_keys'), 'utf8').split('\n').filter(Boolean);
    expect(keys).toContain(admin);
    // Whole lines only, each owner's once at most (this cluster's, granted last, once); no temp file left.
    expect(keys.filter((k) => k.endsWith(`cloudimage-relay-${OWNER}`))).toHaveLength(1);
    expect(keys.filter((k) => k.endsWith(`cloudimage-relay-${other}`)).length).toBeLessThanOrEqual(1);
    expect(keys.every((k) => k === admin || /^restrict,from="10\.9\.0\.2",command=".*" ssh-ed25519 AAAA cloudimage-relay-[0-9a-f]{12}$/.test(k))).toBe(true);
    expect(readdirSync(join(c.m.root, 'a', 'home', '.ssh'))).toEqual(['authorized_keys']);
  });

  it('a receiver writes its partial under its own cluster\'s name, so two clusters never share one', () => {
    const d = 'sha256:' + 'ab'.repeat(32) as Digest;
    const r = receiveScript(d, 10, 'exec cat', OWNER, { offset: 0, token: 'aaaaaaaaaaaa' });
    expect(r).toContain(`${'ab'.repeat(32)}.tar.gz.${OWNER}.partial`);
    expect(partialPath(d, OWNER)).not.toBe(partialPath(d, relayOwner('other', 'x')));
  });
});

describe('serving from an offset', () => {
  it('the forced command accepts only a layer name and a non-negative decimal offset', async () => {
    const c = await cluster(['a']);
    const s = c.sessions.get('a')!;
    c.hold('a');
    await s.execChecked(`mkdir -p ${relayDir(OWNER)} && printf '%s\\n' ${shellQuote(serveScript(OWNER))} > ${relayDir(OWNER)}/serve-layer`);
    const hex = digestHex(c.digest);
    const serve = async (words: string) => s.exec(`SSH_ORIGINAL_COMMAND=${shellQuote(words)} sh ${relayDir(OWNER)}/serve-layer | wc -c`);
    expect((await serve(`${hex} 1000`)).stdout.trim()).toBe(String(SIZE - 1000));
    expect((await serve(hex)).stdout.trim()).toBe(String(SIZE));
    for (const bad of [`${hex} -1`, `${hex} 01`, `${hex} 1e3`, `${hex} 1 2`, `${hex} 1234567890123456`, `${hex} *`, `${hex} $(id)`, '../../etc/passwd 0']) {
      const r = await s.exec(`SSH_ORIGINAL_COMMAND=${shellQuote(bad)} sh ${relayDir(OWNER)}/serve-layer`);
      expect({ bad, code: r.code, out: r.stdout }).toEqual({ bad, code: 2, out: '' });
    }
  });
});

describe('resuming interrupted layer transfers', () => {
  it('a source cut off mid-stream: the receiver resumes from the bytes it has, from another source, and verifies the whole', async () => {
    const c = await cluster(['a', 'c', 'b']);
    c.hold('a');
    c.hold('c');
    const cut = 700_000;
    writeFileSync(join(c.m.root, 'cut-10.9.0.2'), String(cut));
    await c.send('b');
    expect(c.stored('b')).toBe(digestHex(c.digest));
    expect(c.partials('b')).toEqual([]);
    expect(c.notes().some((n) => /layer relay from a failed/.test(n))).toBe(true);
    expect(c.notes()).toContain(`layer ${digestHex(c.digest).slice(0, 12)}: resuming at byte ${cut} of ${SIZE}, from c`);
    // The first source served `cut` bytes; the second only the rest, not the layer again.
    expect(c.m.served('10.9.0.2')).toBe(cut);
    expect(c.m.served('10.9.0.3')).toBe(SIZE - cut);
    expect(c.ctx.bytesSent.get('b')).toBe(SIZE - cut);
    expect(c.ctx.uplink.bytes).toBe(0);
  });

  it('a damaged prefix kept from before is caught by the digest check, dropped, and the layer fetched whole from another source', async () => {
    const c = await cluster(['a', 'b']);
    c.hold('a');
    // What an interrupted apply left on b: 500 000 bytes, one of them wrong.
    const prefix = Buffer.from(c.blob.subarray(0, 500_000));
    prefix[1234] ^= 0xff;
    writeFileSync(c.m.file('b', partialPath(c.digest, OWNER)), prefix);
    const renamed: string[] = [];
    c.sessions.get('b')!.intercept = () => {
      const got = c.stored('b');
      if (got) renamed.push(got);
    };
    await c.send('b');
    expect(c.notes()).toContain(`layer ${digestHex(c.digest).slice(0, 12)}: resuming at byte 500000 of ${SIZE}, from a`);
    expect(c.notes().some((n) => /do not match the layer digest/.test(n))).toBe(true);
    expect(c.m.served('10.9.0.2')).toBe(SIZE - 500_000);
    // Fetched again whole, from the other source left (this machine), and only the right bytes were ever in the store.
    expect(c.ctx.uplink.bytes).toBe(SIZE);
    expect(c.stored('b')).toBe(digestHex(c.digest));
    expect(renamed.every((s) => s === digestHex(c.digest))).toBe(true);
    expect(c.partials('b')).toEqual([]);
  });

  it('a corrupted chunk is never renamed into the store; the partial is dropped (exit 4)', async () => {
    const c = await cluster(['a', 'b']);
    const bad = Buffer.from(c.blob);
    bad[SIZE - 10] ^= 0x01;
    c.hold('a', bad);
    const s = c.sessions.get('b')!;
    // Straight from the script: a source holding damaged bytes of the right size.
    const r = await s.exec(receiveScript(c.digest, SIZE, `exec cat ${c.m.file('a', remoteLayerPath(c.digest))}`, OWNER, { offset: 0, token: 'bbbbbbbbbbbb' }));
    expect(r.code).toBe(4);
    expect(c.stored('b')).toBeUndefined();
    expect(c.partials('b')).toEqual([]);
  });

  it('an earlier transfer still writing the partial (an apply killed and rerun) is stopped before the resume reads its length', async () => {
    const c = await cluster(['a', 'b']);
    const a = c.sessions.get('a')!;
    const b = c.sessions.get('b')!;
    await c.relay.grant({ key: 'a', ip: '10.9.0.2', port: 22 }, a as unknown as SshSession, '10.9.0.3');
    await c.relay.prepare('b', b as unknown as SshSession);
    // a is receiving the layer forever (a writer that never ends), 100 000 bytes so far; b follows it.
    const ap = partialPath(c.digest, OWNER);
    writeFileSync(c.m.file('a', ap), c.blob.subarray(0, 100_000));
    const writer = spawn('sleep', ['60']);
    writeFileSync(c.m.file('a', `${ap}.pid`), `${writer.pid}\n`);
    try {
      const known = `10.9.0.2 ${HOST_KEY.split(' ').slice(0, 2).join(' ')}\n`;
      const old = b.exec(receiveScript(c.digest, SIZE, relaySshCommand(c.digest, '10.9.0.2', 22, known, OWNER, 0), OWNER, { offset: 0, token: 'cccccccccccc' }));
      const bp = c.m.file('b', partialPath(c.digest, OWNER));
      for (let i = 0; i < 200 && !(existsSync(bp) && readFileSync(bp).length === 100_000); i++) await new Promise((r) => setTimeout(r, 25));
      expect(readFileSync(bp).length).toBe(100_000);
      const res = await b.exec(resumeScript(c.digest, SIZE, OWNER));
      expect(res.stdout.trim()).toBe('100000');
      // The old transfer ended (its source stopped), keeping its bytes for the resume.
      expect((await old).code).toBe(5);
      expect(readFileSync(bp).length).toBe(100_000);
    } finally {
      writer.kill();
    }
  });
});

describe('a source whose own transfer fails to start', () => {
  it('its receivers are told at once and fetch from another source, not after the serving command gives up', async () => {
    const c = await cluster(['a', 'b']);
    const a = c.sessions.get('a')!;
    const b = c.sessions.get('b')!;
    // a's connection dies as its own transfer starts, once b is already connected to it and waiting for it.
    let aStarting!: () => void;
    const aStarted = new Promise<void>((r) => (aStarting = r));
    let bReceiving!: () => void;
    const bStarted = new Promise<void>((r) => (bReceiving = r));
    b.intercept = (cmd) => {
      if (cmd.includes('| tee -a ') && cmd.includes('exec ssh -i')) bReceiving();
    };
    a.intercept = async (cmd) => {
      if (cmd.includes('an earlier transfer of the layer is still writing it')) {
        aStarting();
        await bStarted;
        // Long enough for b's side to be inside the serving command's wait for a's transfer.
        await new Promise((r) => setTimeout(r, 300));
        throw new SshConnectionLostError(a.name, 'reset by test');
      }
    };
    // a takes this machine's one stream; b is then given a, still setting up, as its source.
    const sendA = c.send('a');
    await aStarted;
    const sendB = c.send('b');
    await expect(sendA).rejects.toBeInstanceOf(SshConnectionLostError);
    await sendB;
    expect(c.notes()).toContain(`layer ${digestHex(c.digest).slice(0, 12)}: relay from a stopped, a's own transfer of the layer failed; trying another source`);
    // b's transfer from a was ended from b's side (its ssh stopped), and a was not blamed for it.
    expect(b.commands.some((x) => x.includes('.stop'))).toBe(true);
    expect(c.relay.distributor.isBroken('a')).toBe(false);
    expect(c.notes().some((n) => /layer relay from a failed/.test(n))).toBe(false);
    expect(c.stored('b')).toBe(digestHex(c.digest));
    expect(c.ctx.uplink.bytes).toBe(SIZE);
  });
});
