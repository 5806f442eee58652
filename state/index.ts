export * from './model.js';
export * from './backend.js';
export * from './paths.js';
export { LocalStateBackend, createState, parseState, describeState, withStateLock, parseDuration, takeoverMessage, type RestoreResult } from './local.js';
export { EtcdStateBackend } from './etcd.js';
export { openStateBackend, effectiveBackend, usingBackend, BACKEND_TYPES } from './open.js';
export { stateKeys, FileKeySource, PassphraseKeySource, PASSPHRASE_ENV, type KeySource, type StateKey } from './keys.js';
