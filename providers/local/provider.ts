/** Provider LOCAL: the cluster's hosts are made on this machine, in a lab kept under `$CI_HOME/local/<cluster>`. */
import { join } from 'node:path';
import type { HostProvider, Released } from '../../engine/executor/host-provider.js';
import type { HostState, LocalKind } from '../../state/model.js';
import type { SshTarget } from '../ssh/target.js';
import { LocalLab } from './lab.js';
import { readLabFile } from './lab-file.js';

export function labDirFor(home: string, cluster: string): string {
  return join(home, 'local', cluster);
}

export class LocalProvider implements HostProvider {
  private lab: Promise<LocalLab> | undefined;

  constructor(private readonly dir: string) {}

  private open(): Promise<LocalLab> {
    this.lab ??= LocalLab.open(this.dir);
    return this.lab;
  }

  async create(key: string, kind: LocalKind) {
    const host = await (await this.open()).addHost(key, kind);
    return { ip: host.ip, hostname: host.hostname, hostKey: host.hostKey };
  }

  async remove(key: string): Promise<void> {
    await (await this.open()).removeHost(key);
  }

  async target(host: Pick<HostState, 'key' | 'ip' | 'ssh'>): Promise<SshTarget> {
    return (await this.open()).sshTarget(host.key);
  }

  async existingHosts(): Promise<string[]> {
    return Object.keys((await readLabFile(this.dir))?.hosts ?? {});
  }

  async release(): Promise<Released | undefined> {
    this.lab = undefined;
    const removal = await LocalLab.remove(this.dir);
    if (!removal) return undefined;
    const resources = [
      ...(removal.bridge ? [`bridge ${removal.bridge}`] : []),
      ...(removal.subnet ? [`subnet ${removal.subnet}`] : []),
      `directory ${removal.dir}`,
    ];
    return { hosts: removal.hosts, resources };
  }
}
