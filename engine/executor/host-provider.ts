/** The narrow interface the executor needs from a provider: make and remove hosts, and say how to log in. */
import type { LocalKind, HostState } from '../../state/model.js';
import type { SshTarget } from '../../providers/ssh/target.js';
import type { HostFacts } from './record.js';

export interface HostProvider {
  /** Creates a host (providers that make machines); returns its address and pinned host key. */
  create(key: string, kind: LocalKind): Promise<HostFacts>;
  /** Removes a host the provider made. */
  remove(key: string): Promise<void>;
  /** How to reach a host over SSH, credentials included. */
  target(host: Pick<HostState, 'key' | 'ip' | 'ssh'>): Promise<SshTarget>;
  /** Called when the cluster is gone (destroy), to release what the provider holds for it. */
  release?(): Promise<void>;
  /**
   * Providers that make hosts: the hosts they already hold for this cluster and the state lineage recorded for
   * them, read without creating or changing anything. Undefined when they hold nothing.
   */
  held?(): Promise<{ where: string; hosts: string[]; lineage?: string } | undefined>;
}
