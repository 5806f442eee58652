import { CiError, TransientError } from '../../engine/kernel/errors.js';

/** The server rejected every configured login method. Never retried: the same credentials fail again. */
export class SshAuthError extends CiError {
  readonly target: string;
  readonly methods: string[];
  constructor(target: string, methods: string[], detail?: string) {
    super(
      'SSH_AUTH_FAILED',
      `${target}: authentication failed (tried: ${methods.length ? methods.join(', ') : 'none'})` + (detail ? `: ${detail}` : ''),
      { hint: 'check the user, password, private key, passphrase or agent given for this host in the Clusterfile' },
    );
    this.target = target;
    this.methods = methods;
  }
}

/** The private key could not be read (wrong format or wrong passphrase). */
export class SshKeyError extends CiError {
  constructor(target: string, detail: string) {
    super('SSH_KEY_INVALID', `${target}: cannot use the private key: ${detail}`, {
      hint: 'give the key file contents in OpenSSH or PEM format, and its passphrase if it is encrypted',
    });
  }
}

/** The SSH handshake itself failed (no common algorithms, protocol error); retrying does not help. */
export class SshHandshakeError extends CiError {
  constructor(target: string, detail: string, cause?: unknown) {
    super('SSH_HANDSHAKE_FAILED', `${target}: ssh handshake failed: ${detail}`, { source: 'external', cause });
  }
}

/** A remote command ran longer than its time limit; the channel was closed. */
export class RemoteTimeoutError extends TransientError {
  readonly host: string;
  constructor(host: string, what: string, timeoutMs: number) {
    super('REMOTE_COMMAND_TIMEOUT', `${host}: ${what} did not finish within ${timeoutMs} ms`);
    this.host = host;
  }
}

/** The connection dropped while a command was running; whether it ran to completion is unknown. */
export class SshConnectionLostError extends TransientError {
  readonly host: string;
  constructor(host: string, reason: string, cause?: unknown) {
    super('SSH_CONNECTION_LOST', `${host}: connection lost (${reason})`, cause);
    this.host = host;
  }
}
