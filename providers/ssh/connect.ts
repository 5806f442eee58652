/**
 * Opening an SSH connection: trust-on-first-use host keys with pinning, retries for network failures
 * only (through the one retry helper), and typed errors for everything a user has to fix.
 */
import { Client, type ConnectConfig } from 'ssh2';
import { HostKeyMismatchError, HostUnreachableError, TransientError, CiError } from '../../engine/kernel/errors.js';
import { registerSecret, redact } from '../../engine/kernel/redact.js';
import { retry } from '../../engine/kernel/retry.js';
import { SshAuthError, SshHandshakeError, SshKeyError } from './errors.js';
import { fingerprintOfKeyBlob } from './fingerprint.js';
import { configuredAuthMethods, describeTarget, type SshTarget } from './target.js';

export interface ConnectOptions {
  /** Fingerprint (`SHA256:...`) the host must present; absent means trust on first use. */
  pinnedHostKey?: string;
  /** Limit for TCP connect plus handshake and login, per attempt. */
  timeoutMs?: number;
  /** Total connection attempts for network failures. */
  attempts?: number;
  /** First back-off step; later steps double (full jitter). */
  retryBaseMs?: number;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Concurrent exec channels per connection (servers usually allow 10 sessions). */
  maxChannels?: number;
  /** SSH keepalive; a connection whose peer stays silent for interval*3 is declared lost. */
  keepaliveIntervalMs?: number;
}

export interface OpenConnection {
  client: Client;
  hostKey: string;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNABORTED',
]);

export function registerTargetSecrets(target: SshTarget): void {
  registerSecret(target.password);
  registerSecret(target.passphrase);
  registerSecret(target.privateKey);
}

export async function openConnection(target: SshTarget, opts: ConnectOptions = {}): Promise<OpenConnection> {
  registerTargetSecrets(target);
  const name = describeTarget(target);
  if (configuredAuthMethods(target).length === 0) {
    throw new SshAuthError(name, [], 'no password, private key or agent socket given');
  }
  const attempts = Math.max(1, opts.attempts ?? 4);
  try {
    return await retry(() => connectOnce(target, opts), {
      attempts,
      baseMs: opts.retryBaseMs ?? 250,
      capMs: 5000,
      onRetry: opts.onRetry,
    });
  } catch (err) {
    if (err instanceof TransientError) {
      throw new HostUnreachableError(name, `cannot connect after ${attempts} attempt(s): ${err.message}`, err);
    }
    throw err;
  }
}

function connectOnce(target: SshTarget, opts: ConnectOptions): Promise<OpenConnection> {
  const name = describeTarget(target);
  return new Promise((resolve, reject) => {
    const client = new Client();
    let offered: string | undefined;
    let mismatch = false;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      client.removeAllListeners();
      client.on('error', () => {});
      client.end();
      reject(err);
    };
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      client.removeAllListeners();
      // Keeps a late socket error from becoming an uncaught exception before the session adopts the client.
      client.on('error', () => undefined);
      resolve({ client, hostKey: offered ?? '' });
    });
    client.on('error', (err) => {
      if (mismatch && offered) return fail(new HostKeyMismatchError(name, opts.pinnedHostKey ?? '', offered, target.host));
      fail(classifyConnectError(target, err));
    });
    client.on('close', () => fail(new TransientError('SSH_CONNECT_FAILED', `${name}: connection closed during handshake`)));
    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      password: target.password,
      privateKey: target.privateKey,
      passphrase: target.passphrase,
      agent: target.agent,
      readyTimeout: opts.timeoutMs ?? 20_000,
      keepaliveInterval: opts.keepaliveIntervalMs ?? 5000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        offered = fingerprintOfKeyBlob(key);
        if (opts.pinnedHostKey && opts.pinnedHostKey !== offered) {
          mismatch = true;
          return false;
        }
        return true;
      },
    };
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 parses the private key synchronously; a bad key or wrong passphrase lands here.
      const msg = redact((err as Error).message ?? String(err)).replace(/^Cannot parse privateKey: /, '');
      fail(new SshKeyError(name, msg));
    }
  });
}

function classifyConnectError(target: SshTarget, err: Error & { level?: string; code?: string }): Error {
  const name = describeTarget(target);
  const msg = redact(err.message ?? String(err));
  if (err.level === 'client-authentication') return new SshAuthError(name, configuredAuthMethods(target));
  if (err.level === 'client-timeout') return new TransientError('SSH_CONNECT_TIMEOUT', `${name}: ${msg}`, err);
  if (err.level === 'client-socket' || (err.code && NETWORK_CODES.has(err.code))) {
    return new TransientError('SSH_CONNECT_FAILED', `${name}: ${err.code ? `${err.code} ` : ''}${msg}`, err);
  }
  if (err.level === 'handshake') return new SshHandshakeError(name, msg, err);
  if (err instanceof CiError) return err;
  // Anything else before login completes (peer closed, protocol noise) is most often the network.
  return new TransientError('SSH_CONNECT_FAILED', `${name}: ${msg}`, err);
}
