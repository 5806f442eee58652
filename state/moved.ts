/** The marker a state leaves where it was, once migrated: where it went, so that place is never read as empty. */
import { StateIdentityError } from '../engine/kernel/errors.js';
import type { MovedMarker } from './backend.js';

export function parseMoved(text: string): MovedMarker {
  try {
    const v = JSON.parse(text);
    if (v && typeof v.movedTo === 'string') return v as MovedMarker;
  } catch {
    // below
  }
  return { movedTo: '(unreadable marker)', time: '?', lineage: '?', serial: 0 };
}

export function movedError(m: MovedMarker, location: string): StateIdentityError {
  return new StateIdentityError(
    `the state of this cluster is no longer in ${location}: it was moved to ${m.movedTo} at ${m.time} (lineage ${m.lineage}, serial ${m.serial})`,
    m.movedTo.startsWith('etcd ')
      ? 'use that backend: spec.backend in the Clusterfile (type: etcd), or --backend etcd'
      : 'use that backend: remove spec.backend from the Clusterfile (or set type: local), or pass --backend local',
  );
}
