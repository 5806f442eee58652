/** The registry module's public surface. */
export { RegistryClient, type ClientOptions } from './client.js';
export { pushImage, type PushResult } from './push.js';
export { pullImage, ensureImage, fetchRemoteImage, type PullOptions, type PullResult, type RemoteImage } from './pull.js';
export { saveLogin, removeLogin, lookupLogin, authFilePath, type Credentials } from './credentials.js';
export { login } from './login.js';
export type { ProgressEvent, TransferOptions } from './transfer.js';
export type { TlsOptions } from './http.js';
