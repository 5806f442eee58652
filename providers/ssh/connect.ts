/**
 * Opening an SSH connection: trust-on-first-use host keys with pinning, retries for network failures
 * only (through the one retry helper), and typed errors for everything a user has to fix.
 */
import ssh2, { Client, type AnyAuthMethod, type ConnectConfig, type ParsedKey } from 'ssh2';
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
  const auth = authMethods(target);
  const attempts = Math.max(1, opts.attempts ?? 4);
  try {
    return await retry(() => connectOnce(target, auth, opts), {
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

/**
 * Private keys as ssh2 uses them, opened once per process for each key and passphrase: opening a
 * passphrase-protected OpenSSH key runs its bcrypt KDF (about 200 ms of CPU for ssh-keygen's default), which would
 * otherwise be paid again for every connection (a refresh opens one per host, at once).
 */
const openedKeys = new Map<string, ParsedKey>();

function openPrivateKey(target: SshTarget & { privateKey: string }): ParsedKey {
  const id = JSON.stringify([target.privateKey, target.passphrase ?? null]);
  const known = openedKeys.get(id);
  if (known) return known;
  const parsed = ssh2.utils.parseKey(target.privateKey, target.passphrase);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (key instanceof Error) throw new SshKeyError(describeTarget(target), redact(key.message));
  if (!key || !key.isPrivateKey()) throw new SshKeyError(describeTarget(target), 'it holds no (valid) private key');
  openedKeys.set(id, key);
  return key;
}

/** The configured login methods, in configuredAuthMethods' order, with the private key already opened. */
function authMethods(target: SshTarget): AnyAuthMethod[] {
  const username = target.user;
  return configuredAuthMethods(target).map((m) => {
    if (m === 'password') return { type: 'password', username, password: target.password! };
    if (m === 'publickey') return { type: 'publickey', username, key: openPrivateKey({ ...target, privateKey: target.privateKey! }) };
    return { type: 'agent', username, agent: target.agent! };
  });
}

function connectOnce(target: SshTarget, auth: AnyAuthMethod[], opts: ConnectOptions): Promise<OpenConnection> {
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
      readyTimeout: opts.timeoutMs ?? 20_000,
      keepaliveInterval: opts.keepaliveIntervalMs ?? 5000,
      keepaliveCountMax: 3,
      // The configured methods only: ssh2's default first asks for `none`, a round trip (and a login attempt in the
      // server's log) that no host this engine logs in to accepts.
      authHandler: auth,
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
      // Every exchange here is small messages, each waiting for the peer's answer; with Nagle on, a message
      // written while the previous one is unacknowledged waits for the peer's delayed ACK (40 ms on Linux), several
      // times per connection and per exec. Bulk writes (layer uploads) fill whole packets either way.
      client.setNoDelay(true);
    } catch (err) {
      // The key was opened before (openPrivateKey); what ssh2 still refuses synchronously is the configuration.
      fail(new SshHandshakeError(name, redact((err as Error).message ?? String(err)), err));
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
