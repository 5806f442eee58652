import type { ClusterState } from './model.js';

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
   * Stores `state` with serial incremented past what is on disk (and a backup copy, where the backend keeps one);
   * refuses another lineage than the stored state's or its backup's. Returns what was written.
   */
  write(state: ClusterState): Promise<ClusterState>;
  /** Takes the lock; fails at once when held (timeoutMs 0), or polls until timeoutMs. */
  lock(info: { operation: string }, timeoutMs?: number): Promise<Lock>;
  /** Breaks the lock with this id (the holder is known to be gone). */
  forceUnlock(id: string): Promise<void>;
}
