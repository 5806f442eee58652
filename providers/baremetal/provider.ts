/**
 * Provider BAREMETAL: the hosts exist already; cloudimage only logs in. Credentials come from the Clusterfile
 * (password, key file with passphrase, or the operator's ssh-agent) and are never stored in state.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import type { ExpandedHost, GroupInput, ProviderContext, ProviderIssue, ProviderModule } from '../contract.js';
import { ClusterfileLogins } from '../ssh/login.js';

function check({ groups }: { groups: GroupInput[] }): ProviderIssue[] {
  const out: ProviderIssue[] = [];
  const seen = new Map<string, string>();
  for (const g of groups) {
    const ips = g.fields.ips as string[] | undefined;
    if (g.fields.count !== undefined && ips !== undefined) {
      out.push({ rule: 'count-with-ips', path: ['spec', 'hosts', g.index, 'count'], atKey: true, message: 'give either ips (BAREMETAL) or count (providers that make hosts), not both' });
    }
    if (ips === undefined || ips.length === 0) {
      if (g.fields.count === undefined) out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', g.index], message: 'the group lists no ips: add at least one host IP' });
      continue;
    }
    ips.forEach((ip, ii) => {
      const path = ['spec', 'hosts', g.index, 'ips', ii];
      if (!isIP(ip)) {
        out.push({ rule: 'bad-ip', path, message: `"${ip}" is not a valid IPv4 or IPv6 address` });
        return;
      }
      const first = seen.get(ip);
      if (first) out.push({ rule: 'duplicate-ip', path, message: `${ip} is listed twice (first at ${first}): list each host once` });
      else seen.set(ip, `spec.hosts[${g.index}].ips[${ii}]`);
    });
  }
  return out;
}

function expand({ groups }: { groups: GroupInput[] }): ExpandedHost[] {
  return groups.flatMap((g) => ((g.fields.ips as string[] | undefined) ?? []).map((ip) => ({ key: ip, ip, group: g.index })));
}

export const baremetalProvider: ProviderModule = {
  name: 'BAREMETAL',
  description: 'hosts that exist already, reached over SSH at the addresses the Clusterfile lists',
  makesHosts: false,
  clusterfile: {
    groupFields: { ips: z.array(z.string()).describe('the hosts of this group') },
    foreignFieldHints: { count: 'count is only for providers that make hosts: list the hosts under ips instead' },
    check,
    expand,
  },
  open: (ctx: ProviderContext) => new ClusterfileLogins(ctx.hosts, ctx.env),
};
