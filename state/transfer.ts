/**
 * States moved as a whole: pushed from a file (Terraform's `state push`) and migrated between backends. Both keep
 * the lineage (another cluster's state is never put in place), and neither goes back in time: a push older than the
 * stored state is refused unless forced, and a migration keeps the serial exactly.
 */
import { StateConflictError, StateError, StateIdentityError } from '../engine/kernel/errors.js';
import type { MovedMarker, StateBackend } from './backend.js';
import type { StoredState } from './codec.js';
import { describeState, withStateLock } from './local.js';
import type { ClusterState } from './model.js';

/** Refuses a pushed state that is another cluster's, or older than the one stored (unless `force`). */
type Identity = Pick<StoredState, 'cluster' | 'lineage' | 'serial' | 'hosts'>;

export function checkPush(incoming: Identity, current: Identity | undefined, file: string, where: string, force: boolean): void {
  if (!current) return;
  if (incoming.lineage !== current.lineage || incoming.cluster !== current.cluster) {
    throw new StateIdentityError(
      `${file} (${describeState(incoming)}) is not a version of the state in ${where} (${describeState(current)})`,
      'push only a state pulled from this cluster\'s backend; a state of another lineage is another cluster, and is never pushed over it',
    );
  }
  if (incoming.serial < current.serial && !force) {
    throw new StateConflictError(
      `${file} is serial ${incoming.serial}, older than serial ${current.serial} stored in ${where}: it was written since ${file} was pulled`,
      'pull the state again and redo the change on it; to put the older version back on purpose, add --force',
    );
  }
}

/** Pushes `text` (a state as `ci state pull` prints it) to `backend` under its lock. Returns what was written. */
export async function pushState(backend: StateBackend, text: string, file: string, opts: { force?: boolean; lockTimeoutMs?: number } = {}): Promise<ClusterState> {
  // Its hook outputs must open with this backend's key: a state sealed elsewhere would be unreadable once pushed.
  const state = await backend.decode(text, file);
  return withStateLock(backend, 'push', opts.lockTimeoutMs ?? 0, async () => {
    const current = await backend.read().catch(async (err) => {
      // A backend whose state went elsewhere, or was lost, takes a push of the same lineage: that is how it comes back.
      if (!(err instanceof StateIdentityError)) throw err;
      return (await backend.probe()).stored;
    });
    checkPush(state, current, file, backend.location, !!opts.force);
    return backend.write(state);
  });
}

export interface MigrateResult {
  state: ClusterState;
  /** The target already held exactly this state (a migration stopped before it marked the source). */
  resumed: boolean;
}

/** The target saw this very version leave (its marker names the same lineage and serial): it may come back. */
function cameBack(moved: MovedMarker | undefined, state: ClusterState): boolean {
  return !!moved && moved.lineage === state.lineage && moved.serial === state.serial;
}

/** Copies the state from `from` to `to` with its lineage and serial, then leaves a marker in `from` naming `to`. */
export async function migrateState(from: StateBackend, to: StateBackend, lockTimeoutMs = 0): Promise<MigrateResult> {
  return withStateLock(from, 'migrate', lockTimeoutMs, () =>
    withStateLock(to, 'migrate', lockTimeoutMs, async () => {
      const state = await from.read();
      if (!state) {
        const moved = (await from.probe()).moved;
        throw new StateError(
          moved ? `there is no state in ${from.location} to migrate: it was moved to ${moved.movedTo}` : `there is no state in ${from.location} to migrate`,
          moved ? 'it is already there' : 'check the Clusterfile (-f) and --backend: the state is migrated from the backend it is in now',
        );
      }
      const there = await to.probe();
      let resumed = false;
      if (there.stored) {
        if (there.stored.lineage !== state.lineage) {
          throw new StateIdentityError(
            `${to.location} already holds another state of this cluster (${describeState(there.stored)}), not lineage ${state.lineage}`,
            'nothing was changed; look at both states, and move the one that is not the cluster\'s out of the way first',
          );
        }
        if (there.stored.serial > state.serial) {
          throw new StateConflictError(`${to.location} already holds a newer version of this state (serial ${there.stored.serial} > ${state.serial})`, 'nothing was changed: the newer one is the state; migrate from there');
        }
        resumed = there.stored.serial === state.serial;
      } else if (there.lastSerial !== undefined && there.lastSerial >= state.serial && !cameBack(there.moved, state)) {
        throw new StateConflictError(
          `${to.location} kept versions of this state up to serial ${there.lastSerial}, which is not older than serial ${state.serial} in ${from.location}`,
          'nothing was changed: the state in the source is older than one the target saw; look at `ci state history` there',
        );
      }
      const written = resumed ? state : await to.write(state, { keepSerial: true });
      const marker: MovedMarker = { movedTo: to.location, time: new Date().toISOString(), lineage: state.lineage, serial: written.serial };
      await from.markMoved(marker);
      return { state: written, resumed };
    }),
  );
}
