import type { ClusterState } from './model.js';
import type { StoredState } from './codec.js';

/** Who holds a state lock; stored readable so a second user sees who to ask. */
export interface LockInfo {
  id: string;
  user: string;
  host: string;
  pid: number;
  /** What the holder is doing: `apply`, `destroy`, `plan`... */
  operation: string;
  /** ISO time the lock was taken. */
  time: string;
  /** /etc/machine-id of the holder's machine, when it has one: a pid means something only there. */
  machine?: string;
  /** For a lock that expires by itself (a lease): how long after its holder stops renewing it. */
  ttlSeconds?: number;
}

/** One version of a state a backend keeps. */
export interface StateVersion {
  serial: number;
  /** ISO time it was written. */
  time: string;
  /** `user@host` of the writer. */
  by: string;
  /** What the writer was doing: `apply`, `destroy`, `migrate`, `push`... */
  operation: string;
}

/** Left where a state was, once it was migrated to another backend: that place never reads as "never applied". */
export interface MovedMarker {
  movedTo: string;
  time: string;
  lineage: string;
  serial: number;
}

/** What a backend holds, looked at without refusing anything (for migrations, which decide for themselves). */
export interface StateProbe {
  stored?: StoredState;
  moved?: MovedMarker;
  /** The highest serial the backend has kept a version of, when it keeps versions. */
  lastSerial?: number;
}

export interface Lock {
  readonly info: LockInfo;
  /** The lock this one replaced: left by a process of this machine that is no longer running. */
  readonly tookOver?: LockInfo;
  /** Idempotent. */
  release(): Promise<void>;
}

/** Where states are kept. Hook outputs are sealed at rest (state/codec.ts) and in clear in the states returned. */
export interface StateBackend {
  /** Human-readable location, used in messages. */
  readonly location: string;
  /**
   * The stored state, or undefined when the cluster was never applied. A backend that sees signs the cluster was
   * applied (a backup without a state, a backup of another lineage) throws StateIdentityError instead: a state
   * that might belong to a live cluster is never reported as absent.
   */
  read(): Promise<ClusterState | undefined>;
  /**
   * Stores `state` with serial incremented past what is stored (and a backup copy, where the backend keeps one);
   * refuses another lineage than the stored state's or its backup's, and a stored state that changed since this
   * backend read it (StateConflictError) where the store can tell. With `keepSerial`, the serial is kept as given and
   * must be newer than the stored one (a migration). Returns what was written. The caller may go on changing
   * `state` while the write is under way: a backend makes its text in one synchronous step after its last wait
   * before encoding (state/codec.ts), so what it stores is the state of one moment, and it keeps no reference to it.
   */
  write(state: ClusterState, opts?: { keepSerial?: boolean }): Promise<ClusterState>;
  /** The state as stored (hook outputs sealed), or a kept earlier version by serial; undefined when there is none. */
  pull(version?: number): Promise<string | undefined>;
  /** The versions kept, oldest first (the local backend keeps only the latest). */
  history(): Promise<StateVersion[]>;
  /** What is stored, without any of read()'s refusals. */
  probe(): Promise<StateProbe>;
  /** After a migration: the state read last is replaced by a marker saying where it went. */
  markMoved(marker: MovedMarker): Promise<void>;
  /** A state's text (as `pull` gives it) with its hook outputs opened by this backend's key. */
  decode(text: string, where: string): Promise<ClusterState>;
  /** Closes connections (a remote backend); idempotent. */
  close(): Promise<void>;
  /** Takes the lock; fails at once when held (timeoutMs 0), or polls until timeoutMs. */
  lock(info: { operation: string }, timeoutMs?: number): Promise<Lock>;
  /** Breaks the lock with this id (the holder is known to be gone). */
  forceUnlock(id: string): Promise<void>;
}
