/**
 * Provider ALI_CLOUD: hosts are ECS instances the provider makes from counts and specs, in a VPC, vSwitch and
 * security group it makes for the cluster, logged into with a key pair it imports. Scaling is changing a count: the
 * newest hosts of a group go first (the highest numbers).
 */
import { z } from 'zod';
import { groupSeries, type ExpandedHost, type GroupInput, type InfraResource, type ProviderContext, type ProviderIssue, type ProviderModule } from '../contract.js';
import type { InstanceSpec, Rule } from './runtime.js';
import { LazyAliyunRuntime } from './lazy-runtime.js';
import { CloudBlock, cidrInside, cloudSettings, GROUP_FIELDS, type CloudBlockDoc } from './settings.js';

function check({ block, groups }: { block: unknown; groups: GroupInput[] }): ProviderIssue[] {
  const out: ProviderIssue[] = [];
  if (block === undefined) {
    out.push({ rule: 'cloud-settings', path: ['spec'], message: 'provider ALI_CLOUD needs spec.cloud: at least regionId, zoneId and imageId' });
    return out;
  }
  const b = block as CloudBlockDoc;
  const s = cloudSettings(block);
  if (!cidrInside(s.vswitchCidr, s.vpcCidr)) {
    out.push({ rule: 'cloud-settings', path: ['spec', 'cloud', b.vswitchCidr ? 'vswitchCidr' : 'vpcCidr'], message: `the vSwitch range ${s.vswitchCidr} is not inside the VPC range ${s.vpcCidr}` });
  }
  for (const g of groups) {
    if (g.fields.count === undefined && g.fields.ips === undefined) {
      out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', g.index], message: 'the group has no count: say how many instances to make' });
    }
    if (g.fields.instanceType === undefined && !b.instanceType) {
      out.push({ rule: 'cloud-settings', path: ['spec', 'hosts', g.index], message: 'no instance type: give instanceType in the group or in spec.cloud' });
    }
  }
  return out;
}

const gib = (n: number) => `${n} GiB`;

function expand({ cluster, block, groups }: { cluster: string; block: unknown; groups: GroupInput[] }): ExpandedHost[] {
  const s = cloudSettings(block);
  const hosts: ExpandedHost[] = [];
  const seriesOf = groupSeries(groups);
  groups.forEach((g, gi) => {
    const role = g.roles[0];
    const series = seriesOf[gi];
    const spec: InstanceSpec = {
      group: series,
      role,
      instanceType: (g.fields.instanceType as string | undefined) ?? s.instanceType ?? '',
      systemDisk: (g.fields.systemDisk as number | undefined) ?? s.systemDisk,
      dataDisks: (g.fields.dataDisks as number[] | undefined) ?? s.dataDisks,
    };
    const disks = [gib(spec.systemDisk), ...spec.dataDisks.map(gib)].join(' + ');
    const summary = `${spec.instanceType} instance (${role}; disks ${disks})`;
    for (let i = 1; i <= Number(g.fields.count ?? 0); i++) {
      const key = `${cluster}-${series}-${i}`;
      hosts.push({ key, name: key, group: g.index, make: { batch: `${cluster}-${series}`, spec: { ...spec }, summary } });
    }
  });
  return hosts;
}

/** `2379/tcp`, `53/udp`, `8080` -> a rule open to `from`. */
function portRule(port: string, from: string): Rule | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp))?$/i.exec(port.trim());
  if (!m) return undefined;
  return { protocol: (m[3] ?? 'tcp').toUpperCase() as Rule['protocol'], ports: `${m[1]}/${m[2] ?? m[1]}`, source: from };
}

function infrastructure({ block, image }: { cluster: string; block: unknown; image: { ports: string[] } }): InfraResource[] {
  const s = cloudSettings(block);
  const rules: Rule[] = [{ protocol: 'TCP', ports: '22/22', source: s.allowFrom }];
  for (const p of image.ports) {
    const r = portRule(p, s.allowFrom);
    if (r && !rules.some((x) => x.protocol === r.protocol && x.ports === r.ports)) rules.push(r);
  }
  const shown = rules.map((r) => (r.ports === '22/22' && r.protocol === 'TCP' ? 'SSH' : `${r.ports.split('/')[0] === r.ports.split('/')[1] ? r.ports.split('/')[0] : r.ports.replace('/', '-')}/${r.protocol.toLowerCase()}`));
  return [
    { key: 'vpc', spec: { cidr: s.vpcCidr }, summary: `VPC ${s.vpcCidr}`, deps: [] },
    { key: 'vswitch', spec: { cidr: s.vswitchCidr, zoneId: s.zoneId }, summary: `vSwitch ${s.vswitchCidr} in ${s.zoneId}`, deps: ['vpc'] },
    { key: 'security-group', spec: { rules: rules.map((r) => ({ ...r })) }, summary: `security group: ${shown.join(', ')} from ${s.allowFrom}`, deps: ['vpc'] },
    { key: 'key-pair', spec: {}, summary: 'key pair for SSH', deps: [] },
  ];
}

export const aliyunProvider: ProviderModule = {
  name: 'ALI_CLOUD',
  description: 'ECS instances on Alibaba Cloud, made from counts and specs (or on the emulator: `ci emulator aliyun`)',
  makesHosts: true,
  clusterfile: {
    block: { key: 'cloud', schema: CloudBlock },
    groupFields: { ...GROUP_FIELDS } as Record<string, z.ZodType>,
    foreignFieldHints: { ips: 'ALI_CLOUD hosts get their addresses when made: give count instead of ips' },
    check,
    expand,
  },
  infrastructure,
  open: (ctx: ProviderContext) => new LazyAliyunRuntime(ctx),
};
