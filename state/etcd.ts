/**
 * The etcd state backend: a team's clusters kept in an etcd cluster they already run, so every operator and CI runner
 * sees one state and one lock. Under `<prefix>/clusters/<cluster>/`:
 *
 * - `state`: the state, encoded exactly as a state file (state/codec.ts), hook outputs sealed with the key derived
 *   from the team's passphrase. Every write is a transaction that compares the key's revision with the one this
 *   backend read, so a lost race is an error, never an overwrite; while a lock is held, it also compares that the
 *   lock is still ours.
 * - `history/<serial>`: every version written, with who wrote it and when; the oldest beyond `history` are dropped in
 *   the same transaction, so the kept versions never have a gap.
 * - `lock`: who holds the lock, attached to a lease the holder keeps alive. A holder that dies stops renewing it and
 *   etcd removes the lock when its TTL runs out: the next command proceeds by itself.
 * - `key`: the id of the passphrase's key, so a wrong passphrase is refused before anything is written, even while
 *   the state holds no sealed output yet.
 * - `moved`: left when the state was migrated to another backend, so this one never reads as "never applied".
 */
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import type { Etcd3, Lease } from 'etcd3';
import { CiError, InternalError, StateConflictError, StateError, StateIdentityError, StateLockError } from '../engine/kernel/errors.js';
import { registerSecret } from '../engine/kernel/redact.js';
import { retry } from '../engine/kernel/retry.js';
import type { StateBackendSpec } from '../engine/kernel/types.js';
import type { Lock, LockInfo, MovedMarker, StateBackend, StateProbe, StateVersion } from './backend.js';
import { decodeState, encodeState, nextSerial, parseState } from './codec.js';
import type { KeySource } from './keys.js';
import type { ClusterState } from './model.js';
import { newHolder, safeUser, UNREADABLE_LOCK } from './holder.js';
import { movedError, parseMoved } from './moved.js';

export type EtcdSpec = Extract<StateBackendSpec, { type: 'etcd' }>;

export const DEFAULT_PREFIX = '/cloudimage';
export const DEFAULT_LOCK_TTL_SECONDS = 30;
export const DEFAULT_HISTORY = 20;
/** How long one call to etcd may take before it counts as failed (and is retried on another member). */
const CALL_TIMEOUT_MS = 5_000;

export interface EtcdBackendOptions {
  cluster: string;
  spec: EtcdSpec;
  /** CI_ETCD_USER / CI_ETCD_PASSWORD. */
  env?: NodeJS.ProcessEnv;
  /** The passphrase's key source; absent only with `withoutOutputs`. */
  keys?: KeySource;
  /** Read states without opening their hook outputs (no passphrase needed); such a backend refuses to write. */
  withoutOutputs?: boolean;
  pollMinMs?: number;
  pollMaxMs?: number;
}

interface Seen {
  /** Mod revision of the state key as last read or written ('0': absent). */
  revision: string;
  text?: string;
}

interface HistoryEntry {
  serial: number;
  time: string;
  user: string;
  host: string;
  operation: string;
  state: string;
}

const pad = (serial: number) => String(serial).padStart(12, '0');

/** Errors of the transport (a member down, no leader yet, a deadline): the call may be tried again. */
function transient(err: unknown): boolean {
  if (err instanceof CiError) return false;
  const e = err as { name?: string; message?: string; code?: number };
  return /GRPC|Unavailable|Deadline|leader|timed? ?out|ECONNREFUSED|ECONNRESET|No connection|too many requests/i.test(`${e?.name} ${e?.message}`);
}

export class EtcdStateBackend implements StateBackend {
  readonly prefix: string;
  readonly ttlSeconds: number;
  readonly keep: number;
  private client?: Promise<Etcd3>;
  private lib?: typeof import('etcd3');
  private seen?: Seen;
  private held?: { lease: Lease; leaseId: string; info: LockInfo; lost?: Error };

  constructor(private readonly opts: EtcdBackendOptions) {
    if (opts.spec.endpoints.length === 0) throw new InternalError('the etcd backend needs endpoints');
    this.prefix = `${(opts.spec.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, '')}/clusters/${opts.cluster}`;
    this.ttlSeconds = opts.spec.lockTtlSeconds ?? DEFAULT_LOCK_TTL_SECONDS;
    this.keep = opts.spec.history ?? DEFAULT_HISTORY;
  }

  get location(): string {
    return `etcd ${this.opts.spec.endpoints.join(',')} ${this.prefix}`;
  }

  private key(name: string): string {
    return `${this.prefix}/${name}`;
  }

  private etcd(): Promise<Etcd3> {
    this.client ??= this.connect();
    return this.client;
  }

  private async connect(): Promise<Etcd3> {
    // Loaded here: commands that never touch etcd do not pay for its gRPC stack.
    this.lib = await import('etcd3');
    const { Etcd3 } = this.lib;
    const env = this.opts.env ?? process.env;
    const user = env.CI_ETCD_USER;
    const password = env.CI_ETCD_PASSWORD;
    if ((user === undefined) !== (password === undefined)) {
      throw new StateError('only one of CI_ETCD_USER and CI_ETCD_PASSWORD is set', 'set both to log in to etcd, or neither');
    }
    registerSecret(password);
    const tls = this.opts.spec.tls;
    const read = (what: string, path: string | undefined) => {
      if (path === undefined) return undefined;
      try {
        return readFileSync(path);
      } catch (err: any) {
        throw new StateError(`cannot read the etcd TLS ${what} ${path}: ${err?.code ?? err?.message ?? err}`, 'check spec.backend.tls in the Clusterfile');
      }
    };
    const ca = read('CA certificate', tls?.ca);
    const cert = read('certificate', tls?.cert);
    const key = read('key', tls?.key);
    if ((cert || key) && !ca) throw new StateError('spec.backend.tls names a client certificate but no CA', 'add spec.backend.tls.ca: the CA that signed the etcd members\' certificates');
    return new Etcd3({
      hosts: this.opts.spec.endpoints,
      dialTimeout: CALL_TIMEOUT_MS,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
      ...(ca ? { credentials: { rootCertificate: ca, ...(key ? { privateKey: key } : {}), ...(cert ? { certChain: cert } : {}) } } : {}),
      ...(user !== undefined && password !== undefined ? { auth: { username: user, password } } : {}),
    });
  }

  /** One call to etcd, retried across members while the cluster elects a leader or a member is down. */
  private async call<T>(what: string, fn: (c: Etcd3) => Promise<T>): Promise<T> {
    const c = await this.etcd();
    try {
      return await retry(() => fn(c), { attempts: 6, baseMs: 250, capMs: 2_000, retryable: transient });
    } catch (err) {
      if (err instanceof CiError) throw err;
      throw new StateError(
        `cannot ${what} in ${this.location}: ${(err as Error)?.message ?? err}`,
        'check that etcd is running and reachable at the endpoints (spec.backend.endpoints or CI_ETCD_ENDPOINTS), then run the command again',
      );
    }
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) (await c.catch(() => undefined))?.close();
  }

  private async getText(c: Etcd3, key: string): Promise<{ text?: string; revision: string; lease?: string }> {
    const r = await c.get(key).exec();
    const kv = r.kvs[0];
    return kv ? { text: kv.value.toString('utf8'), revision: String(kv.mod_revision), lease: String(kv.lease) } : { revision: '0' };
  }

  async probe(): Promise<StateProbe> {
    return this.call('read the state', async (c) => {
      const [cur, moved, last] = await Promise.all([
        this.getText(c, this.key('state')),
        this.getText(c, this.key('moved')),
        c.getAll().prefix(this.key('history/')).sort('Key', 'Descend').limit(1).keys(),
      ]);
      return {
        ...(cur.text !== undefined ? { stored: parseState(cur.text, this.location) } : {}),
        ...(moved.text !== undefined ? { moved: parseMoved(moved.text) } : {}),
        ...(last.length ? { lastSerial: Number(last[0].slice(this.key('history/').length)) } : {}),
      };
    });
  }

  async read(): Promise<ClusterState | undefined> {
    const { cur, moved, history, keyId } = await this.call('read the state', async (c) => {
      const [cur, moved, keyId] = await Promise.all(['state', 'moved', 'key'].map((k) => this.getText(c, this.key(k))));
      const history = cur.text === undefined ? await c.getAll().prefix(this.key('history/')).count() : 0;
      return { cur, moved, history, keyId };
    });
    this.seen = { revision: cur.revision, text: cur.text };
    if (cur.text === undefined) {
      if (moved.text !== undefined) throw movedError(parseMoved(moved.text), this.location);
      if (history > 0) {
        throw new StateIdentityError(
          `there is no state in ${this.location}, but ${history} earlier version(s) of it are kept there: the state key was deleted, and the cluster may still be running`,
          'look at `ci state history`, then put the latest version back with `ci state pull --version N > state.json` and `ci state push state.json`',
        );
      }
      return undefined;
    }
    if (!this.opts.withoutOutputs) await this.checkPassphrase(keyId.text);
    return decodeState(cur.text, this.location, this.opts.withoutOutputs ? undefined : this.keys());
  }

  decode(text: string, where: string): Promise<ClusterState> {
    return decodeState(text, where, this.keys());
  }

  private keys(): KeySource {
    if (!this.opts.keys) throw new InternalError(`the etcd backend of ${this.location} was opened without a key source`);
    return this.opts.keys;
  }

  private async checkPassphrase(recorded: string | undefined): Promise<void> {
    if (recorded === undefined) return;
    const ours = (await this.keys().sealingKey()).id;
    if (recorded.trim() !== ours) {
      throw new StateError(
        `the state in ${this.location} is sealed with key ${recorded.trim()}, and CI_STATE_PASSPHRASE gives key ${ours}: it is not the passphrase this state was written with`,
        'set CI_STATE_PASSPHRASE to the team\'s passphrase; nothing was changed',
      );
    }
  }

  async write(state: ClusterState, opts: { keepSerial?: boolean } = {}): Promise<ClusterState> {
    if (this.opts.withoutOutputs) throw new InternalError(`the state in ${this.location} was read without its hook outputs and cannot be written`);
    if (this.held?.lost) throw this.lostLockError(this.held.lost);
    const keys = this.keys();
    const ours = await keys.sealingKey();
    const c = await this.etcd();
    const seen = this.seen ?? (await this.call('read the state', (c2) => this.getText(c2, this.key('state'))));
    const stored = seen.text !== undefined ? parseState(seen.text, this.location) : undefined;
    const serial = nextSerial(state, stored, this.location, { keepSerial: opts.keepSerial, hint: 'this is another cluster\'s state: check the Clusterfile\'s name and spec.backend' });
    const written: ClusterState = { ...state, serial };
    const text = await encodeState(state, keys, seen.text, serial);
    const entry: HistoryEntry = { serial: written.serial, time: new Date().toISOString(), user: safeUser(), host: hostname(), operation: this.held?.info.operation ?? 'write', state: text };
    const commit = () => {
      let txn = c.if(this.key('state'), 'Mod', '==', seen.revision);
      if (this.held) txn = txn.and(this.key('lock'), 'Lease', '==', this.held.leaseId);
      return txn
        .then(
          c.put(this.key('state')).value(text),
          c.put(this.key(`history/${pad(written.serial)}`)).value(JSON.stringify(entry)),
          // The versions older than the last `keep`, dropped with the write that makes them old.
          c.delete().range(new this.lib!.Range(this.key('history/'), this.key(`history/${pad(Math.max(0, written.serial - this.keep + 1))}`))),
          c.put(this.key('key')).value(ours.id),
          c.delete().key(this.key('moved')),
        )
        .else(c.get(this.key('state')), c.get(this.key('lock')))
        .commit();
    };
    // A commit whose answer was lost may have landed: the state key then holds exactly our text, and that is success.
    const outcome = await this.call('write the state', async (c2) => {
      try {
        return await commit();
      } catch (err) {
        if (!transient(err)) throw err;
        const now = await this.getText(c2, this.key('state')).catch(() => undefined);
        if (now?.text === text) return { succeeded: true, landed: now.revision } as const;
        if (now && now.revision !== seen.revision) return { succeeded: false, responses: undefined } as const;
        throw err;
      }
    });
    if (!outcome.succeeded) {
      const now = await this.call('read the state', (c2) => this.getText(c2, this.key('state')));
      if (this.held) {
        const lock = await this.call('read the lock', (c2) => this.getText(c2, this.key('lock')));
        if (lock.lease !== this.held.leaseId) throw this.lostLockError();
      }
      const other = now.text !== undefined ? parseState(now.text, this.location) : undefined;
      const by = await this.writerOf(other?.serial);
      throw new StateConflictError(
        `the state in ${this.location} changed since this ci read it` +
          (other ? ` (it is now serial ${other.serial}${by ? `, written by ${by}` : ''})` : ' (it was removed)') +
          ': another ci wrote it at the same time; nothing was written',
        'run the command again: it reads the state anew and plans from there',
      );
    }
    const revision = 'landed' in outcome ? outcome.landed : String(outcome.header.revision);
    this.seen = { revision, text };
    return written;
  }

  private async writerOf(serial: number | undefined): Promise<string | undefined> {
    if (serial === undefined) return undefined;
    const e = await this.call('read the history', (c) => this.getText(c, this.key(`history/${pad(serial)}`))).catch(() => undefined);
    if (!e?.text) return undefined;
    try {
      const h = JSON.parse(e.text) as HistoryEntry;
      return `${h.user}@${h.host} (${h.operation}, ${h.time})`;
    } catch {
      return undefined;
    }
  }

  private lostLockError(cause?: Error): StateLockError {
    return new StateLockError(
      `this ci lost its lock on ${this.location}` +
        (cause ? ` (its lease could not be kept alive: ${cause.message})` : ' (it expired, or was removed with ci force-unlock)') +
        '; nothing more is written',
      this.held?.info,
      'run the command again once etcd is reachable: it takes the lock anew and resumes from the last state written',
    );
  }

  async history(): Promise<StateVersion[]> {
    const entries = await this.call('read the history', (c) => c.getAll().prefix(this.key('history/')).sort('Key', 'Ascend').strings());
    return Object.values(entries).map((v) => {
      const h = JSON.parse(v) as HistoryEntry;
      return { serial: h.serial, time: h.time, by: `${h.user}@${h.host}`, operation: h.operation };
    });
  }

  async pull(version?: number): Promise<string | undefined> {
    if (version === undefined) return (await this.call('read the state', (c) => this.getText(c, this.key('state')))).text;
    const e = await this.call('read the history', (c) => this.getText(c, this.key(`history/${pad(version)}`)));
    if (e.text === undefined) return undefined;
    return (JSON.parse(e.text) as HistoryEntry).state;
  }

  async markMoved(marker: MovedMarker): Promise<void> {
    const seen = this.seen;
    if (!seen) throw new InternalError('markMoved before the state was read');
    const r = await this.call('mark the state as moved', (c) =>
      c
        .if(this.key('state'), 'Mod', '==', seen.revision)
        .then(c.put(this.key('moved')).value(JSON.stringify(marker)), c.delete().key(this.key('state')))
        .commit(),
    );
    if (!r.succeeded) throw new StateConflictError(`the state in ${this.location} changed while it was being moved`, 'run `ci state migrate` again');
  }

  async lock(req: { operation: string }, timeoutMs = 0): Promise<Lock> {
    if (this.held) throw new InternalError(`the lock on ${this.location} is already held by this ci`);
    const c = await this.etcd();
    const lease = c.lease(this.ttlSeconds, { autoKeepAlive: true });
    let leaseId: string;
    try {
      leaseId = await this.call('take the lock', () => lease.grant());
    } catch (err) {
      lease.release();
      throw err;
    }
    const info = newHolder(req.operation, { ttlSeconds: this.ttlSeconds });
    const deadline = Date.now() + timeoutMs;
    try {
      await retry(
        async () => {
          const r = await this.call('take the lock', (c2) =>
            c2.if(this.key('lock'), 'Create', '==', 0).then(c2.put(this.key('lock')).value(JSON.stringify(info)).lease(leaseId)).else(c2.get(this.key('lock'))).commit(),
          );
          if (r.succeeded) return;
          const kv = r.responses[0]?.response_range?.kvs?.[0];
          throw this.heldError(kv ? parseLock(kv.value.toString('utf8')) : undefined);
        },
        {
          attempts: Number.MAX_SAFE_INTEGER,
          baseMs: this.opts.pollMinMs ?? 250,
          capMs: this.opts.pollMaxMs ?? 2_000,
          retryable: (err) => err instanceof StateLockError && Date.now() < deadline,
        },
      );
    } catch (err) {
      await lease.revoke().catch(() => lease.release());
      throw err;
    }
    const held = { lease, leaseId, info } as { lease: Lease; leaseId: string; info: LockInfo; lost?: Error };
    lease.on('lost', (err) => (held.lost = err));
    this.held = held;
    return {
      info,
      release: async () => {
        if (this.held !== held) return;
        this.held = undefined;
        // Revoking the lease removes the lock with it; if etcd cannot be reached, the lease expires by itself.
        await lease.revoke().catch(() => lease.release());
      },
    };
  }

  private heldError(holder: LockInfo | undefined): StateLockError {
    if (!holder) return new StateLockError(`the state in ${this.location} is locked`, holder, 'wait for the other ci to finish, then run the command again');
    const ttl = holder.ttlSeconds ?? this.ttlSeconds;
    return new StateLockError(
      `the state in ${this.location} is locked by ${holder.user}@${holder.host} (pid ${holder.pid}, ${holder.operation}) since ${holder.time}`,
      holder,
      `wait for it to finish (--lock-timeout waits); if that ci was killed, its lock expires by itself within ${ttl}s. ` +
        `To break it now, when no ci is running against this cluster: ci force-unlock ${holder.id}`,
    );
  }

  async readLock(): Promise<LockInfo | undefined> {
    const l = await this.call('read the lock', (c) => this.getText(c, this.key('lock')));
    return l.text === undefined ? undefined : parseLock(l.text);
  }

  async forceUnlock(id: string): Promise<void> {
    const l = await this.call('read the lock', (c) => this.getText(c, this.key('lock')));
    if (l.text === undefined) throw new StateError(`the state in ${this.location} is not locked`, 'nothing to unlock');
    const holder = parseLock(l.text);
    if (holder.id !== id) throw new StateError(`the lock on ${this.location} has id ${holder.id}, not ${id}`, 'copy the id from the lock error message');
    const r = await this.call('remove the lock', (c) => c.if(this.key('lock'), 'Mod', '==', l.revision).then(c.delete().key(this.key('lock'))).commit());
    if (!r.succeeded) throw new StateError(`the lock on ${this.location} changed while it was being removed`, 'look at it again: run the command that was refused');
  }
}

function parseLock(text: string): LockInfo {
  try {
    const v = JSON.parse(text);
    if (v && typeof v.id === 'string') return v as LockInfo;
  } catch {
    // fall through: a lock we cannot read is still a lock
  }
  return UNREADABLE_LOCK;
}

