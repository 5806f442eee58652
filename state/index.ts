export * from './model.js';
export * from './backend.js';
export * from './paths.js';
export { LocalStateBackend, createState, parseState, describeState, withStateLock, parseDuration, takeoverMessage, type RestoreResult } from './local.js';
export { stateKeys, FileKeySource, type KeySource, type StateKey } from './keys.js';
