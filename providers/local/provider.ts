/** Provider LOCAL: the cluster's hosts are made on this machine, in a lab kept under `$CI_HOME/local/<cluster>`. */
import { join } from 'node:path';
import type { HostProvider, Released } from '../../engine/executor/host-provider.js';
import type { HostState, LocalKind } from '../../state/model.js';
import type { SshTarget } from '../ssh/target.js';
import { LocalLab } from './lab.js';
import { labFilePath, readLabFile } from './lab-file.js';

export function labDirFor(home: string, cluster: string): string {
  return join(home, 'local', cluster);
}

export class LocalProvider implements HostProvider {
  private lab: Promise<LocalLab> | undefined;

  /** With `lineage`, the lab is claimed for that state when first used (and refused when it holds another's hosts). */
  constructor(
    private readonly dir: string,
    private readonly lineage?: string,
  ) {}

  private open(): Promise<LocalLab> {
    this.lab ??= LocalLab.open(this.dir).then(async (lab) => {
      if (this.lineage) await lab.claim(this.lineage);
      return lab;
    });
    return this.lab;
  }

  /** Read from lab.json only: nothing is created, and no root is needed. */
  async held(): Promise<{ where: string; hosts: string[]; lineage?: string } | undefined> {
    const lab = await readLabFile(this.dir);
    if (!lab) return undefined;
    return { where: labFilePath(this.dir), hosts: Object.keys(lab.hosts), lineage: lab.lineage };
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
