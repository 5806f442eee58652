/**
 * The local-file state backend: `state.json` (0600) replaced atomically, a second copy of every write kept as
 * `state.json.backup`, and a lock file next to it. The lock is created with link(2) from a complete temp file, so
 * it appears atomically and is never seen half-written: a second `ci` reads who holds it and since when.
 *
 * The backup is what a deleted, damaged or overwritten state.json is restored from (`ci state restore`), so it is
 * complete: the latest state, not the one before. It is also a witness of the cluster's identity: a backup without
 * a state, or of another lineage than the state, means the state was lost or replaced, and the cluster may still be
 * running. Reads refuse then (rather than report "never applied"), and writes never put a state of another lineage
 * next to the backup or over it.
 *
 * Both files are encoded by state/codec.ts, which keeps hook outputs sealed at rest.
 */
import { promises as fs, readFileSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { InternalError, StateError, StateIdentityError, StateLockError, UsageError } from '../engine/kernel/errors.js';
import { exists, tempSibling, writeFileAtomic, writeFilesAtomic } from '../engine/kernel/fsutil.js';
import { retry } from '../engine/kernel/retry.js';
import type { Lock, LockInfo, MovedMarker, StateBackend, StateProbe, StateVersion } from './backend.js';
import { movedError, parseMoved } from './moved.js';
import { decodeState, encodeStateSealed, nextSerial, parseState, type StoredState } from './codec.js';
import { stateKeys, type KeySource } from './keys.js';
import { emptyState, type ClusterState, type ProviderName } from './model.js';
import { backupPathFor, lockPathFor } from './paths.js';
import { machineId, newHolder, UNREADABLE_LOCK } from './holder.js';

export { parseState } from './codec.js';

/** A new state with a fresh lineage, for a cluster applied for the first time. */
export function createState(cluster: string, provider: ProviderName): ClusterState {
  return emptyState(cluster, provider, randomUUID());
}

function tryParseState(text: string, where: string): StoredState | undefined {
  try {
    return parseState(text, where);
  } catch {
    return undefined;
  }
}

/** `cluster demo, lineage 1f2e..., serial 7, 3 hosts` */
export function describeState(s: Pick<ClusterState, 'cluster' | 'lineage' | 'serial' | 'hosts'>): string {
  const n = Object.keys(s.hosts).length;
  return `cluster ${s.cluster}, lineage ${s.lineage}, serial ${s.serial}, ${n} host${n === 1 ? '' : 's'}`;
}

function describeBackup(text: string, where: string): string {
  const b = tryParseState(text, where);
  return b ? describeState(b) : 'damaged, so its cluster cannot be told';
}

/** `base`, or `base-2`, `base-3`... whichever does not exist yet. */
/** What tells one version of a file from another without reading it: inode, size and change times, in ns. */
interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

async function statOf(path: string): Promise<FileIdentity | undefined> {
  try {
    const st = await fs.stat(path, { bigint: true });
    return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
  } catch {
    return undefined;
  }
}

const sameFile = (a: FileIdentity | undefined, b: FileIdentity) =>
  a !== undefined && a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

async function freeName(base: string): Promise<string> {
  let name = base;
  for (let i = 2; await exists(name); i++) name = `${base}-${i}`;
  return name;
}

/** What a command says when it took over a lock its holder left behind. */
export function takeoverMessage(holder: LockInfo, statePath: string): string {
  return `took over the lock on ${statePath} of ${holder.user}@${holder.host} (pid ${holder.pid}, ${holder.operation} since ${holder.time}): that process is no longer running`;
}

/**
 * The holder is a process of this machine that is no longer running: the same machine id (or, for a lock without
 * one, the same host name) and no such pid. A pid reused by another process looks alive, which only keeps a lock.
 */
function leftByDeadProcess(holder: LockInfo): boolean {
  const here = machineId();
  const sameMachine = holder.machine !== undefined && here !== undefined ? holder.machine === here : holder.host === hostname();
  return sameMachine && holder.pid > 0 && holder.pid !== process.pid && !isAlive(holder.pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err: any) {
    return err?.code === 'EPERM';
  }
}

export interface LocalBackendOptions {
  /** Poll interval bounds while waiting for a lock. */
  pollMinMs?: number;
  pollMaxMs?: number;
  /** Where the key that seals hook outputs comes from (default: the key files under $CI_HOME/keys). */
  keys?: KeySource;
  /** Read states without opening their hook outputs, so no key is needed; such a backend refuses to write. */
  withoutOutputs?: boolean;
}

export interface RestoreResult {
  /** The state now in place (the backup's content; hook outputs left sealed). */
  state: StoredState;
  /** Where the state.json that was there went. */
  movedAside?: string;
  /** state.json already held exactly the backup. */
  unchanged: boolean;
}

export class LocalStateBackend implements StateBackend {
  readonly path: string;
  readonly lockPath: string;
  readonly backupPath: string;
  /** Lineage of the backup as last read or written by this backend; saves re-reading it on every write. */
  private backupLineage: string | undefined;
  /** The state file this backend wrote last, as it was right after (another writer's rename makes another file). */
  private lastWritten: { file: FileIdentity; stored: Pick<StoredState, 'cluster' | 'lineage' | 'serial'>; keyId?: string } | undefined;
  private readonly keys: KeySource;

  constructor(path: string, private readonly opts: LocalBackendOptions = {}) {
    this.path = path;
    this.lockPath = lockPathFor(path);
    this.backupPath = backupPathFor(path);
    this.keys = opts.keys ?? stateKeys();
  }

  get location(): string {
    return this.path;
  }

  /** Left here when the state was migrated to another backend. */
  get movedPath(): string {
    return `${this.path}.moved`;
  }

  async read(): Promise<ClusterState | undefined> {
    const text = await this.readText(this.path);
    const backupText = await this.readText(this.backupPath);
    if (text === undefined) {
      if (backupText === undefined) {
        const moved = await this.readText(this.movedPath);
        if (moved !== undefined) throw movedError(parseMoved(moved), this.path);
        return undefined;
      }
      throw new StateIdentityError(
        `there is no state at ${this.path}, but its backup exists (${describeBackup(backupText, this.backupPath)}): ` +
          'the state was lost or moved, and the cluster may still be running',
        `put the backup back with \`ci state restore --state ${this.path}\`; if that cluster is really gone, move ${this.backupPath} out of the way first`,
      );
    }
    const state = parseState(text, this.path);
    // A damaged backup says nothing about identity; the state is the truth then, and its next write replaces it.
    const backup = backupText === undefined ? undefined : tryParseState(backupText, this.backupPath);
    if (backup && backup.lineage !== state.lineage) {
      throw new StateIdentityError(
        `state ${this.path} (${describeState(state)}) and its backup (${describeState(backup)}) have different lineages: ` +
          'one of them is another cluster\'s state',
        `if state.json was replaced by mistake, put the backup back with \`ci state restore --state ${this.path}\` ` +
          `(state.json is moved aside, not deleted); if the backup is the stranger, move ${this.backupPath} out of the way`,
      );
    }
    if (backup) this.backupLineage = backup.lineage;
    return decodeState(text, this.path, this.opts.withoutOutputs ? undefined : this.keys);
  }

  async write(state: ClusterState, opts: { keepSerial?: boolean } = {}): Promise<ClusterState> {
    if (this.opts.withoutOutputs) throw new InternalError(`state ${this.path} was read without its hook outputs and cannot be written`);
    await fs.mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    // The file as this backend last wrote it (same inode, size and times) is not read again: an apply writes the
    // state many times, and at 50,000 hosts reading and checking 250 MB took longer than writing it.
    const mine = this.lastWritten && sameFile(await statOf(this.path), this.lastWritten.file) ? this.lastWritten : undefined;
    const previous = mine ? undefined : await this.readText(this.path);
    const onDisk = mine?.stored ?? (previous !== undefined ? parseState(previous, this.path) : undefined);
    const serial = nextSerial(state, onDisk, this.path, { keepSerial: opts.keepSerial, hint: 'this is another cluster\'s state: check --state and the Clusterfile name' });
    await this.checkBackupLineage(state, onDisk !== undefined);
    const written: ClusterState = { ...state, serial };
    // Sealed with the key the state on disk uses, so every machine that reads it now still can.
    const { text, keyId } = await encodeStateSealed(state, this.keys, mine ? { keyId: mine.keyId } : previous, serial);
    // Encoded once for both files: at 50,000 hosts each encoding of the text is a third of a second.
    const bytes = Buffer.from(text, 'utf8');
    this.lastWritten = undefined;
    // Backup first: a crash between the two leaves the backup one write ahead of the state, never a state without it.
    await writeFilesAtomic([
      { path: this.backupPath, data: bytes, mode: 0o600 },
      { path: this.path, data: bytes, mode: 0o600 },
    ]);
    this.backupLineage = state.lineage;
    const file = await statOf(this.path);
    if (file) this.lastWritten = { file, stored: { cluster: written.cluster, lineage: written.lineage, serial }, keyId };
    // A state written here again (migrated back) is the state: the note that it had gone elsewhere goes.
    await fs.rm(this.movedPath, { force: true });
    return written;
  }

  async pull(version?: number): Promise<string | undefined> {
    const text = await this.readText(this.path);
    if (version === undefined || text === undefined) return text;
    const serial = parseState(text, this.path).serial;
    if (serial === version) return text;
    throw new StateError(
      `the local backend keeps only the latest state (serial ${serial}) and its backup copy, not serial ${version}`,
      'earlier versions are kept by the etcd backend (spec.backend in the Clusterfile): see `ci state history` there',
    );
  }

  async history(): Promise<StateVersion[]> {
    const text = await this.readText(this.path);
    if (text === undefined) return [];
    const st = await fs.stat(this.path);
    return [{ serial: parseState(text, this.path).serial, time: st.mtime.toISOString(), by: '', operation: '' }];
  }

  async probe(): Promise<StateProbe> {
    const text = await this.readText(this.path);
    const moved = await this.readText(this.movedPath);
    return {
      ...(text !== undefined ? { stored: parseState(text, this.path) } : {}),
      ...(moved !== undefined ? { moved: parseMoved(moved) } : {}),
    };
  }

  /**
   * The state went to another backend: the marker is written first, then the state and its backup go, so no moment
   * shows this place as a cluster never applied.
   */
  async markMoved(marker: MovedMarker): Promise<void> {
    await writeFileAtomic(this.movedPath, JSON.stringify(marker, null, 2) + '\n', 0o600);
    await fs.rm(this.backupPath, { force: true });
    await fs.rm(this.path, { force: true });
    this.backupLineage = undefined;
  }

  decode(text: string, where: string): Promise<ClusterState> {
    return decodeState(text, where, this.keys);
  }

  async close(): Promise<void> {}

  /**
   * A backup of another lineage is never overwritten, and no state is created next to one. A damaged backup is
   * only replaced by a good state of this lineage, never answered with a new state.json.
   */
  private async checkBackupLineage(state: ClusterState, replacing: boolean): Promise<void> {
    if (this.backupLineage === state.lineage) return;
    const text = await this.readText(this.backupPath);
    if (text === undefined) return;
    const backup = tryParseState(text, this.backupPath);
    if (!backup) {
      if (replacing) return;
      throw new StateError(
        `refusing to create ${this.path}: its backup ${this.backupPath} is damaged, so it cannot be told whether it belongs to a running cluster`,
        `look at ${this.backupPath}; move it out of the way if that cluster is gone`,
      );
    }
    if (backup.lineage !== state.lineage) {
      throw new StateIdentityError(
        `refusing to write state with lineage ${state.lineage} next to ${this.backupPath}, which holds lineage ${backup.lineage} (${describeState(backup)})`,
        `the backup is another state of this cluster: put it back with \`ci state restore --state ${this.path}\`, or move it out of the way if that cluster is gone`,
      );
    }
    this.backupLineage = backup.lineage;
  }

  /**
   * Puts the backup back as the state. Nothing is deleted: a current state.json is first renamed to a timestamped
   * name next to it. The backup stays as it is. Refused when the backup is of another cluster than `cluster`.
   */
  async restoreBackup(opts: { cluster?: string } = {}): Promise<RestoreResult> {
    const text = await this.readText(this.backupPath);
    if (text === undefined) {
      throw new StateError(`there is no backup at ${this.backupPath} to restore`, `check -f or --state: the backup sits next to its state, as ${this.backupPath.split('/').pop()}`);
    }
    const backup = parseState(text, this.backupPath);
    if (opts.cluster !== undefined && backup.cluster !== opts.cluster) {
      throw new StateIdentityError(
        `the backup ${this.backupPath} is the state of cluster ${backup.cluster}, not of ${opts.cluster}`,
        `restore it with the Clusterfile of ${backup.cluster} (-f), or name the right state with --state`,
      );
    }
    const current = await this.readText(this.path);
    if (current === text) return { state: backup, unchanged: true };
    let movedAside: string | undefined;
    if (current !== undefined) {
      movedAside = await freeName(`${this.path}.aside-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      await fs.rename(this.path, movedAside);
    }
    await writeFileAtomic(this.path, text, 0o600);
    this.backupLineage = backup.lineage;
    return { state: backup, movedAside, unchanged: false };
  }

  private async readText(p: string): Promise<string | undefined> {
    try {
      return await fs.readFile(p, 'utf8');
    } catch (err: any) {
      if (err?.code === 'ENOENT') return undefined;
      throw new StateError(`cannot read state ${p}: ${err?.message ?? err}`);
    }
  }

  async readLock(): Promise<LockInfo | undefined> {
    try {
      return JSON.parse(await fs.readFile(this.lockPath, 'utf8')) as LockInfo;
    } catch (err: any) {
      if (err?.code === 'ENOENT') return undefined;
      // A lock file we cannot parse is still a lock: report it rather than break it.
      return UNREADABLE_LOCK;
    }
  }

  private async tryLock(info: LockInfo): Promise<boolean> {
    await fs.mkdir(dirname(this.lockPath), { recursive: true, mode: 0o700 });
    const tmp = tempSibling(this.lockPath);
    await fs.writeFile(tmp, JSON.stringify(info, null, 2) + '\n', { mode: 0o644 });
    try {
      await fs.link(tmp, this.lockPath);
      return true;
    } catch (err: any) {
      if (err?.code === 'EEXIST') return false;
      throw new StateError(`cannot create lock ${this.lockPath}: ${err?.message ?? err}`);
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  private heldError(holder: LockInfo | undefined): StateLockError {
    if (!holder) return new StateLockError(`state ${this.path} is locked`, holder);
    const stale = leftByDeadProcess(holder);
    const who = `${holder.user}@${holder.host} (pid ${holder.pid}, ${holder.operation})`;
    const msg =
      `state ${this.path} is locked by ${who} since ${holder.time}` +
      (stale ? `; that process is no longer running, so the lock looks stale` : '');
    return new StateLockError(
      msg,
      holder,
      `wait for it to finish, or if no ci is running against this cluster: ci force-unlock ${holder.id} --state ${this.path}`,
    );
  }

  async lock(req: { operation: string }, timeoutMs = 0): Promise<Lock> {
    const info = newHolder(req.operation);
    const deadline = Date.now() + timeoutMs;
    let tookOver: LockInfo | undefined;
    await retry(
      async () => {
        if (await this.tryLock(info)) return;
        const holder = await this.readLock();
        if (holder && holder.id !== '(unreadable)' && leftByDeadProcess(holder) && (await this.removeIfStill(holder)) && (await this.tryLock(info))) {
          tookOver = holder;
          return;
        }
        throw this.heldError(await this.readLock());
      },
      {
        attempts: Number.MAX_SAFE_INTEGER,
        baseMs: this.opts.pollMinMs ?? 100,
        capMs: this.opts.pollMaxMs ?? 1000,
        retryable: (err) => err instanceof StateLockError && Date.now() < deadline,
      },
    );
    return new HeldLock(this, info, tookOver);
  }

  /**
   * Removes the lock file if it is still `holder`'s. It is moved aside first (rename is atomic), so of two commands
   * taking over the same dead lock only one removes it; one that moved a newer, live lock aside puts it back.
   */
  private async removeIfStill(holder: LockInfo): Promise<boolean> {
    const aside = tempSibling(this.lockPath);
    try {
      await fs.rename(this.lockPath, aside);
    } catch (err: any) {
      if (err?.code === 'ENOENT') return false;
      throw new StateError(`cannot take over lock ${this.lockPath}: ${err?.message ?? err}`);
    }
    try {
      let moved: LockInfo | undefined;
      try {
        moved = JSON.parse(await fs.readFile(aside, 'utf8')) as LockInfo;
      } catch {
        // Not the lock we judged: it goes back below.
      }
      if (moved?.id === holder.id) return true;
      await fs.link(aside, this.lockPath).catch(() => undefined);
      return false;
    } finally {
      await fs.rm(aside, { force: true });
    }
  }

  async forceUnlock(id: string): Promise<void> {
    const holder = await this.readLock();
    if (!holder) throw new StateError(`state ${this.path} is not locked`, 'nothing to unlock');
    if (holder.id !== id) {
      throw new StateError(`the lock on ${this.path} has id ${holder.id}, not ${id}`, 'copy the id from the lock error message');
    }
    await fs.rm(this.lockPath, { force: true });
  }

  /** Removes our own lock file (only if it is still ours). */
  async releaseIfOurs(id: string): Promise<void> {
    const holder = await this.readLock();
    if (holder?.id === id) await fs.rm(this.lockPath, { force: true });
  }

  releaseIfOursSync(id: string): void {
    try {
      const text = readLockText(this.lockPath);
      if (text && JSON.parse(text).id === id) unlinkSync(this.lockPath);
    } catch {
      // Best effort on process exit.
    }
  }
}

function readLockText(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

class HeldLock implements Lock {
  private released = false;
  private readonly onExit: () => void;

  constructor(
    private readonly backend: LocalStateBackend,
    readonly info: LockInfo,
    readonly tookOver?: LockInfo,
  ) {
    // A crash or an exit that skips `finally` must not leave the cluster locked.
    this.onExit = () => backend.releaseIfOursSync(info.id);
    process.once('exit', this.onExit);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    process.removeListener('exit', this.onExit);
    await this.backend.releaseIfOurs(this.info.id);
  }
}

/** Runs `fn` holding the state lock; releases it on every exit path. */
export async function withStateLock<T>(
  backend: StateBackend,
  operation: string,
  timeoutMs: number,
  fn: (lock: Lock) => Promise<T>,
): Promise<T> {
  const lock = await backend.lock({ operation }, timeoutMs);
  try {
    return await fn(lock);
  } finally {
    await lock.release();
  }
}

/** `30s`, `5m`, `1500ms`, `0` -> milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`invalid duration "${text}"`, 'use a number with a unit, e.g. 30s, 2m, 500ms');
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!);
}
