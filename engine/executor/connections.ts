/**
 * One SSH session per host for the whole apply, opened on first use with the host key pinned in state. Before a
 * session is handed out, the host's mark is checked (and, for an apply, the host is claimed for the state's lineage):
 * no action runs on a host that belongs to another state.
 */
import { InternalError } from '../kernel/errors.js';
import { connectSsh, type SshSession } from '../../providers/ssh/session.js';
import type { HostState } from '../../state/model.js';
import type { ProviderRuntime } from '../../providers/contract.js';
import { judgeMark, markScript, parseMark, stateKnowsHost } from './host-claim.js';

export interface ConnectionTuning {
  timeoutMs: number;
  attempts: number;
  keepaliveIntervalMs: number;
}

export const DEFAULT_TUNING: ConnectionTuning = { timeoutMs: 10_000, attempts: 4, keepaliveIntervalMs: 5_000 };

/** Whose hosts these are: `claim` marks unmarked hosts for the lineage (apply); without it they are only checked (destroy). */
export interface Ownership {
  cluster: string;
  lineage: string;
  claim: boolean;
}

export class Connections {
  private readonly sessions = new Map<string, Promise<SshSession>>();

  constructor(
    private readonly provider: Pick<ProviderRuntime, 'target'>,
    private readonly tuning: ConnectionTuning = DEFAULT_TUNING,
    private readonly owner?: Ownership,
  ) {}

  get(host: HostState): Promise<SshSession> {
    let s = this.sessions.get(host.key);
    if (!s) {
      s = this.provider
        .target(host)
        .then((target) =>
          connectSsh(target, {
            pinnedHostKey: host.hostKey,
            timeoutMs: this.tuning.timeoutMs,
            attempts: this.tuning.attempts,
            keepaliveIntervalMs: this.tuning.keepaliveIntervalMs,
          }),
        )
        .then((session) => this.checkOwner(host, session));
      // A failed connect is not cached: the next action on this host tries again.
      s.catch(() => this.sessions.delete(host.key));
      this.sessions.set(host.key, s);
    }
    return s;
  }

  private async checkOwner(host: HostState, session: SshSession): Promise<SshSession> {
    const owner = this.owner;
    if (!owner) return session;
    try {
      const known = stateKnowsHost(host);
      const claim = owner.claim ? { lineage: owner.lineage, adopt: known } : undefined;
      const res = await session.execChecked(markScript(owner.cluster, claim), { what: 'checking which state owns the host', timeoutMs: 30_000 });
      const mark = parseMark(res.stdout);
      if (!mark) throw new InternalError(`${session.name}: unexpected answer to the ownership check: ${res.stdout.slice(0, 200)}`);
      const refusal = judgeMark(session.name, owner.cluster, mark, owner.lineage, known);
      if (refusal) throw refusal;
      return session;
    } catch (err) {
      await session.close().catch(() => undefined);
      throw err;
    }
  }

  /** Drops a host's session (after its link failed, or before it is deleted). */
  async drop(key: string): Promise<void> {
    const s = this.sessions.get(key);
    this.sessions.delete(key);
    if (s) await (await s.catch(() => undefined))?.close().catch(() => undefined);
  }

  /** The sessions open now, by host (none is opened, not even again). */
  async open(): Promise<[string, SshSession][]> {
    const all = await Promise.all([...this.sessions].map(async ([k, s]) => [k, await s.catch(() => undefined)] as const));
    return all.filter((e): e is [string, SshSession] => e[1] !== undefined);
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
