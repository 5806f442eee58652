/**
 * Hosts pass layers on to each other as a pipeline, so a large image reaches many hosts nearly as fast as one: the
 * operator sends each big layer once, to one host, and every host that is receiving or holds a layer serves it to
 * the next over SSH with a key made for this apply, while it is still receiving it (the serving command follows the
 * growing `.partial` file until its writer ends). With links of equal speed both ways this makes a chain: every
 * host's downlink and uplink carry the layer once, at the same time. A serving host only lets that key read layers
 * (a forced command that validates the name, limited to the cluster's addresses); each receiver hashes what it
 * receives on the fly and renames the file into the store only when the whole layer matches its digest; keys,
 * grants and the connections between hosts are removed at the end. An interrupted transfer resumes: the receiver
 * keeps the bytes it has and the next source serves only the rest. What the relay makes on a host is named for the
 * cluster (relayOwner), so no apply removes another cluster's files.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestHex, sha256, type Digest } from '../kernel/digest.js';
import { CiError, InternalError } from '../kernel/errors.js';
import { registerSecret } from '../kernel/redact.js';
import { ensureEd25519Key } from '../../providers/ssh/keys.js';
import { SHA256_OF_STDIN, shellQuote } from '../../providers/ssh/shell.js';
import { fingerprintOfPublicKeyLine } from '../../providers/ssh/fingerprint.js';
import type { SshSession } from '../../providers/ssh/session.js';
import { REMOTE_BASE, remoteLayerPath } from './remote-layout.js';

const MARK = 'cloudimage-relay';

/**
 * What one cluster's applies make on a host (relay directory, grant line, partial layer files) carries this tag, so
 * a revoke removes only those and never what another cluster's apply on the same host has in flight. It is stable
 * across applies of the cluster (its state lock keeps them from overlapping), so a rerun resumes the partial files an
 * interrupted apply left; 12 hex digits keep the control socket paths under the length a unix socket allows.
 */
export function relayOwner(cluster: string, lineage: string): string {
  return digestHex(sha256(`${cluster}\n${lineage}`)).slice(0, 12);
}

function checkOwner(owner: string): string {
  if (!/^[0-9a-f]{12}$/.test(owner)) throw new InternalError(`not a relay owner tag: ${owner}`);
  return owner;
}

/** This owner's relay directory: the receiving key, serving hosts' keys, connections, transfer bookkeeping. */
export function relayDir(owner: string): string {
  return `${REMOTE_BASE}/relay/${checkOwner(owner)}`;
}

const serveCommand = (owner: string) => `${relayDir(owner)}/serve-layer`;

/** Where a host receives a layer for this owner; renamed into the shared store only once its digest matched. */
export function partialPath(layer: Digest, owner: string): string {
  return partialOf(digestHex(layer), owner);
}

/** The partial file of `name` (a layer's hex digits, or a shell word standing for them: `$n`, `*`). */
const partialOf = (name: string, owner: string) => `${REMOTE_BASE}/layers/${name}.tar.gz.${checkOwner(owner)}.partial`;

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
  private readonly lostWatchers = new Set<{ layer: Digest; source: string; onLost: () => void }>();
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

  /**
   * The host stopped receiving the layer without holding it (its transfer failed, or never started). Every receiver
   * fed from it learns at once: it may still be waiting for this host's transfer to begin, and nothing will come.
   */
  markNotReceiving(layer: Digest, host: string): void {
    this.receiving.get(layer)?.delete(host);
    for (const w of [...this.lostWatchers]) if (w.layer === layer && w.source === host) w.onLost();
  }

  /**
   * Calls `onLost` when `source` stops receiving `layer` without holding it, while the returned function has not
   * been called. A source that holds the whole layer never loses it.
   */
  watchSource(layer: Digest, source: string, onLost: () => void): () => void {
    const w = { layer, source, onLost };
    this.lostWatchers.add(w);
    return () => void this.lostWatchers.delete(w);
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
 * The forced command of the relay key: it reads one layer, named by its 64 hex digits, from a byte offset on (a
 * receiver resuming an interrupted transfer asks only for what it lacks), and nothing else. A layer the host holds
 * is sent whole from the offset; one it is still receiving (this owner's partial file) is followed as it grows
 * (`tail -f` until the writer, whose PID the receiving script recorded, has ended), so the next host gets the bytes
 * while they arrive.
 */
export function serveScript(owner: string): string {
  const p = partialOf('$n', owner);
  return [
    '#!/bin/sh',
    // Split on spaces only, no glob: the words are checked one by one below.
    'set -f; IFS=" "; set -- $SSH_ORIGINAL_COMMAND',
    '[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: <layer> [<offset>]" >&2; exit 2; }',
    'n=$1 o=${2:-0}',
    'case "$n" in *[!0-9a-f]*|"") echo "not a layer name" >&2; exit 2;; esac',
    '[ ${#n} -eq 64 ] || { echo "not a layer name" >&2; exit 2; }',
    // A non-negative integer in decimal: no sign, no leading zero (octal to some shells), at most 15 digits.
    'case "$o" in *[!0-9]*|""|0?*) echo "not an offset" >&2; exit 2;; esac',
    '[ ${#o} -le 15 ] || { echo "not an offset" >&2; exit 2; }',
    's=$((o+1))',
    `f="${REMOTE_BASE}/layers/$n.tar.gz"`,
    `p="${p}"`,
    'i=0',
    // A receiver is announced as a source before its own transfer starts: wait for its PID file. The executor ends
    // this wait from the receiving side at once when that transfer fails to start; the bound is for lost executors.
    'while :; do',
    '  [ -f "$f" ] && exec tail -c +"$s" "$f"',
    '  [ -s "$p.pid" ] && [ -f "$p" ] && break',
    '  i=$((i+1)); [ $i -le 600 ] || { echo "layer not held" >&2; exit 3; }',
    '  sleep 0.05',
    'done',
    'pid=$(cat "$p.pid")',
    'case "$pid" in *[!0-9]*|"") echo "no writer for the layer" >&2; exit 3;; esac',
    // Opened first, so a rename into place meanwhile changes nothing; gone already, the whole file is there.
    'if command exec 3<"$p"; then exec tail -c +"$s" -f --pid="$pid" -s 0.05 /dev/fd/3; fi',
    '[ -f "$f" ] && exec tail -c +"$s" "$f"',
    'echo "layer not held" >&2; exit 3',
  ].join('\n');
}

/**
 * Rewrites authorized_keys without the lines ending in `mark` (and with `line` added), whole and renamed into place,
 * from a temp file of its own: a grant and a revoke on one host may overlap (another cluster's apply, or a grant
 * still under way as the apply ends), and two writers of one temp file could leave a truncated file, the host's own
 * keys lost. Edits are taken one at a time under flock where the host has it (util-linux), on the .ssh directory
 * itself, so no lock file is left there.
 */
function editAuthorizedKeys(mark: string, line?: string): string {
  const edit = [
    'a="$HOME/.ssh/authorized_keys"; t="$a.ci.$$"',
    `{ grep -v ' ${mark}$' "$a" || true; } > "$t"`,
    ...(line ? [`printf '%s\\n' ${shellQuote(line)} >> "$t"`] : []),
    'chmod 0600 "$t" && mv -f "$t" "$a"',
  ].join('; ');
  return `{ if command -v flock >/dev/null 2>&1; then flock "$HOME/.ssh" sh -c ${shellQuote(edit)}; else sh -c ${shellQuote(edit)}; fi; }`;
}

/** Lets the relay key read layers on this host: a validating forced command, limited to the given addresses. */
export function grantScript(publicKey: string, from: string[], owner: string): string {
  const serve = serveScript(owner);
  const cmd = serveCommand(owner);
  const mark = `${MARK}-${owner}`;
  const line = `restrict,from="${from.join(',')}",command="${cmd}" ${publicKey.split(/\s+/).slice(0, 2).join(' ')} ${mark}`;
  return [
    'set -eu',
    `umask 077; mkdir -p ${shellQuote(relayDir(owner))}`,
    // A temp file of its own: two grants of one apply may overlap on a host.
    `printf '%s\\n' ${shellQuote(serve)} > ${cmd}.tmp.$$ && chmod 0755 ${cmd}.tmp.$$ && mv -f ${cmd}.tmp.$$ ${cmd}`,
    'mkdir -p "$HOME/.ssh" && chmod 0700 "$HOME/.ssh" && touch "$HOME/.ssh/authorized_keys"',
    // Only this owner's line is replaced: another cluster's apply may be serving from this host right now.
    editAuthorizedKeys(mark, line),
    'cat /etc/ssh/ssh_host_*_key.pub',
  ].join('\n');
}

/**
 * Removes this owner's grant and relay key from a host, ends the connections it kept open to other hosts (by the
 * PID each master recorded in its socket's owner check), and deletes the partial files its transfers left, unless
 * `keepPartials` (an apply that did not finish: the next one resumes from them; a finished apply, or the host's
 * removal, deletes them). Nothing of another owner is touched: the shared layer store may hold another cluster's
 * transfer in flight.
 */
export function revokeScript(owner: string, opts: { keepPartials?: boolean } = {}): string {
  const dir = relayDir(owner);
  const mark = `${MARK}-${owner}`;
  const partial = partialOf('*', owner);
  return [
    `if [ -f "$HOME/.ssh/authorized_keys" ]; then ${editAuthorizedKeys(mark)}; fi`,
    `for s in ${dir}/cm-*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit relay >/dev/null 2>&1; done`,
    `rm -rf ${shellQuote(dir)}`,
    // A writer's PID file goes either way: every transfer of this apply has ended with its connections.
    opts.keepPartials ? `rm -f ${partial}.pid` : removePartialsScript(owner),
    'true',
  ].join('\n');
}

/**
 * Where a layer sent whole from this machine is written before its digest is checked: tagged with the owner (and
 * unique to the upload), so the temps an apply killed mid-upload left can be told from another cluster's.
 */
export function uploadTempPath(layer: Digest, owner: string): string {
  return uploadTempOf(digestHex(layer), owner, randomBytes(6).toString('hex'));
}

const uploadTempOf = (name: string, owner: string, unique: string) => `${REMOTE_BASE}/layers/${name}.tar.gz.ci-${checkOwner(owner)}-${unique}.tmp`;

/** Deletes the partial layer files this owner's transfers left on a host (their writers' PID files, its upload temps). */
export function removePartialsScript(owner: string): string {
  const partial = partialOf('*', owner);
  return `rm -f ${partial} ${partial}.pid ${uploadTempOf('*', owner, '*')}`;
}

/**
 * Run as a host's send starts: deletes what this owner's earlier, unfinished applies left on it that this send will
 * not resume from. That is every upload temp (no upload of this apply has started there yet) and the partial files
 * of layers not in `resumable`. A partial whose layer the cluster no longer needs would otherwise stay until the
 * host leaves the cluster, as the finished apply that removes them only does so on the hosts its relay touched.
 */
export function dropStalePartialsScript(owner: string, resumable: Digest[]): string {
  const keep = resumable.map(digestHex).join(' ');
  return [
    `for f in ${partialOf('*', owner)} ${partialOf('*', owner)}.pid; do`,
    '  [ -e "$f" ] || continue',
    '  n=${f##*/}; n=${n%%.*}',
    `  case ' ${keep} ' in *" $n "*) ;; *) rm -f "$f" ;; esac`,
    'done',
    `rm -f ${uploadTempOf('*', owner, '*')}`,
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

// 7: the partial file was not where the resume expected it (an earlier writer still at it); tried again.
const OUTCOME_BY_STATUS: Record<number, TransferOutcome> = { 4: 'corrupt', 5: 'unreachable', 6: 'short', 7: 'short' };

/**
 * A layer transfer to a host failed; `outcome` tells whether its source is to blame. What was received is kept for
 * the next transfer to resume from, unless it did not match the digest (then it is gone).
 */
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
      hint: outcome === 'corrupt' ? `the copy on ${from} (or the part kept from an earlier transfer) is damaged; it was dropped, and \`ci apply --refresh=deep\` finds and replaces a damaged stored copy` : 'the layer is fetched again from another source, from where this transfer stopped',
    });
  }
}

/** The exit status of receiveScript mapped to what failed; undefined for statuses it does not use. */
export function transferOutcome(status: number | null): TransferOutcome | undefined {
  return status === null ? undefined : OUTCOME_BY_STATUS[status];
}

/**
 * The shell command a receiving host runs (as the last command of a subshell, so it is exec'd) to read a layer from
 * a serving host, from byte `offset` on: it trusts only the serving host's verified key lines (written beside the
 * relay key for this source), and keeps the connection open for the apply.
 */
export function relaySshCommand(layer: Digest, fromIp: string, port: number, knownLines: string, owner: string, offset: number): string {
  if (!/^[0-9a-fA-F.:]+$/.test(fromIp)) throw new InternalError(`not an address: ${fromIp}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new InternalError(`not a layer offset: ${offset}`);
  const dir = relayDir(owner);
  const known = `${dir}/known_hosts-${fromIp}`;
  return (
    `printf '%s' ${shellQuote(knownLines)} > ${known} && ` +
    `exec ssh -i ${dir}/key -o UserKnownHostsFile=${known} -o StrictHostKeyChecking=yes -o BatchMode=yes ` +
    `-o IdentitiesOnly=yes -o ConnectTimeout=10 -o ServerAliveInterval=3 -o ServerAliveCountMax=3 -o LogLevel=ERROR ` +
    // AES-GCM first: with AES instructions it costs a fraction of ChaCha20 per byte, and every host both receives and sends.
    `-c aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com ` +
    `-o ControlMaster=auto -o ControlPath=${dir}/cm-%C -o ControlPersist=120 ` +
    `-p ${port} root@${fromIp} ${digestHex(layer)} ${offset} </dev/null`
  );
}

/** Names one transfer's bookkeeping files (its source's PID, its stop request, its source's exit status). */
export function transferToken(): string {
  return randomBytes(6).toString('hex');
}

const transferFiles = (layer: Digest, owner: string, token: string) => {
  if (!/^[0-9a-f]{12}$/.test(token)) throw new InternalError(`not a transfer token: ${token}`);
  return `${relayDir(owner)}/${digestHex(layer)}-${token}`;
};

/**
 * `stop_source FILE`: ends the transfer source whose PID FILE holds, only if it is an ssh client using this owner's
 * relay key (a PID reused by another process is left alone). Shared by the resume and the cancel.
 */
function stopSourceFunction(dir: string): string {
  return [
    'stop_source() {',
    '  k=$(cat "$1" 2>/dev/null || true)',
    '  case "$k" in ""|*[!0-9]*) return 0;; esac',
    `  { grep -qaF ${shellQuote(`${dir}/key`)} /proc/$k/cmdline 2>/dev/null && kill "$k" 2>/dev/null; } || true`,
    '}',
  ].join('\n');
}

/**
 * On the receiving host, before a transfer: how many bytes of the layer its partial file already holds, to resume
 * from. A writer of that file still running (an interrupted apply's, or a transfer given up on) is stopped first:
 * its source is ended (only an ssh client that uses this owner's relay key), then it is waited for. A partial
 * larger than the layer is no prefix of it and is dropped.
 */
export function resumeScript(layer: Digest, size: number, owner: string): string {
  const dir = relayDir(owner);
  const p = shellQuote(partialPath(layer, owner));
  return [
    'set -eu',
    stopSourceFunction(dir),
    `for s in ${dir}/${digestHex(layer)}-*.spid; do [ -f "$s" ] && stop_source "$s"; done`,
    `w=$(cat ${p}.pid 2>/dev/null || true); i=0`,
    'case "$w" in ""|*[!0-9]*) w=;; esac',
    // Its command line names the partial file: a PID reused by another process is not waited for.
    `while [ -n "$w" ] && grep -qaF ${p} /proc/$w/cmdline 2>/dev/null; do`,
    '  i=$((i+1)); [ $i -le 100 ] || { echo "an earlier transfer of the layer is still writing it" >&2; exit 7; }',
    '  sleep 0.05',
    'done',
    `[ -f ${p} ] || { echo 0; exit 0; }`,
    `got=$(wc -c < ${p})`,
    `if [ "$got" -gt ${size} ]; then rm -f ${p}; echo 0; exit 0; fi`,
    'echo "$got"',
  ].join('\n');
}

/**
 * On the receiving host: reads the layer from byte `offset` on from `source` (a shell command exec'd in a subshell,
 * writing the bytes to stdout; `exec cat` for bytes streamed from this machine) onto the end of its partial file,
 * which already holds the first `offset` bytes. Those are hashed once from the file, the rest on the fly, and the
 * file is renamed into the store only when the whole of it matches the digest. While it runs, its PID is in
 * `<partial>.pid`, so the host's serving command can pass the bytes on as they arrive, and its source's PID is in
 * the transfer's files, so cancelScript can end it. Prints the digest and the offset it resumed from. Exit 4: wrong
 * bytes (the file is dropped); 5: the source failed; 6: the stream was short; 7: the partial file was not `offset`
 * bytes long. With 5 and 6 the bytes received are kept, for the next transfer to resume from.
 */
export function receiveScript(layer: Digest, size: number, source: string, owner: string, resume: { offset: number; token: string }): string {
  const dest = remoteLayerPath(layer);
  const p = partialPath(layer, owner);
  const q = shellQuote(p);
  const t = transferFiles(layer, owner, resume.token);
  const off = resume.offset;
  if (!Number.isSafeInteger(off) || off < 0 || off > size) throw new InternalError(`not a layer offset: ${off}`);
  const hex = digestHex(layer);
  return [
    'set -eu',
    // The source reads this script's stdin (bytes from this machine), not the subshell's /dev/null.
    'exec 3<&0',
    `mkdir -p "$(dirname ${shellQuote(dest)})"`,
    `(umask 077; mkdir -p ${shellQuote(relayDir(owner))})`,
    off === 0
      ? `: > ${q}`
      : `[ -f ${q} ] && [ "$(wc -c < ${q})" -eq ${off} ] || { echo "the partial file does not hold the ${off} bytes to resume from" >&2; exit 7; }`,
    `echo $$ > ${shellQuote(`${p}.pid`)}`,
    // A stop request made before the source started is seen once its PID is written; one made after finds the PID.
    `sum=$( { head -c ${off} ${q}; { set +e; { ${source}; } <&3 & echo $! > ${t}.spid; [ ! -f ${t}.stop ] || kill $! 2>/dev/null; wait $!; echo $? > ${t}.rc; } | tee -a ${q}; } | ${SHA256_OF_STDIN} )`,
    `rc=$(cat ${t}.rc 2>/dev/null || echo 255)`,
    `got=$(wc -c < ${q})`,
    `rm -f ${t}.rc ${t}.spid ${t}.stop`,
    `if [ "$sum" = ${hex} ] && [ "$got" -eq ${size} ]; then chmod 0644 ${q} && mv -f ${q} ${shellQuote(dest)}; rm -f ${shellQuote(`${p}.pid`)}; echo "$sum ${off}"; exit 0; fi`,
    `rm -f ${shellQuote(`${p}.pid`)}`,
    // All the bytes are there and they are wrong (from the source, or in the part kept from before): none is kept.
    `if [ "$got" -ge ${size} ]; then rm -f ${q}; echo "$got bytes hash to sha256:$sum" >&2; exit 4; fi`,
    // 3: the source does not hold the layer and did not start receiving it in time; no fault of its own.
    `if [ "$rc" = 3 ]; then echo "the source has not started receiving the layer" >&2; exit 6; fi`,
    `if [ "$rc" != 0 ]; then echo "source exited with $rc after $((got - ${off})) bytes" >&2; exit 5; fi`,
    `echo "$got of ${size} bytes" >&2; exit 6`,
  ].join('\n');
}

/** Ends a transfer's source on the receiving host (the receiving script then exits 5, keeping what it received). */
export function cancelScript(layer: Digest, owner: string, token: string): string {
  const dir = relayDir(owner);
  const t = transferFiles(layer, owner, token);
  return [
    `[ -d ${dir} ] || exit 0`,
    `touch ${t}.stop`,
    stopSourceFunction(dir),
    `stop_source ${t}.spid`,
    'true',
  ].join('\n');
}

/** Gives a receiving host the relay key (the serving hosts' keys come with each transfer). */
export async function prepareReceiver(session: SshSession, key: RelayKey, owner: string): Promise<void> {
  const dir = relayDir(owner);
  await session.execChecked(`umask 077; mkdir -p ${dir}`, { what: 'preparing the layer relay' });
  await session.upload(Buffer.from(key.privateKey), `${dir}/key`, { mode: 0o600 });
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

  /** Tags what this relay makes on hosts (relayOwner): only that is revoked. */
  readonly owner: string;

  constructor(
    private readonly clusterIps: () => string[],
    opts: { owner: string; operatorStreams?: number; hostStreams?: number; canServe: (host: string) => boolean },
  ) {
    this.owner = checkOwner(opts.owner);
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
      const res = await session.execChecked(grantScript(k.publicKey, [...ips].sort(), this.owner), { what: 'granting layer relay' });
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
      p = this.relayKey().then((k) => prepareReceiver(session, k, this.owner));
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

  /**
   * Once every grant and key given so far has ended, failed or not: a grant started early (warm) may still be under
   * way when the apply ends, and a revoke before it ends would leave its line behind.
   */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.granted.values(), ...this.keyed.values()]);
  }
}
