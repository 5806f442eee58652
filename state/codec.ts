/**
 * The state file's encoding, the one place where a state turns into bytes at rest and back. It is JSON; the hook
 * outputs (join tokens and the like) are sealed (state/seal.ts) under a key from a KeySource, authenticated with the
 * state's lineage. In memory a state holds its outputs in clear; every output opened here is registered as a secret,
 * so whatever prints it later masks it.
 *
 * Version 2 files hold `sealedOutputs` (absent when there are no outputs: such a state needs no key). Version 1
 * files, with `outputs` in clear, are still read and are sealed on their next write.
 */
import { StateConflictError, StateError } from '../engine/kernel/errors.js';
import { registerSecret } from '../engine/kernel/redact.js';
import type { KeySource, StateKey } from './keys.js';
import { STATE_VERSION, type ClusterState } from './model.js';
import { SEAL_ALGORITHM, isSealedBox, open, seal, type SealedBox } from './seal.js';

const READABLE_VERSIONS: readonly number[] = [1, STATE_VERSION];

/** A state file as stored, before its outputs are opened. */
export type StoredState = Omit<ClusterState, 'version' | 'outputs'> & {
  version: number;
  /** Version 1 only: outputs in clear. */
  outputs?: Record<string, string>;
  sealedOutputs?: SealedBox;
};

/** What to do about a damaged file: a state is put back from its backup; a damaged backup needs a look. */
function damagedHint(where: string): string {
  if (where.startsWith('etcd ')) return 'put a good version back: see `ci state history`, then `ci state pull --version N > state.json` and `ci state push --force state.json`';
  return where.endsWith('.backup')
    ? `look at ${where}; it cannot be used to restore the state`
    : `put its backup back with \`ci state restore --state ${where}\` (the damaged file is moved aside, not deleted)`;
}

/** The structure of a state file, outputs left as stored: enough to check lineage and serial without any key. */
export function parseState(text: string, where: string): StoredState {
  let v: any;
  try {
    v = JSON.parse(text);
  } catch (err: any) {
    throw new StateError(`state ${where} is not valid JSON: ${err?.message ?? err}`, damagedHint(where));
  }
  if (!v || typeof v !== 'object' || typeof v.lineage !== 'string' || typeof v.serial !== 'number' || typeof v.hosts !== 'object') {
    throw new StateError(`state ${where} is not a cloudimage state file`, damagedHint(where));
  }
  if (!READABLE_VERSIONS.includes(v.version)) {
    throw new StateError(
      `state ${where} has format version ${v.version}; this ci reads versions ${READABLE_VERSIONS.join(' and ')}`,
      'use the ci release that wrote it',
    );
  }
  if (v.sealedOutputs !== undefined && !isSealedBox(v.sealedOutputs)) {
    throw new StateError(`state ${where} has a damaged sealedOutputs field`, damagedHint(where));
  }
  v.cmdsRun ??= [];
  // Before providers owned their data, local hosts recorded `local: {kind}`: the same data, under the provider's name for it now.
  for (const h of Object.values(v.hosts as Record<string, any>)) {
    if (h && typeof h === 'object' && h.local && h.machine === undefined) {
      h.machine = h.local;
      delete h.local;
    }
  }
  return v as StoredState;
}

/**
 * The state with its outputs opened. Without keys the outputs are left out (for commands that only look at hosts):
 * such a state must not be written back.
 */
export async function decodeState(text: string, where: string, keys: KeySource | undefined): Promise<ClusterState> {
  const { sealedOutputs, outputs: clear, version: _version, ...rest } = parseState(text, where);
  let outputs: Record<string, string> = {};
  if (keys) {
    outputs = { ...(clear ?? {}) };
    if (sealedOutputs) Object.assign(outputs, await openOutputs(sealedOutputs, rest.lineage, where, keys));
  }
  for (const value of Object.values(outputs)) registerSecret(value);
  return { ...rest, version: STATE_VERSION, outputs } as ClusterState;
}

/**
 * The file text for a state. Outputs are sealed with the key the state on disk (`previous`) is sealed with, so a
 * state shared between machines stays readable by all of them; a state without one gets the source's sealing key.
 */
export async function encodeState(state: ClusterState, keys: KeySource, previous?: string | PreviousSeal, serial?: number): Promise<string> {
  return (await encodeStateSealed(state, keys, previous, serial)).text;
}

/** What a writer knows of the stored state's seal without its text: the key its outputs are sealed with, if any. */
export interface PreviousSeal {
  keyId?: string;
}

/**
 * encodeState, also saying which key sealed the outputs (none: no outputs), for the writer's next write. `serial`
 * replaces the state's own: a writer passes the state it was given, not a copy made before its waits.
 */
export async function encodeStateSealed(state: ClusterState, keys: KeySource, previous?: string | PreviousSeal, serial?: number): Promise<{ text: string; keyId?: string }> {
  // Every await comes first: the document is then made in one synchronous step, so it holds the state of one moment
  // even when its writer goes on changing it (the executor records results while a write is under way).
  const hasOutputs = () => Object.keys(state.outputs ?? {}).length > 0;
  let key = hasOutputs() ? await keyForWrite(state, keys, previous) : undefined;
  // Outputs recorded while the first key was not needed: one more wait, after which there is a key whatever comes.
  if (!key && hasOutputs()) key = await keyForWrite(state, keys, previous);
  const doc: Record<string, unknown> = {};
  let keyId: string | undefined;
  for (const [k, v] of Object.entries(state)) {
    if (k === 'version') doc.version = STATE_VERSION;
    else if (k === 'serial') doc.serial = serial ?? v;
    else if (k === 'outputs') {
      if (key && hasOutputs()) {
        const box = seal(Buffer.from(JSON.stringify(state.outputs), 'utf8'), key, outputsContext(state.lineage));
        keyId = box.keyId;
        doc.sealedOutputs = box;
      }
    } else doc[k] = v;
  }
  return { text: JSON.stringify(doc, null, 2) + '\n', ...(keyId ? { keyId } : {}) };
}

function outputsContext(lineage: string): string {
  return `cloudimage state outputs\nlineage ${lineage}`;
}

async function keyForWrite(state: ClusterState, keys: KeySource, previous: string | PreviousSeal | undefined): Promise<StateKey> {
  let keyId: string | undefined = typeof previous === 'object' ? previous.keyId : undefined;
  if (typeof previous === 'string' && previous.includes('"sealedOutputs"')) {
    try {
      keyId = parseState(previous, 'previous').sealedOutputs?.keyId;
    } catch {
      // An unreadable previous version names no key; the writer reports it on its own terms.
    }
  }
  if (!keyId) return keys.sealingKey();
  const key = await keys.findKey(keyId);
  if (!key) throw missingKey(`state of cluster ${state.cluster}`, keyId, keys);
  return key;
}

async function openOutputs(box: SealedBox, lineage: string, where: string, keys: KeySource): Promise<Record<string, string>> {
  if (box.alg !== SEAL_ALGORITHM) {
    throw new StateError(`state ${where} has hook outputs sealed with ${box.alg}, which this ci cannot open`, 'use the ci release that wrote it');
  }
  const key = await keys.findKey(box.keyId);
  if (!key) throw missingKey(`state ${where}`, box.keyId, keys);
  const plain = open(box, key, outputsContext(lineage));
  let outputs: unknown;
  try {
    outputs = plain === undefined ? undefined : JSON.parse(plain.toString('utf8'));
  } catch {
    outputs = undefined;
  }
  if (!outputs || typeof outputs !== 'object' || Object.values(outputs).some((v) => typeof v !== 'string')) {
    throw new StateError(
      `state ${where}: its sealed hook outputs do not authenticate with key ${box.keyId}: the file was altered or damaged`,
      damagedHint(where),
    );
  }
  return outputs as Record<string, string>;
}

function missingKey(what: string, keyId: string, keys: KeySource): StateError {
  return new StateError(
    keys.holdsOneKey ? `${what} has hook outputs sealed with key ${keyId}, which is not ${keys.location}` : `${what} has hook outputs sealed with key ${keyId}, which is not in ${keys.location}`,
    keys.missingKeyHint(keyId),
  );
}

/**
 * The serial a write stores over `stored` (undefined: nothing stored yet): one past both, or exactly the state's
 * with `keepSerial` (a migration), which must then be newer. Another lineage is refused: it is another cluster's.
 */
export function nextSerial(state: ClusterState, stored: Pick<StoredState, 'cluster' | 'lineage' | 'serial'> | undefined, where: string, opts: { keepSerial?: boolean; hint: string }): number {
  if (!stored) return opts.keepSerial ? state.serial : state.serial + 1;
  if (stored.lineage !== state.lineage) {
    throw new StateError(
      `refusing to write state with lineage ${state.lineage} over ${where}, which holds lineage ${stored.lineage} (cluster ${stored.cluster})`,
      opts.hint,
    );
  }
  if (opts.keepSerial) {
    if (state.serial <= stored.serial) {
      throw new StateConflictError(`${where} already holds serial ${stored.serial} of this state, not older than ${state.serial}`, 'nothing was written: the state there is as new or newer');
    }
    return state.serial;
  }
  return Math.max(state.serial, stored.serial) + 1;
}
