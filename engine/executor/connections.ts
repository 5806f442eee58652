/** One SSH session per host for the whole apply, opened on first use with the host key pinned in state. */
import { connectSsh, type SshSession } from '../../providers/ssh/session.js';
import type { HostState } from '../../state/model.js';
import type { HostProvider } from './host-provider.js';

export interface ConnectionTuning {
  timeoutMs: number;
  attempts: number;
  keepaliveIntervalMs: number;
}

export const DEFAULT_TUNING: ConnectionTuning = { timeoutMs: 10_000, attempts: 4, keepaliveIntervalMs: 5_000 };

export class Connections {
  private readonly sessions = new Map<string, Promise<SshSession>>();

  constructor(
    private readonly provider: HostProvider,
    private readonly tuning: ConnectionTuning = DEFAULT_TUNING,
  ) {}

  get(host: HostState): Promise<SshSession> {
    let s = this.sessions.get(host.key);
    if (!s) {
      s = this.provider.target(host).then((target) =>
        connectSsh(target, {
          pinnedHostKey: host.hostKey,
          timeoutMs: this.tuning.timeoutMs,
          attempts: this.tuning.attempts,
          keepaliveIntervalMs: this.tuning.keepaliveIntervalMs,
        }),
      );
      // A failed connect is not cached: the next action on this host tries again.
      s.catch(() => this.sessions.delete(host.key));
      this.sessions.set(host.key, s);
    }
    return s;
  }

  /** Drops a host's session (after its link failed, or before it is deleted). */
  async drop(key: string): Promise<void> {
    const s = this.sessions.get(key);
    this.sessions.delete(key);
    if (s) await (await s.catch(() => undefined))?.close().catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.sessions.keys()].map((k) => this.drop(k)));
  }

  bytesUploaded(): Promise<Map<string, number>> {
    return Promise.all(
      [...this.sessions].map(async ([k, s]) => [k, (await s.catch(() => undefined))?.bytesUploaded ?? 0] as const),
    ).then((pairs) => new Map(pairs));
  }
}
