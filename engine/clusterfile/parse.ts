/**
 * Clusterfile loading in stages: YAML (with positions) -> YAML subset (no anchors, aliases or merge keys) ->
 * `${VAR}` expansion -> strict schema -> semantic rules -> normalised DesiredCluster. Every problem is collected
 * with its file:line:column and field path and thrown together as one ClusterfileInvalidError. No message quotes
 * the YAML text; passwords and passphrases are registered as secrets as soon as read.
 */
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { isIP } from 'node:net';
import { dirname, resolve as resolvePath } from 'node:path';
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import type { z } from 'zod';
import { canonicalJson, sha256 } from '../kernel/digest.js';
import { ClusterfileError } from '../kernel/errors.js';
import { registerSecret } from '../kernel/redact.js';
import type { StateBackendSpec } from '../kernel/types.js';
import { providerNamed, DEFAULT_PROVIDER } from '../../providers/registry.js';
import { ClusterfileInvalidError, type ClusterfileIssue } from './errors.js';
import { envValues, expandVars, parseEnvList, UnsetVariable } from './env.js';
import { derivedEnv, looksLikeV1, v1Message } from './compat.js';
import { documentsDigest, maskedDocument } from './documents.js';
import { formatPath, isPlainKey, locate, type FieldPath } from './locate.js';
import { groupInputs, providerBlock, RULES, ttlSeconds } from './rules.js';
import { subsetIssues, syntaxMessage } from './yaml-subset.js';
import { configSpecIssues } from './config-spec.js';
import { ClusterDocSchema, ExtraDocSchema, OtherDocSchema, V1_API_VERSIONS, type ClusterDoc, type ExtraDoc, type SshDoc } from './schema.js';
import type { DesiredCluster, DesiredHost, DesiredPlugin, DesiredSsh, ExtraDocument, KeptDocument } from './types.js';
import { pluginFromDoc, PluginDocSchema, taintError, unknownNames } from './plugins.js';

/** An alias bomb repeats one construct many times: the first few located are enough to fix the file. */
const MAX_SUBSET_ISSUES = 10;

export interface ParseOptions {
  /** `--env K=V` of the command line: over the file's cluster env and every group's env. */
  envOverrides?: Record<string, string>;
}

export async function loadClusterfile(path: string, env: NodeJS.ProcessEnv = process.env, opts: ParseOptions = {}): Promise<DesiredCluster> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err: any) {
    const why = err?.code === 'ENOENT' ? 'no such file' : (err?.message ?? String(err));
    throw new ClusterfileError({ file: path }, `cannot read the Clusterfile: ${why}`, 'pass the right path with -f');
  }
  return parseClusterfile(text, path, env, opts);
}

export function parseClusterfile(text: string, fileName: string, env: NodeJS.ProcessEnv = process.env, opts: ParseOptions = {}): DesiredCluster {
  const lines = new LineCounter();
  // logLevel error: the library would print warnings itself, quoting keys of the file.
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, logLevel: 'error' });
  const issues: ClusterfileIssue[] = [];
  const list = Array.isArray(docs) ? docs : [];
  if (!Array.isArray(docs)) {
    issues.push({ location: { file: fileName, line: 1, column: 1 }, path: '(document)', message: 'empty file', rule: 'yaml' });
  }

  const at = (offset: number) => {
    const pos = lines.linePos(offset);
    return { file: fileName, line: pos.line, column: pos.col };
  };
  let refused = 0;
  for (const doc of list) {
    // An unknown tag is only a warning to the library; here, like an unknown field, it is an error.
    for (const e of [...doc.errors, ...doc.warnings.filter((w) => w.code === 'TAG_RESOLVE_FAILED')]) {
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      issues.push({ location: { file: fileName, line: pos.line, column: pos.col }, path: '(yaml)', message: syntaxMessage(e.code), rule: 'yaml' });
    }
    // Before any value is built: an alias is never expanded, so an alias bomb costs what its text costs.
    for (const i of subsetIssues(doc, text)) {
      if (++refused <= MAX_SUBSET_ISSUES) issues.push({ location: at(i.offset), path: formatPath(i.path), message: i.message, rule: i.rule });
    }
  }
  if (refused > MAX_SUBSET_ISSUES) {
    issues.push({ location: { file: fileName }, path: '(document)', message: `and ${refused - MAX_SUBSET_ISSUES} more anchors, aliases or merge keys`, rule: 'yaml-alias' });
  }
  if (issues.length) throw new ClusterfileInvalidError(issues);

  const add = (doc: Document, path: FieldPath, message: string, rule: string, atKey = false) =>
    issues.push({ location: locate(doc, lines, fileName, path, atKey), path: formatPath(path), message, rule });

  let cluster: { doc: Document; value: ClusterDoc } | undefined;
  const plugins: ExtraDocument[] = [];
  const acting: { doc: Document; plugin: DesiredPlugin }[] = [];
  const configs: ExtraDocument[] = [];
  const documents: KeptDocument[] = [];
  for (const doc of list) {
    if (doc.contents === null) continue;
    // maxAliasCount 0: aliases were refused above; should one slip through, it is never expanded.
    const js = doc.toJS({ maxAliasCount: 0 });
    const kind = js && typeof js === 'object' ? (js as Record<string, unknown>).kind : undefined;
    // A Plugin's script is the shell's to expand on the host, as sealer leaves it: `${HOME}` there is the host's.
    const keep = kind === 'Plugin' ? (path: FieldPath) => path.length === 2 && path[0] === 'spec' && path[1] === 'data' : undefined;
    const raw = expandAll(js, [], env, (path, variable) =>
      add(doc, path, `environment variable ${variable} is not set: export it or remove \${${variable}}`, 'unset-variable'),
      keep,
    );
    if (kind === 'Cluster' && looksLikeV1(raw as Record<string, unknown>, V1_API_VERSIONS)) {
      add(doc, ['apiVersion'], v1Message(), 'clusterfile-v1');
      continue;
    }
    if (kind === 'Cluster') {
      const r = ClusterDocSchema.safeParse(raw);
      if (!r.success) {
        schemaIssues(r.error.issues, raw, (path, msg, atKey) => add(doc, path, msg, 'schema', atKey));
        continue;
      }
      if (cluster) {
        add(doc, ['kind'], 'a second Cluster document: a Clusterfile describes exactly one cluster', 'one-cluster');
        continue;
      }
      cluster = { doc, value: r.data };
    } else if (kind === 'Plugin') {
      const r = PluginDocSchema.safeParse(raw);
      if (!r.success) {
        schemaIssues(r.error.issues, raw, (path, msg, atKey) => add(doc, path, msg, 'schema', atKey));
        continue;
      }
      const p = pluginFromDoc(r.data);
      for (const i of p.issues) add(doc, i.path, i.message, i.rule);
      if (!p.plugin) continue;
      const twin = acting.find((a) => a.plugin.name === p.plugin!.name);
      if (twin) add(doc, ['metadata', 'name'], `a second Plugin named ${p.plugin.name}: plugin names are their steps' names, so each is unique`, 'plugin-name');
      else acting.push({ doc, plugin: p.plugin });
      plugins.push(extraDocument(r.data as unknown as ExtraDoc));
    } else if (kind === 'Config') {
      const r = ExtraDocSchema.safeParse(raw);
      if (!r.success) {
        schemaIssues(r.error.issues, raw, (path, msg, atKey) => add(doc, path, msg, 'schema', atKey));
        continue;
      }
      const bad = configSpecIssues(r.data.spec as Record<string, unknown>);
      for (const i of bad) add(doc, i.path, i.message, 'config');
      if (bad.length) continue;
      const extra = extraDocument(r.data);
      extra.at = { file: fileName, line: locate(doc, lines, fileName, ['kind'], true).line ?? 1 };
      configs.push(extra);
    } else if (OtherDocSchema.safeParse(raw).success) {
      const d = raw as { apiVersion: string; kind: string; metadata?: { name?: unknown } };
      const kept: KeptDocument = { apiVersion: d.apiVersion, kind: d.kind, body: raw as Record<string, unknown> };
      if (typeof d.metadata?.name === 'string') kept.name = d.metadata.name;
      maskedDocument(kept); // registers its secrets now, before anything can print them
      documents.push(kept);
    } else {
      const missing = typeof kind === 'string' && kind ? 'apiVersion' : 'kind';
      add(doc, [missing], `a document needs an apiVersion and a kind: Cluster, Plugin, Config, or another kind (Application, ClusterConfiguration...) to hand to the hooks`, 'schema');
    }
  }
  if (!cluster && issues.length === 0) {
    issues.push({ location: { file: fileName, line: 1, column: 1 }, path: '(document)', message: 'no document of kind Cluster', rule: 'one-cluster' });
  }
  if (cluster) {
    for (const rule of RULES) for (const i of rule.check(cluster.value)) add(cluster.doc, i.path, i.message, i.rule, i.atKey);
    (cluster.value.spec.hostAliases ?? []).forEach((a, ai) => {
      if (isIP(a.ip) === 0) add(cluster!.doc, ['spec', 'hostAliases', ai, 'ip'], `"${a.ip}" is not an IP address`, 'host-alias');
      if (a.hostnames.length === 0) add(cluster!.doc, ['spec', 'hostAliases', ai, 'hostnames'], 'names no host name', 'host-alias');
      a.hostnames.forEach((n, ni) => {
        if (!/^[A-Za-z0-9]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?$/.test(n)) add(cluster!.doc, ['spec', 'hostAliases', ai, 'hostnames', ni], 'is not a host name', 'host-alias');
      });
    });
    cluster.value.spec.hosts.forEach((g, gi) =>
      (g.taints ?? []).forEach((t, ti) => {
        const bad = taintError(t);
        if (bad) add(cluster!.doc, ['spec', 'hosts', gi, 'taints', ti], bad, 'taint');
      }),
    );
  }
  if (issues.length) throw new ClusterfileInvalidError(issues);
  const result = normalise(cluster!.value, plugins, configs, documents, env, opts.envOverrides ?? {}, acting.map((a) => a.plugin));
  // Names in selectors are checked against the hosts as the provider expands them (LOCAL hosts are named then).
  for (const { doc, plugin } of acting) {
    const field = doc.toJS()?.spec?.on !== undefined ? 'on' : 'scope';
    const missing = unknownNames(plugin.on ?? [], result.hosts);
    if (missing.length) add(doc, ['spec', field], `${missing.map((n) => JSON.stringify(n)).join(', ')} names no role and no host of the cluster`, 'plugin-selector');
    for (const line of [...(plugin.nodes ?? []), ...(plugin.hostnames ?? [])]) {
      const gone = unknownNames([line.select], result.hosts);
      if (gone.length) add(doc, ['spec', 'data'], `${JSON.stringify(gone[0])} names no role and no host of the cluster`, 'plugin-selector');
    }
  }
  if (issues.length) throw new ClusterfileInvalidError(issues);
  const backend = backendSpec(cluster!.value, fileName);
  return backend ? { ...result, backend } : result;
}

/** `spec.backend` as the state layer takes it: TLS files resolved against the Clusterfile's folder, the TTL in seconds. */
function backendSpec(doc: ClusterDoc, fileName: string): StateBackendSpec | undefined {
  const b = doc.spec.backend;
  if (!b) return undefined;
  if (b.type === 'local') return { type: 'local' };
  const at = (p: string | undefined) => (p === undefined ? undefined : resolvePath(dirname(fileName), p));
  const tls = b.tls ? Object.fromEntries(Object.entries({ ca: at(b.tls.ca), cert: at(b.tls.cert), key: at(b.tls.key) }).filter(([, v]) => v !== undefined)) : undefined;
  return {
    type: 'etcd',
    endpoints: [...(b.endpoints ?? [])],
    ...(b.prefix !== undefined ? { prefix: b.prefix } : {}),
    ...(tls ? { tls } : {}),
    ...(b.lockTTL !== undefined ? { lockTtlSeconds: ttlSeconds(b.lockTTL) } : {}),
    ...(b.history !== undefined ? { history: b.history } : {}),
  };
}

function expandAll(
  v: unknown,
  path: (string | number)[],
  env: NodeJS.ProcessEnv,
  onUnset: (path: FieldPath, variable: string) => void,
  keep?: (path: FieldPath) => boolean,
): unknown {
  if (keep?.(path)) return v;
  if (typeof v === 'string') {
    try {
      return expandVars(v, env);
    } catch (err) {
      if (err instanceof UnsetVariable) {
        onUnset(path, err.variable);
        return v;
      }
      throw err;
    }
  }
  if (Array.isArray(v)) return v.map((x, i) => expandAll(x, [...path, i], env, onUnset, keep));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = expandAll(x, [...path, k], env, onUnset, keep);
    return out;
  }
  return v;
}

function schemaIssues(
  zIssues: z.core.$ZodIssue[],
  raw: unknown,
  add: (path: FieldPath, message: string, atKey: boolean) => void,
): void {
  for (const i of zIssues) {
    const path = i.path as (string | number)[];
    if (i.code === 'unrecognized_keys') {
      for (const k of i.keys) {
        const what = isPlainKey(k) ? `unknown field "${k}"` : 'unknown field, its name not shown as it is not a plain word (is a ":" missing?)';
        add([...path, k], `${what}: remove it or check its spelling`, true);
      }
      continue;
    }
    if (i.code === 'invalid_type' && valueAt(raw, path) === undefined) {
      add(path, 'is required', false);
      continue;
    }
    if (i.code === 'invalid_type') {
      add(path, `must be ${article(i.expected)}, not ${describe(valueAt(raw, path))}`, false);
      continue;
    }
    if (i.code === 'invalid_value') {
      add(path, `must be one of ${i.values.map((v) => JSON.stringify(v)).join(', ')}`, false);
      continue;
    }
    add(path, i.message.charAt(0).toLowerCase() + i.message.slice(1), false);
  }
}

function valueAt(raw: unknown, path: readonly (string | number)[]): unknown {
  let v = raw;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

function article(expected: string): string {
  if (expected === 'int') return 'an integer';
  if (expected === 'array') return 'a list';
  if (expected === 'object') return 'a mapping';
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'number' && !Number.isInteger(v)) return 'a fraction';
  return `a ${typeof v}`;
}

function extraDocument(d: ExtraDoc): ExtraDocument {
  return { apiVersion: d.apiVersion, kind: d.kind, name: d.metadata.name, spec: d.spec as Record<string, unknown> };
}

function envRecord(list: string[] | undefined): Record<string, string[]> {
  const r = parseEnvList(list ?? []);
  return 'bad' in r ? {} : (r as Record<string, string[]>); // malformed entries were reported by the bad-env rule
}

function mergeSsh(base: SshDoc | undefined, over: SshDoc | undefined, env: NodeJS.ProcessEnv): DesiredSsh {
  const pick = <K extends keyof SshDoc>(k: K): SshDoc[K] => (over?.[k] !== undefined && over[k] !== null ? over[k] : base?.[k]);
  const nonEmpty = (s: string | null | undefined) => (s === undefined || s === null || s === '' ? undefined : s);
  const pk = nonEmpty(pick('pk'));
  const home = env.HOME ?? homedir();
  const ssh: DesiredSsh = {
    user: nonEmpty(pick('user')) ?? 'root',
    port: pick('port') === undefined || pick('port') === null ? 22 : Number(pick('port')),
  };
  const password = nonEmpty(pick('passwd'));
  const passphrase = nonEmpty(pick('pkPasswd'));
  if (password !== undefined) ssh.password = password;
  if (pk !== undefined) ssh.privateKeyPath = pk === '~' ? home : pk.startsWith('~/') ? home + pk.slice(1) : pk;
  if (passphrase !== undefined) ssh.passphrase = passphrase;
  registerSecret(password);
  registerSecret(passphrase);
  return ssh;
}

function normalise(
  doc: ClusterDoc,
  plugins: ExtraDocument[],
  configs: ExtraDocument[],
  documents: KeptDocument[],
  env: NodeJS.ProcessEnv,
  overrides: Record<string, string>,
  acting: DesiredPlugin[] = [],
): DesiredCluster {
  const name = doc.metadata.name;
  const provider = providerNamed(doc.spec.provider ?? DEFAULT_PROVIDER);
  const clusterLayer = { ...derivedEnv(doc), ...envRecord(doc.spec.env) };
  // `--env` wins over the file's env, the cluster's and every group's.
  const overrideLayer = Object.fromEntries(Object.entries(overrides).map(([k, v]) => [k, [v]]));
  const cluster = envValues(clusterLayer, overrideLayer);
  const block = providerBlock(doc);
  const groups = doc.spec.hosts;
  const hosts: DesiredHost[] = provider.clusterfile.expand({ cluster: name, block, groups: groupInputs(doc) }).map((e) => {
    const g = groups[e.group];
    const hostEnv = envValues(clusterLayer, envRecord(g.env), overrideLayer);
    const h: DesiredHost = { key: e.key, roles: [...g.roles], env: hostEnv.env, ssh: mergeSsh(doc.spec.ssh, g.ssh, env) };
    if (Object.keys(hostEnv.lists).length) h.envLists = hostEnv.lists;
    if (g.labels !== undefined) h.labels = { ...g.labels };
    if (g.taints !== undefined) h.taints = [...g.taints];
    if (e.ip !== undefined) h.ip = e.ip;
    if (e.name !== undefined) h.name = e.name;
    if (e.make) h.make = e.make;
    return h;
  });
  const ordered = [...hosts.filter((h) => h.roles.includes('master')), ...hosts.filter((h) => !h.roles.includes('master'))];
  const withoutDigest: Omit<DesiredCluster, 'digest'> = {
    name,
    apiVersion: doc.apiVersion,
    image: doc.spec.image.trim(),
    provider: provider.name,
    makesHosts: provider.makesHosts,
    ...(block !== undefined ? { providerBlock: block } : {}),
    env: cluster.env,
    ...(Object.keys(cluster.lists).length ? { envLists: cluster.lists } : {}),
    ...(doc.spec.cmd_args !== undefined ? { cmdArgs: envValues(envRecord(doc.spec.cmd_args)).env } : {}),
    ...(doc.spec.hostAliases !== undefined ? { hostAliases: doc.spec.hostAliases.map((a) => ({ ip: a.ip, hostnames: [...a.hostnames] })) } : {}),
    hosts: ordered,
    plugins,
    ...(acting.length ? { pluginSteps: [...acting].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) } : {}),
    configs,
    documents,
    ...(documents.length ? { documentsDigest: documentsDigest(documents) } : {}),
  };
  return { ...withoutDigest, digest: clusterDigest(withoutDigest) };
}

/** sha256 over the normalised cluster with every secret left out, so it can live in plan files. */
export function clusterDigest(c: Omit<DesiredCluster, 'digest'>): `sha256:${string}` {
  const hosts = c.hosts.map((h) => ({ ...h, ssh: { user: h.ssh.user, port: h.ssh.port, privateKeyPath: h.ssh.privateKeyPath } }));
  // Where a document sits in the file is not what it says: moving it leaves the plan fresh. Other documents count
  // as hooks see them, secrets masked (documentsDigest); none leaves the digest as it was before.
  const placeless = (d: ExtraDocument) => ({ ...d, at: undefined });
  const { documents: _documents, ...rest } = c;
  return sha256(canonicalJson({ ...rest, hosts, plugins: rest.plugins.map(placeless), configs: rest.configs.map(placeless) }));
}
