export { connectSsh, SshSession, type ExecOptions, type ExecResult, type UploadOptions } from './session.js';
export type { ConnectOptions } from './connect.js';
export { describeTarget, configuredAuthMethods, type SshTarget } from './target.js';
export { SshAuthError, SshKeyError, SshHandshakeError, RemoteTimeoutError, SshConnectionLostError } from './errors.js';
export { fingerprintOfKeyBlob, fingerprintOfPublicKeyLine } from './fingerprint.js';
export { shellQuote, envScript, wireCommand } from './shell.js';
