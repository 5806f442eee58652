/**
 * One SSH connection to one host, carrying many exec channels (bounded, queued). Everything the engine
 * does on a host goes through exec and upload here; there is no PTY and no SFTP.
 */
import { createHash, randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Client, ClientChannel } from 'ssh2';
import pLimit, { type LimitFunction } from 'p-limit';
import { DigestMismatchError, InternalError, RemoteCommandError } from '../../engine/kernel/errors.js';
import type { Digest } from '../../engine/kernel/digest.js';
import { redact } from '../../engine/kernel/redact.js';
import { openConnection, type ConnectOptions, type OpenConnection } from './connect.js';
import { RemoteTimeoutError, SshConnectionLostError } from './errors.js';
import { SHA256_OF_STDIN, shellQuote, wireCommand } from './shell.js';
import { TailBuffer, tailLines } from './tail-buffer.js';
import { describeTarget, type SshTarget } from './target.js';

export interface ExecOptions {
  env?: Record<string, string>;
  stdin?: string | Buffer | Readable;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  timeoutMs?: number;
}

export interface ExecResult {
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface UploadOptions {
  expectedDigest?: Digest;
  mode?: number;
  /**
   * The temp file's name (it must be unique to this upload, beside remotePath): a caller that names its temps can
   * find the ones an upload killed with its process left, and remove them.
   */
  tempPath?: string;
}

const OUTPUT_CAP = 1024 * 1024;

export async function connectSsh(target: SshTarget, opts: ConnectOptions = {}): Promise<SshSession> {
  const conn = await openConnection(target, opts);
  return new SshSession(target, conn, opts);
}

export class SshSession {
  /** `user@host:port`, used in every message about this host. */
  readonly name: string;
  /** Fingerprint of the host key seen at connect time; pin it for later connections. */
  readonly hostKey: string;
  /** Payload bytes written into upload channels over the life of this session. */
  bytesUploaded = 0;

  private client: Client | undefined;
  private closedByUser = false;
  private lostReason: string | undefined;
  private reconnecting: Promise<void> | undefined;
  private readonly limit: LimitFunction;
  private readonly lostListeners = new Set<(err: Error) => void>();

  constructor(
    private readonly target: SshTarget,
    conn: OpenConnection,
    private readonly opts: ConnectOptions = {},
  ) {
    this.name = describeTarget(target);
    this.hostKey = conn.hostKey;
    this.limit = pLimit(opts.maxChannels ?? 8);
    this.adopt(conn.client);
  }

  get user(): string {
    return this.target.user;
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const wire = wireCommand(command, { user: this.target.user, env: opts.env });
    const stdin = wire.stdinPrefix === undefined ? opts.stdin : prependInput(wire.stdinPrefix, opts.stdin);
    return this.limit(() => this.run(wire.command, command, { ...opts, stdin }));
  }

  /** Like exec, but a non-zero exit becomes RemoteCommandError carrying the stderr tail. */
  async execChecked(command: string, opts: ExecOptions & { what?: string } = {}): Promise<ExecResult> {
    const res = await this.exec(command, opts);
    if (res.code !== 0) {
      const what = opts.what ?? `\`${summarize(command)}\``;
      throw new RemoteCommandError(this.name, what, res.code, redact(tailLines(res.stderr || res.stdout)));
    }
    return res;
  }

  /**
   * Streams content into a temp file next to remotePath over one exec channel, checks its sha256 on the
   * host, then renames it into place so readers never see a partial file.
   */
  async upload(source: Readable | Buffer, remotePath: string, opts: UploadOptions = {}): Promise<{ bytes: number }> {
    const tmp = opts.tempPath ?? `${remotePath}.ci-${randomBytes(6).toString('hex')}.tmp`;
    const qTmp = shellQuote(tmp);
    const hash = createHash('sha256');
    let bytes = 0;
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        bytes += chunk.length;
        this.bytesUploaded += chunk.length;
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    const input = Buffer.isBuffer(source) ? Readable.from([source]) : source;
    const receive = `mkdir -p ${shellQuote(posix.dirname(remotePath))} && cat > ${qTmp} && ${SHA256_OF_STDIN} < ${qTmp}`;
    let res: ExecResult;
    try {
      res = await this.exec(receive, { stdin: input.pipe(counter) });
    } catch (err) {
      await this.exec(`rm -f ${qTmp}`).catch(() => undefined);
      throw err;
    }
    if (res.code !== 0) {
      await this.exec(`rm -f ${qTmp}`).catch(() => undefined);
      throw new RemoteCommandError(this.name, `upload to ${remotePath}`, res.code, tailLines(res.stderr));
    }
    const remote = `sha256:${res.stdout.trim().split(/\s+/)[0]}` as Digest;
    const sent = `sha256:${hash.digest('hex')}` as Digest;
    const expected = opts.expectedDigest ?? sent;
    if (remote !== expected) {
      await this.exec(`rm -f ${qTmp}`).catch(() => undefined);
      throw new DigestMismatchError(`${this.name}: upload to ${remotePath}`, expected, remote);
    }
    const mode = (opts.mode ?? 0o644).toString(8);
    await this.execChecked(`chmod ${mode} ${qTmp} && mv -f ${qTmp} ${shellQuote(remotePath)}`, {
      what: `moving the upload into ${remotePath}`,
    });
    return { bytes };
  }

  async close(): Promise<void> {
    this.closedByUser = true;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        client.destroy();
        resolve();
      }, 2000);
      client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      client.end();
    });
  }

  private adopt(client: Client): void {
    this.client = client;
    this.lostReason = undefined;
    client.on('error', (err: Error) => {
      this.lostReason = redact(err.message);
    });
    client.on('close', () => {
      if (this.client !== client) return;
      this.client = undefined;
      const reason = this.closedByUser ? 'session closed' : (this.lostReason ?? 'closed by peer');
      this.lostReason = reason;
      const err = new SshConnectionLostError(this.name, reason);
      for (const l of [...this.lostListeners]) l(err);
    });
  }

  /** A lost connection is re-opened on next use, pinned to the host key seen first. */
  private async connected(): Promise<Client> {
    if (this.closedByUser) throw new InternalError(`${this.name}: ssh session used after close()`);
    if (this.client) return this.client;
    if (!this.reconnecting) {
      this.reconnecting = openConnection(this.target, { ...this.opts, pinnedHostKey: this.hostKey })
        .then((conn) => this.adopt(conn.client))
        .finally(() => (this.reconnecting = undefined));
    }
    await this.reconnecting;
    if (!this.client) throw new SshConnectionLostError(this.name, this.lostReason ?? 'closed by peer');
    return this.client;
  }

  private async run(wire: string, command: string, opts: ExecOptions): Promise<ExecResult> {
    const client = await this.connected();
    return new Promise<ExecResult>((resolve, reject) => {
      const stdout = new TailBuffer(OUTPUT_CAP);
      const stderr = new TailBuffer(OUTPUT_CAP);
      let channel: ClientChannel | undefined;
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (err: Error | undefined, result?: ExecResult) => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        this.lostListeners.delete(onLost);
        if (err) reject(err);
        else resolve(result!);
      };
      const onLost = (err: Error) => finish(err);
      this.lostListeners.add(onLost);
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          finish(new RemoteTimeoutError(this.name, `\`${summarize(command)}\``, opts.timeoutMs!));
          try {
            channel?.signal('KILL');
            channel?.close();
          } catch {
            // The channel may already be gone with the connection.
          }
        }, opts.timeoutMs);
      }
      const onChannel = (err: Error | undefined, ch: ClientChannel) => {
        if (err) {
          const lost = !this.client || this.client !== client;
          return finish(
            lost
              ? new SshConnectionLostError(this.name, this.lostReason ?? 'closed by peer', err)
              : new SshConnectionLostError(this.name, `could not open a channel: ${redact(err.message)}`, err),
          );
        }
        channel = ch;
        if (done) {
          ch.close();
          return;
        }
        let code: number | null = null;
        let signal: string | undefined;
        ch.on('exit', (c: number | null, sig?: string) => {
          code = c;
          signal = sig ?? undefined;
        });
        ch.on('data', (chunk: Buffer) => {
          stdout.push(chunk);
          opts.onStdout?.(chunk);
        });
        ch.stderr.on('data', (chunk: Buffer) => {
          stderr.push(chunk);
          opts.onStderr?.(chunk);
        });
        ch.on('error', () => undefined);
        let exited = false;
        ch.on('exit', () => (exited = true));
        ch.on('close', () => {
          if (!exited) {
            // No exit status: the connection went away (or the server dropped the channel); the outcome is unknown.
            return finish(new SshConnectionLostError(this.name, this.lostReason ?? 'channel closed without an exit status'));
          }
          finish(undefined, { code, ...(signal ? { signal } : {}), stdout: stdout.toString(), stderr: stderr.toString() });
        });
        feedStdin(ch, opts.stdin).catch((e: Error) => {
          // A command that exits without reading all input closes the channel under us; that is its choice,
          // the exit code tells the rest. A failing source is our problem and is reported.
          if ((e as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE') return;
          finish(e);
          ch.close();
        });
      };
      try {
        client.exec(wire, onChannel);
      } catch (err) {
        finish(new SshConnectionLostError(this.name, redact((err as Error).message), err));
      }
    });
  }
}

function prependInput(prefix: string, rest: ExecOptions['stdin']): string | Buffer | Readable {
  if (rest === undefined) return prefix;
  if (typeof rest === 'string') return prefix + rest;
  if (Buffer.isBuffer(rest)) return Buffer.concat([Buffer.from(prefix), rest]);
  return Readable.from(
    (async function* () {
      yield Buffer.from(prefix);
      for await (const chunk of rest) yield chunk as Buffer;
    })(),
  );
}

async function feedStdin(ch: ClientChannel, stdin: ExecOptions['stdin']): Promise<void> {
  if (stdin === undefined) {
    ch.end();
    return;
  }
  if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) {
    ch.end(stdin);
    return;
  }
  await pipeline(stdin, ch);
}

function summarize(command: string): string {
  const oneLine = redact(command).replace(/\s+/g, ' ').trim();
  return oneLine.length > 80 ? oneLine.slice(0, 77) + '...' : oneLine;
}
