/**
 * The Clusterfile's document shapes, strict: an unknown field is an error rather than silently ignored.
 * Every field of sealer's v2 Cluster is declared, so that sealer files parse as they are; each one either acts or is
 * refused by name (compat.ts), which test/clusterfile-fields.test.ts checks field by field. No transforms here: the
 * same schema is published as JSON Schema.
 */
import { z, type ZodType } from 'zod';
import { providerModules, providerNames } from '../../providers/registry.js';

export const API_VERSIONS = ['sealer.io/v2', 'sealer.cloud/v2', 'cloudimage.io/v1'] as const;
/** Every apiVersion sealer has written Plugin and Config documents with. */
export const EXTRA_API_VERSIONS = ['sealer.aliyun.com/v1alpha1', 'sealer.io/v1', 'sealer.cloud/v2', 'sealer.io/v2', 'cloudimage.io/v1'] as const;
/** sealer's first Clusterfile format (spec.masters / spec.nodes), refused with what to write instead. */
export const V1_API_VERSIONS = ['sealer.aliyun.com/v1alpha1', 'zlink.aliyun.com/v1alpha1'] as const;

/** `passwd:` left empty reads as null in YAML: the same as leaving the field out. */
const optionalText = z.union([z.string(), z.null()]).optional();

const port = z.union([z.number().int().min(1).max(65535), z.string().regex(/^[0-9]{1,5}$/)]);

export const SshSchema = z
  .strictObject({
    user: optionalText,
    passwd: optionalText,
    pk: optionalText,
    pkPasswd: optionalText,
    port: z.union([port, z.null()]).optional(),
    /** sealer marks passwords it stored encrypted with its built-in key; refused in compat.ts. */
    encrypted: z.union([z.boolean(), z.null()]).optional(),
  })
  .describe('SSH connection settings; a host group overrides the cluster-wide values field by field');

const envList = z.array(z.string()).describe('KEY=VALUE entries');

export const Metadata = z.strictObject({
  name: z.string(),
  namespace: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  creationTimestamp: z.union([z.string(), z.null()]).optional(),
});

/** Which providers read a host-group field or a spec block, for the schema's descriptions and the rules' messages. */
export function fieldOwners(kind: 'group' | 'block'): Map<string, string[]> {
  const owners = new Map<string, string[]>();
  for (const p of providerModules()) {
    const keys = kind === 'group' ? Object.keys(p.clusterfile.groupFields) : p.clusterfile.block ? [p.clusterfile.block.key] : [];
    for (const k of keys) owners.set(k, [...(owners.get(k) ?? []), p.name]);
  }
  return owners;
}

/** Every provider's fields, each optional here: which ones a group may use depends on spec.provider (see rules.ts). */
function providerFields(kind: 'group' | 'block'): Record<string, ZodType> {
  const out: Record<string, ZodType> = {};
  const owners = fieldOwners(kind);
  for (const p of providerModules()) {
    const fields = kind === 'group' ? p.clusterfile.groupFields : p.clusterfile.block ? { [p.clusterfile.block.key]: p.clusterfile.block.schema } : {};
    for (const [k, schema] of Object.entries(fields)) {
      if (out[k]) continue;
      out[k] = schema.optional().describe(`${owners.get(k)!.join(', ')}: ${schema.description ?? ''}`);
    }
  }
  return out;
}

const RegistryEndpoint = {
  domain: z.string().optional(),
  port: port.optional(),
  username: z.string().optional(),
  password: z.string().optional(),
};

/** sealer's registry settings; cloudimage hands them to the image's hooks, which run the registry (see registry-env.ts). */
export const RegistrySchema = z.strictObject({
  localRegistry: z
    .strictObject({
      ...RegistryEndpoint,
      ha: z.boolean().optional(),
      insecure: z.boolean().optional(),
      cert: z.strictObject({ subjectAltName: z.strictObject({ dnsNames: z.array(z.string()).optional(), ips: z.array(z.string()).optional() }).optional() }).optional(),
    })
    .optional(),
  externalRegistry: z.strictObject(RegistryEndpoint).optional(),
});

/** Where the cluster's state is kept: this machine's file (default) or an etcd cluster a team shares. */
export const BackendSchema = z.strictObject({
  type: z.enum(['local', 'etcd']).describe('local (a file under $CI_HOME, the default) or etcd'),
  endpoints: z.array(z.string()).optional().describe('etcd client URLs, http(s)://host:port (default: CI_ETCD_ENDPOINTS, comma-separated)'),
  prefix: z.string().optional().describe('key prefix of the cluster\'s keys in etcd (default /cloudimage)'),
  tls: z
    .strictObject({ ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() })
    .optional()
    .describe('PEM files (relative to the Clusterfile) for TLS to etcd; user and password come from CI_ETCD_USER and CI_ETCD_PASSWORD'),
  lockTTL: z.union([z.string(), z.number()]).optional().describe('how long a lock outlives its holder, e.g. 30s (default)'),
  history: z.number().int().optional().describe('earlier versions of the state kept in etcd (default 20)'),
});

export const HostGroupSchema = z.strictObject({
  roles: z.array(z.string()).min(1),
  ssh: SshSchema.optional(),
  env: envList.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  taints: z.array(z.string()).optional(),
  ...providerFields('group'),
});

/** Host-group fields every provider shares; the others belong to providers. */
export const SHARED_GROUP_FIELDS = ['roles', 'ssh', 'env', 'labels', 'taints'] as const;

export const ClusterDocSchema = z.strictObject({
  apiVersion: z.enum(API_VERSIONS),
  kind: z.literal('Cluster'),
  metadata: Metadata,
  spec: z.strictObject({
    image: z.string(),
    provider: z.enum(providerNames() as [string, ...string[]]).optional(),
    ...providerFields('block'),
    ssh: SshSchema.optional(),
    env: envList.optional(),
    hosts: z.array(HostGroupSchema),
    cmd_args: z.array(z.string()).optional(),
    cmd: z.array(z.string()).optional(),
    appNames: z.array(z.string()).optional(),
    containerRuntime: z.strictObject({ type: z.string().optional() }).optional(),
    hostAliases: z.array(z.strictObject({ ip: z.string(), hostnames: z.array(z.string()) })).optional(),
    registry: RegistrySchema.optional(),
    dataRoot: z.string().optional(),
    apps: z.array(z.unknown()).optional(),
    backend: BackendSchema.optional(),
  }),
  /** What sealer writes back after a run; read by nothing (see README, "Clusterfile"). */
  status: z.unknown().optional(),
});

export const PLUGIN_API_VERSIONS = EXTRA_API_VERSIONS;

export const PluginDocSchema = z.strictObject({
  apiVersion: z.enum(PLUGIN_API_VERSIONS),
  kind: z.literal('Plugin'),
  metadata: Metadata,
  spec: z.strictObject({
    type: z.string().describe('SHELL, LABEL, TAINT or HOSTNAME'),
    action: z.string().optional().describe('where it runs: PreInit, PostInstall... (combine with |); default PostInstall for LABEL and TAINT, PreInit for HOSTNAME'),
    on: z.string().optional().describe('hosts: roles, master0, addresses, ranges a-b, key=value labels or host names, separated by , or |'),
    scope: z.string().optional().describe('the same as on, in sealer\'s later form'),
    data: z.string(),
  }),
});

/** Config documents are kept as written (sealer shape). */
export const ExtraDocSchema = z.strictObject({
  apiVersion: z.enum(EXTRA_API_VERSIONS),
  kind: z.literal('Config'),
  metadata: Metadata,
  spec: z.looseObject({ type: z.string().optional(), data: z.unknown().optional() }),
});

/**
 * Any other document with an apiVersion and a kind (sealer's Application, kubeadm's ClusterConfiguration...): kept
 * as written and handed to the hooks (see documents.ts).
 */
export const OtherDocSchema = z.looseObject({
  apiVersion: z.string().min(1),
  kind: z.string().min(1),
  metadata: z.looseObject({ name: z.string().optional() }).optional(),
});

export const DocumentSchema = z.union([ClusterDocSchema, PluginDocSchema, ExtraDocSchema, OtherDocSchema]);

export type ClusterDoc = z.infer<typeof ClusterDocSchema>;
export type ExtraDoc = z.infer<typeof ExtraDocSchema>;
export type SshDoc = z.infer<typeof SshSchema>;
export type RegistryDoc = z.infer<typeof RegistrySchema>;

/** The published JSON Schema of one Clusterfile document. */
export function clusterfileJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(DocumentSchema) as Record<string, unknown>;
  return {
    ...schema,
    $id: 'https://cloudimage.io/schema/clusterfile.schema.json',
    title: 'Clusterfile document (Cluster, Plugin, Config, or another kind handed to the hooks)',
  };
}
