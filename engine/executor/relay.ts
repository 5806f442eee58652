/**
 * Hosts pass layers on to each other as a pipeline, so a large image reaches many hosts nearly as fast as one: the
 * operator sends each big layer once, to one host, and every host that is receiving or holds a layer serves it to
 * the next over SSH with a key made for this apply, while it is still receiving it (the serving command follows the
 * growing `.partial` file until its writer ends). With links of equal speed both ways this makes a chain: every
 * host's downlink and uplink carry the layer once, at the same time. A serving host only lets that key read layers
 * (a forced command that validates the name, limited to the cluster's addresses); each receiver hashes what it
 * receives on the fly and renames the file into the store only when the whole layer matches its digest; keys,
 * grants and the connections between hosts are removed at the end.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestHex, type Digest } from '../kernel/digest.js';
import { CiError, InternalError } from '../kernel/errors.js';
import { registerSecret } from '../kernel/redact.js';
import { ensureEd25519Key } from '../../providers/ssh/keys.js';
import { SHA256_OF_STDIN, shellQuote } from '../../providers/ssh/shell.js';
import { fingerprintOfPublicKeyLine } from '../../providers/ssh/fingerprint.js';
import type { SshSession } from '../../providers/ssh/session.js';
import { REMOTE_BASE, remoteLayerPath } from './remote-layout.js';

const RELAY_DIR = `${REMOTE_BASE}/relay`;
const SERVE = `${REMOTE_BASE}/bin/serve-layer`;
const MARK = 'cloudimage-relay';

export interface RelayKey {
  privateKey: string;
  publicKey: string;
}

export async function makeRelayKey(): Promise<RelayKey> {
  const dir = await mkdtemp(join(tmpdir(), 'ci-relay-'));
  try {
    const pub = await ensureEd25519Key(join(dir, 'key'), MARK);
    const privateKey = await readFile(join(dir, 'key'), 'utf8');
    registerSecret(privateKey);
    return { privateKey, publicKey: pub };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Where a layer comes from: this machine, or a host of the cluster that holds it or is receiving it. */
export type Source = { kind: 'operator' } | { kind: 'host'; key: string };

interface Waiter {
  layer: Digest;
  host: string;
  resolve: (s: Source) => void;
}

/**
 * Chooses a source for each layer transfer. The operator serves at most `operatorStreams` transfers at once and
 * each host at most `hostStreams` (its uplink); a host that is still receiving a layer can already serve it. With
 * one stream each (links of the same speed both ways), the receivers of a layer form a chain fed once by the
 * operator: every link carries the layer once, and the transfers overlap instead of following each other in rounds.
 * Hosts that hold the whole layer are preferred over hosts still receiving it; a receiver is never given a source
 * that is fed, directly or further up, by the receiver itself.
 */
export class LayerDistributor {
  private readonly holders = new Map<Digest, Set<string>>();
  /** Per layer: hosts receiving it now, and where each one gets it from. */
  private readonly receiving = new Map<Digest, Map<string, Source>>();
  private readonly busy = new Map<string, number>();
  private readonly failedSources = new Set<string>();
  private readonly waiters: Waiter[] = [];
  private operatorBusy = 0;

  constructor(
    private readonly opts: { operatorStreams: number; hostStreams: number; canServe: (host: string) => boolean },
  ) {}

  markHeld(layer: Digest, host: string): void {
    let set = this.holders.get(layer);
    if (!set) this.holders.set(layer, (set = new Set()));
    set.add(host);
    this.receiving.get(layer)?.delete(host);
    this.wake();
  }

  /** The host is receiving the layer from `from` and can serve what it has received so far. */
  markReceiving(layer: Digest, host: string, from: Source): void {
    let m = this.receiving.get(layer);
    if (!m) this.receiving.set(layer, (m = new Map()));
    m.set(host, from);
    this.wake();
  }

  /** The host stopped receiving the layer without holding it (its transfer failed). */
  markNotReceiving(layer: Digest, host: string): void {
    this.receiving.get(layer)?.delete(host);
  }

  /** A host that could not serve is not asked again during this apply. */
  markBroken(host: string): void {
    this.failedSources.add(host);
    this.wake();
  }

  isBroken(host: string): boolean {
    return this.failedSources.has(host);
  }

  acquire(layer: Digest, host: string): Promise<Source> {
    return new Promise((resolve) => {
      this.waiters.push({ layer, host, resolve });
      this.wake();
    });
  }

  release(source: Source): void {
    if (source.kind === 'operator') this.operatorBusy--;
    else this.busy.set(source.key, (this.busy.get(source.key) ?? 1) - 1);
    this.wake();
  }

  /** True when `host`'s copy of the layer comes, directly or further up, from `ancestor`. */
  private fedBy(layer: Digest, host: string, ancestor: string): boolean {
    const m = this.receiving.get(layer);
    const seen = new Set<string>();
    for (let h: string | undefined = host; h !== undefined && !seen.has(h); ) {
      if (h === ancestor) return true;
      seen.add(h);
      const up: Source | undefined = m?.get(h);
      h = up?.kind === 'host' ? up.key : undefined;
    }
    return false;
  }

  private usable(w: Waiter, h: string): boolean {
    return h !== w.host && !this.failedSources.has(h) && this.opts.canServe(h) && (this.busy.get(h) ?? 0) < this.opts.hostStreams;
  }

  private pick(w: Waiter): Source | undefined {
    const take = (h: string): Source => {
      this.busy.set(h, (this.busy.get(h) ?? 0) + 1);
      return { kind: 'host', key: h };
    };
    for (const h of this.holders.get(w.layer) ?? []) if (this.usable(w, h)) return take(h);
    for (const h of this.receiving.get(w.layer)?.keys() ?? []) {
      if (this.usable(w, h) && !this.fedBy(w.layer, h, w.host)) return take(h);
    }
    if (this.operatorBusy < this.opts.operatorStreams) {
      this.operatorBusy++;
      return { kind: 'operator' };
    }
    return undefined;
  }

  private wake(): void {
    for (let i = 0; i < this.waiters.length; ) {
      const s = this.pick(this.waiters[i]);
      if (!s) {
        i++;
        continue;
      }
      const [w] = this.waiters.splice(i, 1);
      w.resolve(s);
    }
  }
}

/**
 * The forced command of the relay key: it reads one layer, named by its 64 hex digits, and nothing else. A layer
 * the host holds is sent whole; one it is still receiving is followed as it grows (`tail -f` until the writer,
 * whose PID the receiving script recorded, has ended), so the next host gets the bytes while they arrive.
 */
export function serveScript(): string {
  return [
    '#!/bin/sh',
    'n="$SSH_ORIGINAL_COMMAND"',
    'case "$n" in *[!0-9a-f]*|"") echo "not a layer name" >&2; exit 2;; esac',
    '[ ${#n} -eq 64 ] || { echo "not a layer name" >&2; exit 2; }',
    `f="${REMOTE_BASE}/layers/$n.tar.gz"`,
    'p="$f.partial"',
    'i=0',
    // A receiver is announced as a source before its own transfer starts: wait for its PID file (up to 30 s).
    'while :; do',
    '  [ -f "$f" ] && exec cat "$f"',
    '  [ -s "$p.pid" ] && [ -f "$p" ] && break',
    '  i=$((i+1)); [ $i -le 600 ] || { echo "layer not held" >&2; exit 3; }',
    '  sleep 0.05',
    'done',
    'pid=$(cat "$p.pid")',
    'case "$pid" in *[!0-9]*|"") echo "no writer for the layer" >&2; exit 3;; esac',
    // Opened first, so a rename into place meanwhile changes nothing; gone already, the whole file is there.
    'if command exec 3<"$p"; then exec tail -c +1 -f --pid="$pid" -s 0.05 /dev/fd/3; fi',
    '[ -f "$f" ] && exec cat "$f"',
    'echo "layer not held" >&2; exit 3',
  ].join('\n');
}

/** Lets the relay key read layers on this host: a validating forced command, limited to the given addresses. */
export function grantScript(publicKey: string, from: string[]): string {
  const serve = serveScript();
  const line = `restrict,from="${from.join(',')}",command="${SERVE}" ${publicKey.split(/\s+/).slice(0, 2).join(' ')} ${MARK}`;
  return [
    'set -eu',
    `mkdir -p ${shellQuote(`${REMOTE_BASE}/bin`)}`,
    `printf '%s\\n' ${shellQuote(serve)} > ${SERVE}.tmp && chmod 0755 ${SERVE}.tmp && mv ${SERVE}.tmp ${SERVE}`,
    'mkdir -p "$HOME/.ssh" && chmod 0700 "$HOME/.ssh" && touch "$HOME/.ssh/authorized_keys"',
    `grep -v ' ${MARK}$' "$HOME/.ssh/authorized_keys" > "$HOME/.ssh/authorized_keys.ci" || true`,
    `printf '%s\\n' ${shellQuote(line)} >> "$HOME/.ssh/authorized_keys.ci"`,
    'chmod 0600 "$HOME/.ssh/authorized_keys.ci" && mv "$HOME/.ssh/authorized_keys.ci" "$HOME/.ssh/authorized_keys"',
    'cat /etc/ssh/ssh_host_*_key.pub',
  ].join('\n');
}

/**
 * Removes the grant and the relay key from a host, ends the connections it kept open to other hosts (by the PID
 * each master recorded in its socket's owner check), and deletes what an interrupted transfer left.
 */
export function revokeScript(): string {
  return [
    `if [ -f "$HOME/.ssh/authorized_keys" ]; then grep -v ' ${MARK}$' "$HOME/.ssh/authorized_keys" > "$HOME/.ssh/authorized_keys.ci" || true;`,
    '  chmod 0600 "$HOME/.ssh/authorized_keys.ci"; mv "$HOME/.ssh/authorized_keys.ci" "$HOME/.ssh/authorized_keys"; fi',
    `for s in ${RELAY_DIR}/cm-*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit relay >/dev/null 2>&1; done`,
    `rm -rf ${shellQuote(RELAY_DIR)} ${shellQuote(SERVE)}`,
    `rm -f ${REMOTE_BASE}/layers/*.partial ${REMOTE_BASE}/layers/*.partial.pid ${REMOTE_BASE}/layers/*.partial.rc`,
    'true',
  ].join('\n');
}

/** The host key lines a serving host offered, kept only if one matches the key pinned for it. */
export function verifiedKnownHosts(ip: string, pubLines: string, pinned: string | undefined): string | undefined {
  const lines = pubLines.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('ssh-') || l.startsWith('ecdsa-'));
  const match = lines.filter((l) => {
    try {
      return fingerprintOfPublicKeyLine(l) === pinned;
    } catch {
      return false;
    }
  });
  if (match.length === 0) return undefined;
  return match.map((l) => `${ip} ${l.split(/\s+/).slice(0, 2).join(' ')}`).join('\n') + '\n';
}

/** How a relayed transfer ended, as the receiving script's exit status says. */
export type TransferOutcome = 'unreachable' | 'short' | 'corrupt';

const OUTCOME_BY_STATUS: Record<number, TransferOutcome> = { 4: 'corrupt', 5: 'unreachable', 6: 'short' };

/** A layer transfer to a host failed; `outcome` tells whether its source is to blame. Nothing was kept. */
export class LayerTransferError extends CiError {
  constructor(
    readonly host: string,
    readonly layer: Digest,
    readonly from: string,
    readonly outcome: TransferOutcome,
    detail: string,
  ) {
    const why = {
      unreachable: 'the source could not be reached or stopped serving',
      short: 'the stream ended early (its source lost its own source)',
      corrupt: 'the received bytes do not match the layer digest',
    }[outcome];
    super('LAYER_TRANSFER_FAILED', `${host}: layer ${digestHex(layer).slice(0, 12)} from ${from}: ${why}${detail ? `: ${detail}` : ''}`, {
      source: 'external',
      hint: outcome === 'corrupt' ? `the copy on ${from} is damaged; \`ci apply --refresh=deep\` finds and replaces it` : 'the layer is fetched again from another source',
    });
  }
}

/** The exit status of receiveScript mapped to what failed; undefined for statuses it does not use. */
export function transferOutcome(status: number | null): TransferOutcome | undefined {
  return status === null ? undefined : OUTCOME_BY_STATUS[status];
}

/**
 * The shell command a receiving host runs to read a layer from a serving host: it trusts only the serving host's
 * verified key lines (written beside the relay key for this source), and keeps the connection open for the apply.
 */
export function relaySshCommand(layer: Digest, fromIp: string, port: number, knownLines: string): string {
  if (!/^[0-9a-fA-F.:]+$/.test(fromIp)) throw new InternalError(`not an address: ${fromIp}`);
  const known = `${RELAY_DIR}/known_hosts-${fromIp}`;
  return (
    `printf '%s' ${shellQuote(knownLines)} > ${known} && ` +
    `ssh -i ${RELAY_DIR}/key -o UserKnownHostsFile=${known} -o StrictHostKeyChecking=yes -o BatchMode=yes ` +
    `-o IdentitiesOnly=yes -o ConnectTimeout=10 -o ServerAliveInterval=3 -o ServerAliveCountMax=3 -o LogLevel=ERROR ` +
    // AES-GCM first: with AES instructions it costs a fraction of ChaCha20 per byte, and every host both receives and sends.
    `-c aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com ` +
    `-o ControlMaster=auto -o ControlPath=${RELAY_DIR}/cm-%C -o ControlPersist=120 ` +
    `-p ${port} root@${fromIp} ${digestHex(layer)} </dev/null`
  );
}

/**
 * On the receiving host: reads a layer from `source` (a shell command writing it to stdout; `cat` for bytes
 * streamed from this machine) into `<layer>.partial`, hashing it on the way, and renames it into the store only
 * when the whole file matches the digest. While it runs, its PID is in `<layer>.partial.pid`, so the host's serving
 * command can pass the bytes on as they arrive. Exit 4: wrong bytes; 5: the source failed; 6: the stream was short.
 */
export function receiveScript(layer: Digest, size: number, source: string): string {
  const dest = remoteLayerPath(layer);
  const p = `${dest}.partial`;
  const q = shellQuote(p);
  const hex = digestHex(layer);
  return [
    'set -eu',
    `mkdir -p "$(dirname ${shellQuote(dest)})"`,
    `rm -f ${q} ${shellQuote(`${p}.rc`)}`,
    `: > ${q}`,
    `echo $$ > ${shellQuote(`${p}.pid`)}`,
    `sum=$( { set +e; ${source}; echo $? > ${shellQuote(`${p}.rc`)}; } | tee ${q} | ${SHA256_OF_STDIN} )`,
    `rc=$(cat ${shellQuote(`${p}.rc`)} 2>/dev/null || echo 255)`,
    `got=$(wc -c < ${q})`,
    `rm -f ${shellQuote(`${p}.rc`)}`,
    `if [ "$sum" = ${hex} ] && [ "$got" -eq ${size} ]; then chmod 0644 ${q} && mv -f ${q} ${shellQuote(dest)}; rm -f ${shellQuote(`${p}.pid`)}; echo "$sum"; exit 0; fi`,
    `rm -f ${q} ${shellQuote(`${p}.pid`)}`,
    // 3: the source does not hold the layer and did not start receiving it in time; no fault of its own.
    `if [ "$rc" = 3 ]; then echo "the source has not started receiving the layer" >&2; exit 6; fi`,
    `if [ "$rc" != 0 ]; then echo "source exited with $rc after $got bytes" >&2; exit 5; fi`,
    `if [ "$got" -lt ${size} ]; then echo "$got of ${size} bytes" >&2; exit 6; fi`,
    `echo "$got bytes hash to sha256:$sum" >&2; exit 4`,
  ].join('\n');
}

/** Gives a receiving host the relay key (the serving hosts' keys come with each transfer). */
export async function prepareReceiver(session: SshSession, key: RelayKey): Promise<void> {
  await session.execChecked(`umask 077; mkdir -p ${RELAY_DIR}`, { what: 'preparing the layer relay' });
  await session.upload(Buffer.from(key.privateKey), `${RELAY_DIR}/key`, { mode: 0o600 });
}

export interface RelayHost {
  key: string;
  ip: string;
  port: number;
  hostKey?: string;
}

/**
 * One apply's relay: the key, the distributor, and which hosts were granted or prepared (so all of it is revoked
 * at the end, whatever happened).
 */
export class Relay {
  readonly distributor: LayerDistributor;
  private key?: Promise<RelayKey>;
  private readonly granted = new Map<string, Promise<{ ips: Set<string>; known: string | undefined }>>();
  private readonly keyed = new Map<string, Promise<void>>();
  private readonly touched = new Set<string>();

  private readonly canServe: (host: string) => boolean;

  constructor(
    private readonly clusterIps: () => string[],
    opts: { operatorStreams?: number; hostStreams?: number; canServe: (host: string) => boolean },
  ) {
    this.canServe = opts.canServe;
    this.distributor = new LayerDistributor({ operatorStreams: opts.operatorStreams ?? 1, hostStreams: opts.hostStreams ?? 1, canServe: opts.canServe });
  }

  private relayKey(): Promise<RelayKey> {
    this.key ??= makeRelayKey();
    return this.key;
  }

  /**
   * Grants the relay key on a serving host, for every cluster address known now plus the receiver's; grants again
   * when a receiver appears that the grant does not cover. Returns the verified known_hosts lines (undefined:
   * the host offered no key matching its pinned one, so it must not be trusted as a source).
   */
  async grant(source: RelayHost, session: SshSession, receiverIp: string): Promise<string | undefined> {
    const prev = this.granted.get(source.key);
    if (prev && (await prev).ips.has(receiverIp)) return (await prev).known;
    const ips = new Set([...(prev ? (await prev).ips : []), ...this.clusterIps(), receiverIp]);
    this.touched.add(source.key);
    const g = this.relayKey().then(async (k) => {
      const res = await session.execChecked(grantScript(k.publicKey, [...ips].sort()), { what: 'granting layer relay' });
      return { ips, known: verifiedKnownHosts(source.ip, res.stdout, source.hostKey ?? session.hostKey) };
    });
    this.granted.set(source.key, g);
    // A failed grant is not kept: the next transfer from this host tries again (or rules the host out).
    g.catch(() => {
      if (this.granted.get(source.key) === g) this.granted.delete(source.key);
    });
    return (await g).known;
  }

  /**
   * Grants a host as a source as soon as its transfers start, before layer bytes fill its downlink: the commands
   * that make it a source would otherwise queue behind those bytes while the next host waits for it.
   */
  warm(host: RelayHost, session: SshSession): void {
    this.prepare(host.key, session).catch(() => undefined);
    if (this.canServe(host.key)) this.grant(host, session, host.ip).catch(() => undefined);
  }

  /** Makes sure the receiving host has the relay key (once per apply; started early by warm). */
  prepare(receiver: string, session: SshSession): Promise<void> {
    let p = this.keyed.get(receiver);
    if (!p) {
      this.touched.add(receiver);
      p = this.relayKey().then((k) => prepareReceiver(session, k));
      this.keyed.set(receiver, p);
      p.catch(() => {
        if (this.keyed.get(receiver) === p) this.keyed.delete(receiver);
      });
    }
    return p;
  }

  /** Hosts that hold a grant or a key, to revoke at the end. */
  hostsToRevoke(): string[] {
    return [...this.touched];
  }
}
