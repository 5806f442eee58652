/**
 * The emulated account: its stored resources, the states derived from their times, the ClientToken table, and the
 * local hosts behind its instances. Changes run one at a time (`exclusive`) and are stored before they are answered.
 */
import { createHmac } from 'node:crypto';
import type { HostKind } from '../../local/lab.js';
import { errors } from './api-errors.js';
import type { Faults } from './faults.js';
import { InstanceHosts, type HostSpec } from './hosts.js';
import type { Timings } from './latency.js';
import type { EmulatorEvent } from './options.js';
import type { ApiParams } from './params.js';
import { emptyStore, type InstanceRec, type Store, type StoreData, type VSwitchRec, type VpcRec } from './store.js';
import type { Body } from './wire.js';

export type InstanceStatus = 'Pending' | 'Starting' | 'Running' | 'Stopping';
export type NetworkStatus = 'Pending' | 'Available';

/** How long a ClientToken is remembered. [unverified: the APIs do not say; a day covers any sane retry loop] */
const TOKEN_TTL_MS = 24 * 3600_000;

export interface CloudConfig {
  store: Store;
  labDir: string;
  instanceKind: HostKind;
  timings: Timings;
  faults: Faults;
  stock: number;
  accessKeyId: string;
  emit: (e: EmulatorEvent) => void;
}

export class Cloud {
  readonly hosts: InstanceHosts;
  readonly timings: Timings;
  readonly faults: Faults;
  readonly stock: number;
  /** The account's numeric ID, stable for one access key (VPC answers carry it). */
  readonly ownerId: number;
  /** The account's default resource group, where resources go without a ResourceGroupId. */
  readonly defaultResourceGroupId: string;
  private readonly store: Store;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly emit: (e: EmulatorEvent) => void;

  constructor(cfg: CloudConfig) {
    this.store = cfg.store;
    this.timings = cfg.timings;
    this.faults = cfg.faults;
    this.stock = cfg.stock;
    this.emit = cfg.emit;
    const account = createHmac('sha256', 'account').update(cfg.accessKeyId).digest('hex');
    this.ownerId = Number(BigInt('0x' + account.slice(0, 13)) % 10n ** 16n);
    this.defaultResourceGroupId = `rg-acfm${BigInt('0x' + account.slice(13, 29)).toString(36).slice(0, 11)}`;
    this.hosts = new InstanceHosts(cfg.labDir, cfg.instanceKind, {
      up: (id, ip) => this.hostUp(id, ip),
      failed: (id, err) => this.hostFailed(id, err),
      removed: (id) => this.hostRemoved(id),
      reachableAt: (id) => this.sshReachableAt(id),
    });
  }

  get data(): StoreData {
    return this.store.data;
  }

  /** Runs changes one at a time, so a check and the change it allows are never split by another call. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  commit(): Promise<void> {
    return this.store.commit();
  }

  /** Forgets every resource and token (the hosts are the caller's to remove first). */
  clear(): void {
    this.store.data = emptyStore();
  }

  /** Commits from background work: a failed write is reported, there is no caller to answer. */
  private commitLater(): void {
    this.store.commit().catch((err: unknown) => this.emit({ type: 'warning', message: `could not write the store: ${(err as Error).message}` }));
  }

  // --- Derived states ----------------------------------------------------------------------------------------

  instanceStatus(inst: InstanceRec, now = Date.now()): InstanceStatus | undefined {
    if (inst.releasing) return this.settled(inst, now) ? undefined : 'Stopping';
    if (now < inst.pendingUntil) return 'Pending';
    if (now < inst.startingUntil || !this.hosts.isUp(inst.id)) return 'Starting';
    return 'Running';
  }

  /** Instances that still exist (a releasing one exists, and holds its vSwitch and groups, until it settles). */
  instances(regionId?: string): InstanceRec[] {
    const now = Date.now();
    return Object.values(this.data.instances)
      .filter((i) => (regionId === undefined || i.regionId === regionId) && this.instanceStatus(i, now) !== undefined)
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  }

  /** Instances of a type a zone can still supply: the stock less what lives there (releases give it back). */
  stockLeft(zoneId: string, instanceType: string): number {
    const used = this.instances().filter((i) => !i.releasing && i.zoneId === zoneId && i.instanceType === instanceType).length;
    return Math.max(0, this.stock - used);
  }

  networkStatus(r: VpcRec | VSwitchRec, now = Date.now()): NetworkStatus {
    return now < r.availableAt ? 'Pending' : 'Available';
  }

  /** Drops instances whose release has settled; true when something changed. */
  sweep(): boolean {
    const now = Date.now();
    let changed = false;
    for (const inst of Object.values(this.data.instances)) {
      if (inst.releasing && this.settled(inst, now)) {
        delete this.data.instances[inst.id];
        this.emit({ type: 'instance', instanceId: inst.id, change: 'released', message: `${inst.id} released` });
        changed = true;
      }
    }
    for (const [key, t] of Object.entries(this.data.tokens)) {
      if (now - t.at > TOKEN_TTL_MS) {
        delete this.data.tokens[key];
        changed = true;
      }
    }
    if (changed) this.commitLater();
    return changed;
  }

  private settled(inst: InstanceRec, now: number): boolean {
    return !!inst.releasing && inst.releasing.hostRemoved && now >= inst.releasing.settleAt;
  }

  // --- ClientToken -------------------------------------------------------------------------------------------

  /** The stored answer for a call with the same token and parameters; a mismatch with different ones. */
  replay(action: string, token: string, params: ApiParams): { digest: string; body?: Body } {
    if (token.length > 64 || !/^[\x20-\x7e]+$/.test(token)) throw errors.invalid('ClientToken');
    const h = createHmac('sha256', this.data.salt).update(action);
    for (const [k, v] of params.entries()) if (k !== 'ClientToken') h.update(`\0${k}\0${v}`);
    const digest = h.digest('hex');
    const stored = this.data.tokens[`${action} ${token}`];
    if (!stored) return { digest };
    if (stored.digest !== digest) throw errors.idempotentMismatch();
    return { digest, body: stored.body };
  }

  /**
   * Records a successful answer. Failed calls are not recorded: they changed nothing, and the same token may be
   * tried again with the same or other parameters. [unverified: the APIs only document the success case]
   */
  remember(action: string, token: string, digest: string, body: Body): void {
    this.data.tokens[`${action} ${token}`] = { digest, body, at: Date.now() };
  }

  // --- Instance hosts ----------------------------------------------------------------------------------------

  startHost(inst: InstanceRec): void {
    const spec: HostSpec = {
      id: inst.id,
      hostname: inst.hostName,
      authorizedKeys: inst.authorizedKey ? [inst.authorizedKey] : [],
      rootPasswordHash: inst.passwordHash || undefined,
    };
    this.hosts.create(spec);
  }

  releaseHost(inst: InstanceRec): void {
    this.hosts.release(inst.id);
  }

  /** After a restart: hosts of live instances are made running again, releases under way are finished. */
  async resume(): Promise<void> {
    await this.hosts.open();
    const all = Object.values(this.data.instances);
    await this.hosts.tidy(new Set(all.map((i) => i.id)));
    for (const inst of all) {
      if (!inst.releasing) this.startHost(inst);
      else if (!inst.releasing.hostRemoved) this.releaseHost(inst);
    }
  }

  private hostUp(id: string, ip: string): void {
    const inst = this.data.instances[id];
    if (!inst || inst.releasing) return;
    inst.ip = ip;
    inst.hostUpAt ??= Date.now();
    this.commitLater();
    this.emit({ type: 'instance', instanceId: id, change: 'host-up', message: `${id} host up at ${ip}` });
  }

  private hostFailed(id: string, err: unknown): void {
    const inst = this.data.instances[id];
    const why = (err as Error)?.message ?? String(err);
    if (inst?.releasing) {
      // The release goes on: the host's leftovers are the lab's to remove (reset or a later start).
      inst.releasing.hostRemoved = true;
      this.emit({ type: 'warning', instanceId: id, message: `${id}: removing its host failed: ${why}` });
    } else if (inst) {
      // As the platform does with an accepted instance it cannot provide: the instance is released.
      delete this.data.instances[id];
      this.emit({ type: 'warning', instanceId: id, message: `${id}: its host could not be made, the instance is released: ${why}` });
    }
    this.commitLater();
  }

  private hostRemoved(id: string): void {
    const inst = this.data.instances[id];
    if (inst?.releasing) {
      inst.releasing.hostRemoved = true;
      this.commitLater();
    }
    this.emit({ type: 'instance', instanceId: id, change: 'host-removed', message: `${id} host removed` });
  }

  private sshReachableAt(id: string): number | undefined {
    const inst = this.data.instances[id];
    if (!inst || inst.sshdDelayMs <= 0) return undefined;
    return Math.max(inst.startingUntil, inst.hostUpAt ?? Date.now()) + inst.sshdDelayMs;
  }
}
