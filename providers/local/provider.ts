/**
 * Provider LOCAL: the cluster's hosts are made on this machine, in a lab kept under `$CI_HOME/local/<cluster>`.
 * Each host is its own batch: `create light host`, `create systemd host`.
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { ProviderData } from '../../engine/kernel/types.js';
import {
  groupSeries,
  type ExpandedHost, type GroupInput, type Held, type HostRef, type MadeHost, type MakeRequest, type ProviderContext, type ProviderIssue,
  type ProviderModule, type ProviderRuntime, type Released,
} from '../contract.js';
import type { SshTarget } from '../ssh/target.js';
import { LocalLab } from './lab.js';
import { labFilePath, readLabFile } from './lab-file.js';
import { HOST_KINDS, type HostKind } from './host-dirs.js';

export function labDirFor(home: string, cluster: string): string {
  return join(home, 'local', cluster);
}

const kindOf = (data: ProviderData | undefined): HostKind => (data?.kind === 'systemd' ? 'systemd' : 'light');

export class LocalRuntime implements ProviderRuntime {
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
  async held(): Promise<Held | undefined> {
    const lab = await readLabFile(this.dir);
    if (!lab) return undefined;
    return { where: labFilePath(this.dir), hosts: Object.keys(lab.hosts), lineage: lab.lineage };
  }

  async makeHosts(request: MakeRequest): Promise<Record<string, MadeHost>> {
    const lab = await this.open();
    const made: Record<string, MadeHost> = {};
    await Promise.all(
      request.hosts.map(async (h) => {
        const kind = kindOf(h.spec);
        const host = await lab.addHost(h.key, kind);
        made[h.key] = { ip: host.ip, hostname: host.hostname, hostKey: host.hostKey, machine: { kind } };
      }),
    );
    return made;
  }

  async removeHost(host: { key: string }): Promise<void> {
    await (await this.open()).removeHost(host.key);
  }

  async target(host: HostRef): Promise<SshTarget> {
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

const LocalBlock = z.strictObject({ kind: z.enum(HOST_KINDS).optional() }).describe('defaults for the hosts this machine makes');

function check({ groups }: { groups: GroupInput[] }): ProviderIssue[] {
  const out: ProviderIssue[] = [];
  for (const g of groups) {
    if (g.fields.count === undefined && g.fields.ips === undefined) {
      out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', g.index], message: 'the group has no count: say how many LOCAL hosts to create' });
    }
  }
  return out;
}

function expand({ cluster, block, groups }: { cluster: string; block: unknown; groups: GroupInput[] }): ExpandedHost[] {
  const defaultKind = ((block as { kind?: HostKind } | undefined)?.kind ?? 'light') as HostKind;
  const hosts: ExpandedHost[] = [];
  const seriesOf = groupSeries(groups);
  groups.forEach((g, gi) => {
    const series = seriesOf[gi];
    const kind = (g.fields.kind as HostKind | undefined) ?? defaultKind;
    for (let i = 1; i <= Number(g.fields.count ?? 0); i++) {
      const key = `${cluster}-${series}-${i}`;
      hosts.push({ key, name: key, group: g.index, make: { batch: key, spec: { kind }, summary: `${kind} host` } });
    }
  });
  return hosts;
}

export const localProvider: ProviderModule = {
  name: 'LOCAL',
  description: 'hosts this machine makes (network namespaces with their own root and sshd; needs root)',
  makesHosts: true,
  clusterfile: {
    block: { key: 'local', schema: LocalBlock },
    groupFields: {
      count: z.number().int().min(1).describe('how many hosts to make'),
      kind: z.enum(HOST_KINDS).describe('host kind for this group'),
    },
    foreignFieldHints: { ips: 'LOCAL hosts get their IPs when created: give count instead of ips' },
    check,
    expand,
  },
  open: (ctx: ProviderContext) => new LocalRuntime(labDirFor(ctx.home, ctx.cluster), ctx.lineage),
};
