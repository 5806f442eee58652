/**
 * A lab: the local test hosts of one cluster, persisted in a directory so that a later process can reuse
 * or remove them. Hosts sit on a private bridge that only this machine can reach; nothing is routed out.
 */
import { promises as fs, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import lockfile from 'proper-lockfile';
import { exists } from '../../engine/kernel/fsutil.js';
import { retry } from '../../engine/kernel/retry.js';
import { HostUnreachableError, StateIdentityError, TransientError } from '../../engine/kernel/errors.js';
import { connectSsh } from '../ssh/session.js';
import type { SshTarget } from '../ssh/target.js';
import { LocalHostError, requireRoot } from './errors.js';
import { HOST_KINDS, hostPaths, seedHost, LIGHT_OVERLAY_DIRS, type HostKind, type RootAccess } from './host-dirs.js';
import { ensureEd25519Key } from '../ssh/keys.js';
import { readLabFile, writeLabFile, type HostRecord, type LabFile } from './lab-file.js';
import { bridgeName, checkHostName, machineName, netnsName, newLabId, vethName } from './names.js';
import {
  deleteHostNetwork, deleteLink, ensureBridge, ensureHostNetwork, ensureNetns, interfaceAddresses, linkExists, listNetns, netnsExists, setLinkUp, shapeLink,
} from './network.js';
import { isAlive, stopProcess, childrenOf, signal } from './procs.js';
import { ensureRootfs } from './rootfs.js';
import { startLightHost, startSystemdHost } from './start-host.js';
import { claimSubnet, hostAddress, releaseSubnet } from './subnet.js';

export type { HostKind, RootAccess } from './host-dirs.js';

/** How a host is made beyond its kind; every field is optional and the defaults are what provider LOCAL uses. */
export interface AddHostOptions extends RootAccess {
  /** The host's hostname when it is first made (default: its name). */
  hostname?: string;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/;

export interface LabHost {
  name: string;
  hostname: string;
  ip: string;
  kind: HostKind;
  /** Fingerprint of the host key the lab generated for this host; pin it when connecting. */
  hostKey: string;
}

/** What `destroy` found and removed; a bridge or subnet claim that was already gone is left out. */
export interface LabRemoval {
  /** Hosts recorded in the lab or found as its namespaces. */
  hosts: string[];
  bridge?: string;
  subnet?: string;
  dir: string;
}

const toLabHost = (r: HostRecord): LabHost => ({ name: r.name, hostname: r.hostname, ip: r.ip, kind: r.kind, hostKey: r.hostKey });

export class LocalLab {
  private queue: Promise<unknown> = Promise.resolve();
  /** Hosts being added in this process, by name (their own part is made outside the lock): a removal waits for it. */
  private readonly making = new Map<string, Promise<unknown>>();

  private constructor(
    readonly dir: string,
    private state: LabFile,
  ) {}

  /** Opens (creating if needed) the lab kept in `dir`, and makes sure its bridge exists. */
  static async open(dir: string): Promise<LocalLab> {
    requireRoot('provider LOCAL');
    const abs = resolve(dir);
    await fs.mkdir(abs, { recursive: true, mode: 0o700 });
    const lab = new LocalLab(abs, (await readLabFile(abs)) ?? (await LocalLab.create(abs)));
    await lab.locked(async () => {
      const addrs = await interfaceAddresses();
      const subnet = await claimSubnet(lab.state.id, abs, lab.state.subnet.k, addrs);
      if (subnet.k !== lab.state.subnet.k) {
        // The old subnet went to another lab while this one was down (reboot): hosts get new addresses.
        lab.state.subnet = subnet;
        for (const h of Object.values(lab.state.hosts)) h.ip = hostAddress(subnet, h.index);
        await lab.save();
      }
      await ensureBridge(lab.state.bridge, lab.state.subnet.gateway, addrs);
    });
    return lab;
  }

  private static async create(dir: string): Promise<LabFile> {
    const id = newLabId();
    await ensureEd25519Key(join(dir, 'id_ed25519'), `cloudimage-lab-${id}`);
    const subnet = await claimSubnet(id, dir);
    const state: LabFile = { version: 1, id, subnet, bridge: bridgeName(id), hosts: {} };
    await writeLabFile(dir, state);
    return state;
  }

  get id(): string {
    return this.state.id;
  }

  get subnet(): { cidr: string; gateway: string } {
    return { cidr: this.state.subnet.cidr, gateway: this.state.subnet.gateway };
  }

  get privateKeyPath(): string {
    return join(this.dir, 'id_ed25519');
  }

  hosts(): LabHost[] {
    return Object.values(this.state.hosts)
      .sort((a, b) => a.index - b.index)
      .map(toLabHost);
  }

  host(name: string): LabHost | undefined {
    const r = this.state.hosts[name];
    return r && toLabHost(r);
  }

  /** Lineage of the cluster state this lab's hosts belong to, if one was recorded. */
  get lineage(): string | undefined {
    return this.state.lineage;
  }

  /**
   * Records that the lab's hosts belong to the state of `lineage`. Refused while the lab holds hosts of another
   * lineage: those are another state's cluster.
   */
  async claim(lineage: string): Promise<void> {
    await this.locked(async () => {
      const held = Object.keys(this.state.hosts);
      if (this.state.lineage === lineage) return;
      if (this.state.lineage && held.length > 0) {
        throw new StateIdentityError(
          `lab ${this.dir} holds ${held.length} host(s) of the state with lineage ${this.state.lineage}, not ${lineage}`,
          'the state of that cluster was lost or replaced: put it back with `ci state restore`, or pass it with --state',
        );
      }
      this.state.lineage = lineage;
      await this.save();
    });
  }

  /**
   * Creates and starts a host, or returns it as is when it already runs. Waits until SSH answers. A host this
   * call started that fails on the way (or never answers) is removed with everything it had, before the error
   * is thrown: a failed create leaves nothing behind. Access options are applied each time the host is (re)started.
   */
  async addHost(name: string, kind: HostKind, opts: AddHostOptions = {}): Promise<LabHost> {
    checkHostName(name);
    // Checked before anything is recorded: a record of an unknown kind would leave a lab file no later open can read.
    if (!(HOST_KINDS as readonly string[]).includes(kind)) {
      throw new LocalHostError(`invalid kind "${String(kind)}" for local host "${name}"`, { code: 'LOCAL_HOST_KIND_INVALID', hint: `use one of: ${HOST_KINDS.join(', ')}` });
    }
    if (opts.hostname !== undefined && !HOSTNAME.test(opts.hostname)) {
      throw new LocalHostError(`invalid hostname "${opts.hostname}" for local host "${name}"`, { code: 'LOCAL_HOST_NAME_INVALID' });
    }
    const access: RootAccess = { authorizedKeys: opts.authorizedKeys, rootPasswordHash: opts.rootPasswordHash };
    // Only what hosts share is done under the lab's lock: the record (its address), the bridge and the namespace.
    // Seeding a host's files, its key, its links and its sshd are its own and run beside other hosts' creation, so
    // 16 hosts made at once start within a fraction of a second of each other, not one after another.
    // A removal of this host asked meanwhile (removeHost, destroy) waits until the add has ended either way.
    const adding = this.add(name, kind, opts, access);
    const settled = adding.catch(() => undefined);
    this.making.set(name, settled);
    try {
      return await adding;
    } finally {
      if (this.making.get(name) === settled) this.making.delete(name);
    }
  }

  private async add(name: string, kind: HostKind, opts: AddHostOptions, access: RootAccess): Promise<LabHost> {
    const { rec, started } = await this.make(name, kind, opts, access);
    try {
      await this.waitReady(name);
    } catch (err) {
      // A host found running is left alone: a slow answer is no reason to remove a host that may hold data.
      if (started) await this.dropLocked(name, rec).catch(() => undefined);
      throw err;
    }
    return toLabHost(rec);
  }

  /** The record (under the lab's lock), then the host's own part unless it was running already. */
  private async make(name: string, kind: HostKind, opts: AddHostOptions, access: RootAccess): Promise<{ rec: HostRecord; started: boolean }> {
    const made = await this.locked(async () => {
      let r = this.state.hosts[name];
      if (r && r.kind !== kind) {
        throw new LocalHostError(`local host "${name}" already exists as a ${r.kind} host, not ${kind}`, {
          hint: `remove it first (lab.removeHost) or pick another name`,
        });
      }
      if (r && this.healthy(r)) return { r, started: false };
      if (kind === 'light') await this.checkLightLabDir();
      const rootfs = kind === 'systemd' ? await ensureRootfs() : undefined;
      if (!r) {
        const index = this.freeIndex();
        r = {
          name,
          hostname: opts.hostname ?? name,
          kind,
          ip: hostAddress(this.state.subnet, index),
          index,
          netns: netnsName(this.state.id, name),
          veth: vethName(this.state.id, name),
          hostKey: '',
          createdAt: new Date().toISOString(),
        };
        // Recorded before anything is created, so destroy() finds partial leftovers after a crash.
        this.state.hosts[name] = r;
        await this.save();
      }
      try {
        await ensureBridge(this.state.bridge, this.state.subnet.gateway);
        // The first namespace of the machine makes /run/netns a mount point: never two of those at once.
        await ensureNetns(r.netns);
      } catch (err) {
        await this.dropHost(r).catch(() => undefined);
        throw err;
      }
      return { r: { ...r }, started: true, rootfs };
    });
    if (!made.started) return { rec: made.r, started: false };
    return { rec: await this.makeOwnPart(name, kind, made.r, access, made.rootfs), started: true };
  }

  /** A host's own part, outside the lab's lock: its files, key, links and sshd; then its record, under the lock. */
  private async makeOwnPart(name: string, kind: HostKind, r: HostRecord, access: RootAccess, rootfs: string | undefined): Promise<HostRecord> {
    try {
      await this.stopHost(r);
      const paths = hostPaths(this.hostDir(name), kind);
      const operatorKey = (await fs.readFile(`${this.privateKeyPath}.pub`, 'utf8')).trim();
      r.hostKey = await seedHost(paths, kind, r.hostname, operatorKey, access, rootfs ? join(rootfs, 'etc') : '/etc');
      await ensureHostNetwork(r.netns, r.veth, this.state.bridge, r.ip);
      r.proc =
        kind === 'light'
          ? startLightHost(paths, this.dir, r.netns, r.hostname, r.ip, access.rootPasswordHash !== undefined)
          : startSystemdHost(paths, rootfs!, r.netns, machineName(this.state.id, name), r.hostname);
    } catch (err) {
      await this.dropLocked(name, r).catch(() => undefined);
      throw err;
    }
    return this.locked(async () => {
      const cur = this.state.hosts[name];
      if (!cur || cur.index !== r.index || cur.createdAt !== r.createdAt) {
        // Removed meanwhile by another process sharing the lab: what was started for it goes too. Made again
        // meanwhile, the namespace and directory (named after the host) are the new one's: only this process goes.
        if (!cur) {
          await this.teardownHost(r);
          await fs.rm(this.hostDir(name), { recursive: true, force: true });
        } else await this.stopHost(r);
        throw new LocalHostError(`local host "${name}" was removed while it was being created`);
      }
      cur.hostKey = r.hostKey;
      cur.proc = r.proc;
      await this.save();
      return cur;
    });
  }

  /** Waits for the adds of hosts under way in this process (all, or the one named) to end, made or given up. */
  private async madeYet(name?: string): Promise<void> {
    if (name !== undefined) await this.making.get(name);
    else await Promise.all(this.making.values());
  }

  async removeHost(name: string): Promise<void> {
    // Not while it is being added: its own part is made outside the lock, and its files would go under the writer.
    await this.madeYet(name);
    await this.locked(async () => {
      const r = this.state.hosts[name];
      if (r) await this.dropHost(r);
    });
  }

  /**
   * Removes every host (recorded or only found in the kernel), the bridge, the subnet claim and the lab
   * directory, and says what there was. Safe to repeat and after a crash.
   */
  async destroy(): Promise<LabRemoval> {
    const removal: LabRemoval = { hosts: [], dir: this.dir };
    await this.madeYet();
    await this.locked(async () => {
      const prefix = `ci-${this.state.id}-`;
      for (const r of Object.values(this.state.hosts)) {
        removal.hosts.push(r.name);
        await this.teardownHost(r);
      }
      // Namespaces a crashed run created but never recorded.
      for (const ns of await listNetns(prefix)) {
        const name = ns.slice(prefix.length);
        if (!removal.hosts.includes(name)) removal.hosts.push(name);
        await deleteHostNetwork(ns, vethName(this.state.id, name));
      }
      if (linkExists(this.state.bridge)) removal.bridge = this.state.bridge;
      await deleteLink(this.state.bridge);
      if (await releaseSubnet(this.state.id, this.state.subnet.k)) removal.subnet = this.state.subnet.cidr;
      this.state.hosts = {};
      await fs.rm(join(this.dir, 'hosts'), { recursive: true, force: true });
    });
    await fs.rm(this.dir, { recursive: true, force: true });
    return removal;
  }

  /** Removes the lab kept in `dir`, if any, without bringing anything of it up first. */
  static async remove(dir: string): Promise<LabRemoval | undefined> {
    const abs = resolve(dir);
    if (!(await exists(abs))) return undefined;
    requireRoot('removing local hosts');
    const file = await readLabFile(abs);
    if (!file) {
      // A lab that crashed before its lab.json was written holds nothing but its directory.
      await fs.rm(abs, { recursive: true, force: true });
      return { hosts: [], dir: abs };
    }
    return new LocalLab(abs, file).destroy();
  }

  sshTarget(name: string): SshTarget {
    const r = this.record(name);
    return { host: r.ip, port: 22, user: 'root', privateKey: readFileSync(this.privateKeyPath, 'utf8') };
  }

  /** Waits until the host answers SSH with the host key the lab gave it. */
  async waitReady(name: string, timeoutMs = 60_000): Promise<void> {
    const r = this.record(name);
    const deadline = Date.now() + timeoutMs;
    await retry(
      async () => {
        if (!isAlive(r.proc)) {
          throw new LocalHostError(`local host "${name}" stopped while starting\n${await this.logTail(name)}`);
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new LocalHostError(`local host "${name}" did not answer SSH on ${r.ip} within ${timeoutMs} ms\n${await this.logTail(name)}`);
        const session = await connectSsh(this.sshTarget(name), {
          pinnedHostKey: r.hostKey,
          attempts: 1,
          timeoutMs: Math.min(5000, remaining),
        });
        try {
          await session.execChecked('true', { timeoutMs: Math.min(10_000, Math.max(remaining, 1000)) });
        } finally {
          await session.close();
        }
      },
      {
        attempts: 1000,
        baseMs: 100,
        capMs: 400,
        retryable: (err) => err instanceof HostUnreachableError || err instanceof TransientError,
      },
    );
  }

  /** Partition: the host's link goes down, so every packet to and from it is lost. */
  async cutLink(name: string): Promise<void> {
    await setLinkUp(this.record(name).netns, false);
  }

  async restoreLink(name: string): Promise<void> {
    await setLinkUp(this.record(name).netns, true);
  }

  /** Limits the host's bandwidth in both directions; 0 or undefined removes the limit. */
  async shapeLink(name: string, rateKbit: number | undefined): Promise<void> {
    const r = this.record(name);
    await shapeLink(r.netns, r.veth, rateKbit);
  }

  private record(name: string): HostRecord {
    const r = this.state.hosts[name];
    if (!r) {
      throw new LocalHostError(`no local host "${name}" in lab ${this.dir}`, {
        code: 'LOCAL_HOST_NOT_FOUND',
        hint: `hosts in this lab: ${Object.keys(this.state.hosts).join(', ') || 'none'}`,
      });
    }
    return r;
  }

  private healthy(r: HostRecord): boolean {
    return isAlive(r.proc) && netnsExists(r.netns) && linkExists(r.veth) && linkExists(this.state.bridge);
  }

  private freeIndex(): number {
    const used = new Set(Object.values(this.state.hosts).map((h) => h.index));
    for (let i = 2; i < 255; i++) if (!used.has(i)) return i;
    throw new LocalHostError(`lab ${this.dir} is full (253 hosts)`);
  }

  private hostDir(name: string): string {
    return join(this.dir, 'hosts', name);
  }

  private async checkLightLabDir(): Promise<void> {
    // A light host overlays these directories with layers stored in the lab; a lab inside them would overlap.
    // The real path counts: a lab reached through a symlink may still live inside one of them.
    const dir = await fs.realpath(this.dir);
    const clash = LIGHT_OVERLAY_DIRS.find((d) => dir === `/${d}` || dir.startsWith(`/${d}/`));
    if (clash) {
      throw new LocalHostError(`lab directory ${dir} is inside /${clash}, which light hosts overlay`, {
        hint: 'set CI_HOME to a directory outside /etc, /var, /opt, /usr and /srv',
      });
    }
  }

  private async stopHost(r: HostRecord): Promise<void> {
    if (!r.proc || !isAlive(r.proc)) return;
    if (r.kind === 'systemd') {
      // SIGTERM asks nspawn to power the container off cleanly.
      await stopProcess(r.proc, 15_000, 'SIGTERM');
    } else {
      // PID 1 of the host's namespace: its death kills every process of the host.
      for (const child of childrenOf(r.proc.pid)) signal(child, 'SIGKILL');
      await stopProcess(r.proc, 5000, 'SIGKILL');
    }
  }

  private async teardownHost(r: HostRecord): Promise<void> {
    await this.stopHost(r);
    await deleteHostNetwork(r.netns, r.veth);
    r.proc = undefined;
  }

  /** dropHost under the lock, of the host's record as the lab file now has it (or as this call made it). */
  private dropLocked(name: string, made: HostRecord): Promise<void> {
    return this.locked(() => this.dropHost(this.state.hosts[name] ?? made));
  }

  /** Everything of one host: processes, network, files and its record. Runs under the lock. */
  private async dropHost(r: HostRecord): Promise<void> {
    await this.teardownHost(r);
    await fs.rm(this.hostDir(r.name), { recursive: true, force: true });
    delete this.state.hosts[r.name];
    await this.save();
  }

  private async logTail(name: string): Promise<string> {
    try {
      const text = await fs.readFile(join(this.hostDir(name), 'host.log'), 'utf8');
      return text.trimEnd().split('\n').slice(-15).join('\n');
    } catch {
      return '(no host log)';
    }
  }

  private async save(): Promise<void> {
    await writeLabFile(this.dir, this.state);
  }

  /** Serialises changes in this process and across processes sharing the lab directory. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (!(await exists(this.dir))) await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      const release = await lockfile.lock(this.dir, {
        lockfilePath: join(this.dir, 'lab.lock'),
        realpath: false,
        stale: 60_000,
        retries: { retries: 300, minTimeout: 200, maxTimeout: 1000 },
      });
      try {
        const fresh = await readLabFile(this.dir);
        if (fresh) this.state = fresh;
        return await fn();
      } finally {
        await release().catch(() => undefined);
      }
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
