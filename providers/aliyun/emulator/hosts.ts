/**
 * Each instance is a real local host (providers/local), kept in one lab under the emulator's data directory and
 * named by its instance ID. Hosts are made and removed in the background, all at once (a RunInstances of six makes
 * six hosts side by side); the steps of one instance run in order (a release waits for its create).
 */
import { LocalLab, type HostKind } from '../../local/lab.js';

export interface HostSpec {
  id: string;
  hostname: string;
  /** Public key lines root accepts (the instance's key pair). */
  authorizedKeys: string[];
  rootPasswordHash?: string;
}

export interface HostEvents {
  up(id: string, ip: string): void;
  failed(id: string, err: unknown): void;
  removed(id: string): void;
  /** For a host that answers SSH too early: when (epoch ms) its sshd may be reached; undefined for now. */
  reachableAt(id: string): number | undefined;
}

export class InstanceHosts {
  private lab: Promise<LocalLab> | undefined;
  private readonly chains = new Map<string, Promise<void>>();
  private readonly running = new Set<Promise<void>>();
  private readonly up = new Set<string>();
  private readonly linkTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    readonly labDir: string,
    private readonly kind: HostKind,
    private readonly events: HostEvents,
  ) {}

  /** Opens the lab (its bridge and subnet), so that a missing privilege or tool is found at start. */
  async open(): Promise<LocalLab> {
    this.lab ??= LocalLab.open(this.labDir).catch((err) => {
      this.lab = undefined;
      throw err;
    });
    return this.lab;
  }

  isUp(id: string): boolean {
    return this.up.has(id);
  }

  /** Makes the host (or finds it running) and reports it up or failed. */
  create(spec: HostSpec): void {
    this.enqueue(spec.id, async () => {
      let ip: string;
      try {
        const lab = await this.open();
        const host = await lab.addHost(spec.id, this.kind, {
          hostname: spec.hostname,
          authorizedKeys: spec.authorizedKeys,
          rootPasswordHash: spec.rootPasswordHash,
        });
        ip = host.ip;
      } catch (err) {
        this.events.failed(spec.id, err);
        return;
      }
      this.up.add(spec.id);
      this.events.up(spec.id, ip);
      await this.holdSsh(spec.id);
    });
  }

  /** Removes the host, after whatever is under way for it. */
  release(id: string): void {
    this.enqueue(id, async () => {
      this.up.delete(id);
      this.clearLinkTimer(id);
      try {
        await (await this.open()).removeHost(id);
      } catch (err) {
        this.events.failed(id, err);
        return;
      }
      this.events.removed(id);
    });
  }

  /** Waits for every step under way. */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /** Stops this process's work on hosts: steps under way finish, early links are brought up, hosts keep running. */
  async stop(): Promise<void> {
    await this.drain();
    const lab = this.lab ? await this.lab.catch(() => undefined) : undefined;
    for (const id of [...this.linkTimers.keys()]) {
      this.clearLinkTimer(id);
      await lab?.restoreLink(id).catch(() => undefined);
    }
    // With no instance left, nothing of the emulator stays on this machine but its data: the next start makes the
    // bridge again.
    if (lab && lab.hosts().length === 0) {
      this.lab = undefined;
      await LocalLab.remove(this.labDir);
    }
  }

  /** Removes every host, the lab's network and its directory. */
  async destroy(): Promise<void> {
    await this.drain();
    for (const id of [...this.linkTimers.keys()]) this.clearLinkTimer(id);
    this.up.clear();
    this.lab = undefined;
    await LocalLab.remove(this.labDir);
  }

  /**
   * After a restart: hosts of no known instance (a crash between a release and its record) are removed, and links a
   * crash left down are brought up.
   */
  async tidy(known: Set<string>): Promise<void> {
    const lab = await this.open();
    for (const h of lab.hosts()) {
      if (!known.has(h.name)) this.release(h.name);
      else await lab.restoreLink(h.name).catch(() => undefined);
    }
    await this.drain();
  }

  private async holdSsh(id: string): Promise<void> {
    const at = this.events.reachableAt(id);
    const wait = at === undefined ? 0 : at - Date.now();
    if (wait <= 0) return;
    const lab = await this.open();
    await lab.cutLink(id);
    this.linkTimers.set(
      id,
      setTimeout(() => {
        this.linkTimers.delete(id);
        this.enqueue(id, () => lab.restoreLink(id).catch(() => undefined));
      }, wait),
    );
  }

  private clearLinkTimer(id: string): void {
    const t = this.linkTimers.get(id);
    if (t) clearTimeout(t);
    this.linkTimers.delete(id);
  }

  private enqueue(id: string, step: () => Promise<void>): void {
    const next = (this.chains.get(id) ?? Promise.resolve()).then(step, step);
    const tracked = next.catch(() => undefined);
    this.chains.set(id, tracked);
    this.running.add(tracked);
    void tracked.finally(() => {
      this.running.delete(tracked);
      if (this.chains.get(id) === tracked) this.chains.delete(id);
    });
  }
}
