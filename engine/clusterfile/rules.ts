/**
 * Semantic rules over a schema-valid Cluster document. Each rule has a name (shown in tests and useful in bug
 * reports) and returns every problem it finds, so a user fixes a file in one round.
 */
import { isIP } from 'node:net';
import type { ClusterDoc } from './schema.js';
import { parseEnvList } from './env.js';
import { parseReference } from '../image/reference.js';
import { InvalidReferenceError } from '../kernel/errors.js';
import type { FieldPath } from './locate.js';

export interface RuleIssue {
  rule: string;
  path: FieldPath;
  message: string;
  /** Point at the field's key rather than its value. */
  atKey?: boolean;
}

export interface Rule {
  name: string;
  check(doc: ClusterDoc): RuleIssue[];
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ROLE_RE = /^[a-z][a-z0-9-]{0,30}$/;

function providerOf(doc: ClusterDoc): 'BAREMETAL' | 'LOCAL' {
  return doc.spec.provider ?? 'BAREMETAL';
}

export const RULES: Rule[] = [
  {
    name: 'cluster-name',
    check: (doc) =>
      NAME_RE.test(doc.metadata.name)
        ? []
        : [
            {
              rule: 'cluster-name',
              path: ['metadata', 'name'],
              message: `"${doc.metadata.name}" is not a valid cluster name: use lower-case letters, digits and "-" (at most 63)`,
            },
          ],
  },
  {
    name: 'missing-image',
    check: (doc) =>
      doc.spec.image.trim()
        ? []
        : [{ rule: 'missing-image', path: ['spec', 'image'], message: 'is empty: name the CloudImage to run, e.g. etcd-example:v1' }],
  },
  {
    name: 'bad-image',
    check: (doc) => {
      const image = doc.spec.image.trim();
      if (!image) return []; // reported by missing-image
      try {
        parseReference(image);
        return [];
      } catch (err) {
        if (!(err instanceof InvalidReferenceError)) throw err;
        return [
          {
            rule: 'bad-image',
            path: ['spec', 'image'],
            message: `"${image}" is not a valid image reference (${err.why}): write [registry/]name:tag, e.g. etcd-example:v1`,
          },
        ];
      }
    },
  },
  {
    name: 'bad-role',
    check: (doc) =>
      doc.spec.hosts.flatMap((g, gi) =>
        g.roles.flatMap((r, ri) =>
          ROLE_RE.test(r)
            ? []
            : [{ rule: 'bad-role', path: ['spec', 'hosts', gi, 'roles', ri], message: `"${r}" is not a valid role: use lower-case letters, digits and "-"` }],
        ),
      ),
  },
  {
    name: 'no-master',
    check: (doc) =>
      doc.spec.hosts.some((g) => g.roles.includes('master'))
        ? []
        : [{ rule: 'no-master', path: ['spec', 'hosts'], message: 'no host group has the role "master": at least one master is needed' }],
  },
  {
    name: 'count-with-ips',
    check: (doc) =>
      doc.spec.hosts.flatMap((g, gi) =>
        g.count !== undefined && g.ips !== undefined
          ? [{ rule: 'count-with-ips', path: ['spec', 'hosts', gi, 'count'], atKey: true, message: 'give either ips (BAREMETAL) or count (LOCAL), not both' }]
          : [],
      ),
  },
  {
    name: 'hosts-for-provider',
    check: (doc) => {
      const provider = providerOf(doc);
      const out: RuleIssue[] = [];
      doc.spec.hosts.forEach((g, gi) => {
        if (g.count !== undefined && g.ips !== undefined) return; // reported by count-with-ips
        if (provider === 'BAREMETAL') {
          if (g.count !== undefined)
            out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', gi, 'count'], atKey: true, message: 'count is only for provider LOCAL: list the hosts under ips instead' });
          else if (!g.ips || g.ips.length === 0)
            out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', gi], message: 'the group lists no ips: add at least one host IP' });
          if (g.kind !== undefined)
            out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', gi, 'kind'], atKey: true, message: 'kind is only for provider LOCAL: remove it' });
        } else {
          if (g.ips !== undefined)
            out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', gi, 'ips'], atKey: true, message: 'LOCAL hosts get their IPs when created: give count instead of ips' });
          else if (g.count === undefined)
            out.push({ rule: 'hosts-for-provider', path: ['spec', 'hosts', gi], message: 'the group has no count: say how many LOCAL hosts to create' });
        }
      });
      if (provider === 'BAREMETAL' && doc.spec.local !== undefined)
        out.push({ rule: 'hosts-for-provider', path: ['spec', 'local'], atKey: true, message: 'local is only for provider LOCAL: remove it' });
      return out;
    },
  },
  {
    name: 'bad-ip',
    check: (doc) =>
      doc.spec.hosts.flatMap((g, gi) =>
        (g.ips ?? []).flatMap((ip, ii) =>
          isIP(ip)
            ? []
            : [{ rule: 'bad-ip', path: ['spec', 'hosts', gi, 'ips', ii], message: `"${ip}" is not a valid IPv4 or IPv6 address` }],
        ),
      ),
  },
  {
    name: 'duplicate-ip',
    check: (doc) => {
      const seen = new Map<string, string>();
      const out: RuleIssue[] = [];
      doc.spec.hosts.forEach((g, gi) =>
        (g.ips ?? []).forEach((ip, ii) => {
          const where = `spec.hosts[${gi}].ips[${ii}]`;
          const first = seen.get(ip);
          if (first) out.push({ rule: 'duplicate-ip', path: ['spec', 'hosts', gi, 'ips', ii], message: `${ip} is listed twice (first at ${first}): list each host once` });
          else seen.set(ip, where);
        }),
      );
      return out;
    },
  },
  {
    name: 'bad-env',
    check: (doc) => {
      const lists: [FieldPath, string[] | undefined][] = [
        [['spec', 'env'], doc.spec.env],
        ...doc.spec.hosts.map((g, gi): [FieldPath, string[] | undefined] => [['spec', 'hosts', gi, 'env'], g.env]),
      ];
      return lists.flatMap(([path, list]) => {
        const r = parseEnvList(list ?? []);
        if (!('bad' in r)) return [];
        const entry = list![r.bad as number];
        const key = entry.split('=')[0];
        return [{ rule: 'bad-env', path: [...path, r.bad as number], message: `entry "${key}${entry.includes('=') ? '=…' : ''}" must be KEY=VALUE with a name of letters, digits and _` }];
      });
    },
  },
  {
    name: 'bad-port',
    check: (doc) => {
      const out: RuleIssue[] = [];
      const check = (path: FieldPath, port: number | string | undefined) => {
        if (typeof port === 'string' && (Number(port) < 1 || Number(port) > 65535))
          out.push({ rule: 'bad-port', path, message: `port ${port} is out of range 1-65535` });
      };
      check(['spec', 'ssh', 'port'], doc.spec.ssh?.port);
      doc.spec.hosts.forEach((g, gi) => check(['spec', 'hosts', gi, 'ssh', 'port'], g.ssh?.port));
      return out;
    },
  },
];
