/**
 * sealer's Cluster fields that cloudimage maps onto its own model: what becomes env for the image's hooks, and what
 * is refused by name because honouring it is not possible here (so a sealer user is never surprised by a field
 * that silently does nothing).
 */
import type { ClusterDoc, RegistryDoc } from './schema.js';
import type { RuleIssue } from './rules.js';
import type { FieldPath } from './locate.js';

/**
 * Env sealer derives from `spec.registry` and `spec.containerRuntime` (same names), for the image's hooks, which
 * set up the runtime and the registry. `spec.env` overrides any of them.
 */
export function derivedEnv(doc: ClusterDoc): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const set = (k: string, v: string | number | boolean | undefined) => {
    if (v !== undefined && v !== '') out[k] = [String(v)];
  };
  const rt = doc.spec.containerRuntime?.type;
  set('ContainerRuntime', rt);
  const reg: RegistryDoc | undefined = doc.spec.registry;
  const endpoint = (prefix: string, e: { domain?: string; port?: number | string } | undefined) => {
    if (!e) return;
    set(`${prefix}Domain`, e.domain);
    set(`${prefix}Port`, e.port);
    if (e.domain) set(`${prefix}URL`, e.port === undefined ? e.domain : `${e.domain}:${e.port}`);
  };
  endpoint('LocalRegistry', reg?.localRegistry);
  endpoint('ExternalRegistry', reg?.externalRegistry);
  // The registry the cluster pulls from: the external one when given, else the local one.
  endpoint('Registry', reg?.externalRegistry?.domain ? reg.externalRegistry : reg?.localRegistry);
  set('LocalRegistryHA', reg?.localRegistry?.ha);
  set('LocalRegistryInsecure', reg?.localRegistry?.insecure);
  const san = reg?.localRegistry?.cert?.subjectAltName;
  const sans = [...(san?.dnsNames ?? []), ...(san?.ips ?? [])];
  if (sans.length) out.LocalRegistryCertSANs = sans;
  return out;
}

const remove = (what: string) => `${what}: remove it`;

/** Fields sealer reads that cloudimage cannot honour, each with what to do instead. */
export function unsupportedFields(doc: ClusterDoc): RuleIssue[] {
  const out: RuleIssue[] = [];
  const refuse = (path: FieldPath, message: string) => out.push({ rule: 'unsupported-field', path, atKey: true, message });
  const spec = doc.spec;
  if (spec.dataRoot !== undefined)
    refuse(['spec', 'dataRoot'], remove(`cloudimage keeps a cluster's files in /var/lib/cloudimage/clusters/${doc.metadata.name} on each host, so dataRoot cannot be honoured`));
  if (spec.cmd !== undefined)
    refuse(['spec', 'cmd'], 'the image\'s CMDs cannot be replaced from the Clusterfile: build an image FROM this one that ends with the CMDS you want, and remove spec.cmd');
  if (spec.appNames !== undefined)
    refuse(['spec', 'appNames'], 'the apps to launch cannot be chosen from the Clusterfile: build an image FROM this one that ends with the LAUNCH you want, and remove spec.appNames');
  if (spec.apps !== undefined) refuse(['spec', 'apps'], remove('nothing reads spec.apps'));
  for (const k of ['namespace', 'labels', 'annotations'] as const) {
    if (doc.metadata[k] !== undefined) refuse(['metadata', k], remove(`nothing reads metadata.${k} of a Cluster`));
  }
  const encrypted = (path: FieldPath, ssh: { encrypted?: boolean | null } | undefined) => {
    if (ssh?.encrypted)
      refuse([...path, 'encrypted'], 'sealer stored these passwords encrypted with its own key, which cloudimage does not read: write them in clear (or as ${VAR}) and remove encrypted');
  };
  encrypted(['spec', 'ssh'], spec.ssh);
  spec.hosts.forEach((g, gi) => encrypted(['spec', 'hosts', gi, 'ssh'], g.ssh));
  for (const which of ['localRegistry', 'externalRegistry'] as const) {
    for (const k of ['username', 'password'] as const) {
      if (spec.registry?.[which]?.[k] !== undefined)
        refuse(['spec', 'registry', which, k], `registry credentials are not handed to hooks (they would reach every host in clear): remove it and give them to the image's hooks another way`);
    }
  }
  return out;
}

/** sealer's first format (spec.masters, spec.nodes, spec.network...): one message saying what to write instead. */
export function v1Message(): string {
  return (
    'this is a sealer v1 Clusterfile (spec.masters / spec.nodes), which cloudimage does not read: ' +
    'write it in the v2 form, apiVersion sealer.io/v2, with spec.hosts: [{ips: [...], roles: [master]}, {ips: [...], roles: [node]}] ' +
    'in place of spec.masters.ipList and spec.nodes.ipList, and spec.network as env (PodCIDR=..., SvcCIDR=...)'
  );
}

export function looksLikeV1(raw: Record<string, unknown>, v1Versions: readonly string[]): boolean {
  const spec = raw.spec && typeof raw.spec === 'object' ? (raw.spec as Record<string, unknown>) : {};
  // With spec.hosts it is a v2 file under an old apiVersion, which the apiVersion's own error tells well enough.
  if ('hosts' in spec) return false;
  return v1Versions.includes(String(raw.apiVersion)) || ['masters', 'nodes', 'network', 'certSANS'].some((k) => k in spec);
}
