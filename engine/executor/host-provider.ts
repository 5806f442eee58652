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
  /**
   * Providers that make hosts: the hosts they already hold for this cluster (recorded in the state or not: a failed
   * or killed apply) and the state lineage recorded for them, read without creating or changing anything.
   * Undefined when they hold nothing.
   */
  held?(): Promise<{ where: string; hosts: string[]; lineage?: string } | undefined>;
  /**
   * Called when the cluster has no host left in its state (destroyed, or every create failed): removes whatever
   * the provider still holds for it, hosts the state never recorded included, and says what that was.
   */
  release?(): Promise<Released | undefined>;
}

/** What a provider removed on release, for the operator to read. */
export interface Released {
  /** Hosts that were still there although the state did not list them. */
  hosts: string[];
  /** Everything else, each described for a person (a bridge, a subnet, a directory). */
  resources: string[];
}
