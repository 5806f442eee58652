/**
 * Hosts pass layers on to each other, so a large image reaches many hosts nearly as fast as one: the operator
 * sends each layer to a few hosts, and every host that holds a layer serves it to others over SSH with a key made
 * for this apply. A serving host only lets that key read layers (a forced command that validates the name, limited
 * to the cluster's addresses); everything received is verified by digest; keys and grants are removed at the end.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestHex, type Digest } from '../kernel/digest.js';
import { registerSecret } from '../kernel/redact.js';
import { ensureEd25519Key } from '../../providers/ssh/keys.js';
import { shellQuote } from '../../providers/ssh/shell.js';
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

/** Where a layer comes from: this machine, or a host of the cluster that already holds it. */
export type Source = { kind: 'operator' } | { kind: 'host'; key: string };

interface Waiter {
  layer: Digest;
  host: string;
  resolve: (s: Source) => void;
}

/**
 * Chooses a source for each layer transfer. The operator serves at most `operatorStreams` transfers at once;
 * each holding host serves at most `hostStreams`. A host waits for a free source rather than queue on the
 * operator's uplink, so copies fan out like a tree: the holders double with every round.
 */
export class LayerDistributor {
  private readonly holders = new Map<Digest, Set<string>>();
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
    this.wake();
  }

  /** A host that could not serve is not asked again during this apply. */
  markBroken(host: string): void {
    this.failedSources.add(host);
    this.wake();
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

  private pick(w: Waiter): Source | undefined {
    for (const h of this.holders.get(w.layer) ?? []) {
      if (h === w.host || this.failedSources.has(h) || !this.opts.canServe(h)) continue;
      if ((this.busy.get(h) ?? 0) < this.opts.hostStreams) {
        this.busy.set(h, (this.busy.get(h) ?? 0) + 1);
        return { kind: 'host', key: h };
      }
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

/** Lets the relay key read layers on this host: a validating forced command, limited to the given addresses. */
export function grantScript(publicKey: string, from: string[]): string {
  const serve = [
    '#!/bin/sh',
    'n="$SSH_ORIGINAL_COMMAND"',
    'case "$n" in *[!0-9a-f]*|"") echo "not a layer name" >&2; exit 2;; esac',
    '[ ${#n} -eq 64 ] || { echo "not a layer name" >&2; exit 2; }',
    `exec cat "${REMOTE_BASE}/layers/$n.tar.gz"`,
  ].join('\n');
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

/** Removes the grant and the relay key from a host. */
export function revokeScript(): string {
  return [
    `if [ -f "$HOME/.ssh/authorized_keys" ]; then grep -v ' ${MARK}$' "$HOME/.ssh/authorized_keys" > "$HOME/.ssh/authorized_keys.ci" || true;`,
    '  chmod 0600 "$HOME/.ssh/authorized_keys.ci"; mv "$HOME/.ssh/authorized_keys.ci" "$HOME/.ssh/authorized_keys"; fi',
    `rm -rf ${shellQuote(RELAY_DIR)} ${shellQuote(SERVE)}`,
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

/** On the receiving host: fetch one layer from a serving host, verify it, rename it into place. */
export function fetchScript(layer: Digest, fromIp: string, port: number): string {
  const dest = remoteLayerPath(layer);
  const tmp = `${dest}.relay-${process.pid}.tmp`;
  return [
    'set -eu',
    `mkdir -p "$(dirname ${shellQuote(dest)})"`,
    `ssh -i ${RELAY_DIR}/key -o UserKnownHostsFile=${RELAY_DIR}/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes ` +
      `-o IdentitiesOnly=yes -o ConnectTimeout=10 -o LogLevel=ERROR -p ${port} root@${fromIp} ${digestHex(layer)} > ${shellQuote(tmp)}`,
    `sum=$(sha256sum ${shellQuote(tmp)} | cut -d' ' -f1)`,
    `if [ "$sum" != ${shellQuote(digestHex(layer))} ]; then rm -f ${shellQuote(tmp)}; echo "layer from ${fromIp} does not match its digest" >&2; exit 4; fi`,
    `chmod 0644 ${shellQuote(tmp)} && mv -f ${shellQuote(tmp)} ${shellQuote(dest)}`,
  ].join('\n');
}

/** Gives a receiving host the relay key and the serving hosts' verified host keys. */
export async function prepareReceiver(session: SshSession, key: RelayKey, knownHosts: string): Promise<void> {
  await session.execChecked(`umask 077; mkdir -p ${RELAY_DIR}`, { what: 'preparing the layer relay' });
  await session.upload(Buffer.from(key.privateKey), `${RELAY_DIR}/key`, { mode: 0o600 });
  await session.upload(Buffer.from(knownHosts), `${RELAY_DIR}/known_hosts`, { mode: 0o600 });
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
  private readonly receivers = new Map<string, Set<string>>();
  private readonly touched = new Set<string>();

  constructor(
    private readonly clusterIps: () => string[],
    opts: { operatorStreams?: number; hostStreams?: number; canServe: (host: string) => boolean },
  ) {
    this.distributor = new LayerDistributor({ operatorStreams: opts.operatorStreams ?? 1, hostStreams: opts.hostStreams ?? 2, canServe: opts.canServe });
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
    return (await g).known;
  }

  /** Makes sure the receiving host has the key and trusts the serving host's key. */
  async prepare(receiver: string, session: SshSession, source: RelayHost, knownLines: string): Promise<void> {
    let known = this.receivers.get(receiver);
    if (known?.has(source.key)) return;
    if (!known) this.receivers.set(receiver, (known = new Set()));
    known.add(source.key);
    this.touched.add(receiver);
    const all = (await Promise.all([...known].map(async (k) => (await this.granted.get(k))?.known))).filter(Boolean).join('');
    await prepareReceiver(session, await this.relayKey(), all || knownLines);
  }

  /** Hosts that hold a grant or a key, to revoke at the end. */
  hostsToRevoke(): string[] {
    return [...this.touched];
  }
}
