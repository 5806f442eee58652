/**
 * Semantic rules over a schema-valid Cluster document. Each rule has a name (shown in tests and useful in bug
 * reports) and returns every problem it finds, so a user fixes a file in one round.
 */
import { fieldOwners, SHARED_GROUP_FIELDS, type ClusterDoc } from './schema.js';
import { DEFAULT_PROVIDER, providerNamed } from '../../providers/registry.js';
import type { GroupInput, ProviderModule } from '../../providers/contract.js';
import { parseEnvList } from './env.js';
import { parseReference } from '../image/reference.js';
import { InvalidReferenceError } from '../kernel/errors.js';
import { ETCD_CLIENT_URL } from '../kernel/types.js';
import type { FieldPath } from './locate.js';
import { unsupportedFields } from './compat.js';

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

export const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ROLE_RE = /^[a-z][a-z0-9-]{0,30}$/;

const providerOf = (doc: ClusterDoc): ProviderModule => providerNamed(doc.spec.provider ?? DEFAULT_PROVIDER);

/** A host group's fields that belong to providers, as the provider reads them. */
export function groupInputs(doc: ClusterDoc): GroupInput[] {
  const shared = new Set<string>(SHARED_GROUP_FIELDS);
  return doc.spec.hosts.map((g, index) => ({
    index,
    roles: [...g.roles],
    fields: Object.fromEntries(Object.entries(g as Record<string, unknown>).filter(([k, v]) => !shared.has(k) && v !== undefined)),
  }));
}

export function providerBlock(doc: ClusterDoc): unknown {
  const key = providerOf(doc).clusterfile.block?.key;
  return key ? (doc.spec as Record<string, unknown>)[key] : undefined;
}

const list = (names: string[]) => (names.length === 1 ? `provider ${names[0]}` : `providers ${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`);

/**
 * The chosen provider's own rules, then every field that belongs to another provider (a group's `count` on
 * BAREMETAL, a `local` block on ALI_CLOUD) named as such, where the provider's rules did not already speak of it.
 */
function providerIssues(doc: ClusterDoc): RuleIssue[] {
  const p = providerOf(doc);
  const groups = groupInputs(doc);
  const out: RuleIssue[] = p.clusterfile.check({ block: providerBlock(doc), groups });
  const reported = new Set(out.map((i) => JSON.stringify(i.path)));
  const own = new Set(Object.keys(p.clusterfile.groupFields));
  const owners = fieldOwners('group');
  for (const g of groups) {
    for (const field of Object.keys(g.fields)) {
      const path = ['spec', 'hosts', g.index, field];
      if (own.has(field) || reported.has(JSON.stringify(path))) continue;
      const message = p.clusterfile.foreignFieldHints?.[field] ?? `${field} is only for ${list(owners.get(field) ?? [])}: remove it`;
      out.push({ rule: 'hosts-for-provider', path, atKey: true, message });
    }
  }
  const blockOwners = fieldOwners('block');
  for (const [key, names] of blockOwners) {
    if (key === p.clusterfile.block?.key || (doc.spec as Record<string, unknown>)[key] === undefined) continue;
    out.push({ rule: 'hosts-for-provider', path: ['spec', key], atKey: true, message: `${key} is only for ${list(names)}: remove it` });
  }
  return out;
}

/** `30s`, `2m`, `45` (seconds) -> seconds, or undefined when it is none of these. */
export function ttlSeconds(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) ? v : undefined;
  const m = /^(\d+)(s|m)?$/.exec(v.trim());
  return m ? Number(m[1]) * (m[2] === 'm' ? 60 : 1) : undefined;
}

function backendIssues(doc: ClusterDoc): RuleIssue[] {
  const b = doc.spec.backend;
  if (!b) return [];
  const out: RuleIssue[] = [];
  const issue = (path: FieldPath, message: string) => out.push({ rule: 'backend', path: ['spec', 'backend', ...path], message });
  if (b.type === 'local') {
    for (const k of ['endpoints', 'prefix', 'tls', 'lockTTL', 'history'] as const) {
      if (b[k] !== undefined) issue([k], `is a setting of the etcd backend; the local backend has none`);
    }
    return out;
  }
  (b.endpoints ?? []).forEach((e, i) => {
    if (!ETCD_CLIENT_URL.test(e)) issue(['endpoints', i], `"${e}" is not an etcd client URL: write http://host:port or https://host:port`);
  });
  if (b.endpoints?.length === 0) issue(['endpoints'], 'is empty: name at least one etcd client URL, or leave it out to use CI_ETCD_ENDPOINTS');
  if (b.prefix !== undefined && !/^\/[A-Za-z0-9._\/-]*$/.test(b.prefix)) issue(['prefix'], `"${b.prefix}" is not a key prefix: start with "/" and use letters, digits, ".", "_", "-" and "/"`);
  if (b.lockTTL !== undefined) {
    const s = ttlSeconds(b.lockTTL);
    if (s === undefined || s < 5 || s > 3600) issue(['lockTTL'], `"${b.lockTTL}" is not a lock TTL between 5s and 60m: write e.g. 30s`);
  }
  if (b.history !== undefined && (b.history < 1 || b.history > 1000)) issue(['history'], `${b.history} is out of range: keep between 1 and 1000 versions`);
  if (b.tls && b.tls.cert !== undefined && b.tls.key === undefined) issue(['tls', 'key'], 'is missing: a client certificate needs its key');
  if (b.tls && b.tls.key !== undefined && b.tls.cert === undefined) issue(['tls', 'cert'], 'is missing: a client key needs its certificate');
  return out;
}

export const RULES: Rule[] = [
  { name: 'backend', check: backendIssues },
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
  { name: 'provider', check: providerIssues },
  {
    name: 'bad-env',
    check: (doc) => {
      const lists: [FieldPath, string[] | undefined][] = [
        [['spec', 'env'], doc.spec.env],
        [['spec', 'cmd_args'], doc.spec.cmd_args],
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
  { name: 'unsupported-field', check: unsupportedFields },
  {
    name: 'bad-port',
    check: (doc) => {
      const out: RuleIssue[] = [];
      const check = (path: FieldPath, port: number | string | null | undefined) => {
        if (typeof port === 'string' && (Number(port) < 1 || Number(port) > 65535))
          out.push({ rule: 'bad-port', path, message: `port ${port} is out of range 1-65535` });
      };
      check(['spec', 'ssh', 'port'], doc.spec.ssh?.port);
      doc.spec.hosts.forEach((g, gi) => check(['spec', 'hosts', gi, 'ssh', 'port'], g.ssh?.port));
      return out;
    },
  },
];
