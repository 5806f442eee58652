/**
 * Writing and editing Clusterfiles for `ci run`, `ci join` and `ci delete`. Edits go through the YAML library's
 * Document API, so a file's comments, its other documents (Plugin, Config) and its flow or block style stay as they
 * were; only the host groups touched change. The result is text: the caller parses it like any Clusterfile.
 */
import { Document, isMap, isSeq, parseAllDocuments, YAMLMap, YAMLSeq, type ToStringOptions } from 'yaml';
import { UsageError } from '../kernel/errors.js';

export type Role = 'master' | 'node';

export interface RunSpec {
  name: string;
  image: string;
  provider: 'BAREMETAL' | 'LOCAL';
  /** IPs (BAREMETAL) or a count (LOCAL). */
  masters: string[] | number;
  nodes: string[] | number;
  ssh?: { user?: string; passwd?: string; pk?: string; pkPasswd?: string; port?: number };
  env?: string[];
}

const REFERENCE = /^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/;

/**
 * A secret as the Clusterfile is to read it back: `${NAME}` stays a reference to the environment (the secret is
 * then never written); anything else is literal, its `${` escaped so that expansion gives back exactly the value.
 */
export function secretValue(v: string): string {
  return REFERENCE.test(v) ? v : escapeRefs(v);
}

/** `${` -> `$${`, which expansion reads back as `${`. (A replacement string would read `$$` as one `$`.) */
export function escapeRefs(v: string): string {
  return v.replaceAll('${', () => '$${');
}

export function isReference(v: string): boolean {
  return REFERENCE.test(v);
}

function group(hosts: string[] | number, role: Role): Record<string, unknown> {
  return typeof hosts === 'number' ? { count: hosts, roles: [role] } : { ips: hosts, roles: [role] };
}

/** The Clusterfile `ci run` writes: one group of masters, one of nodes (when there are any). */
export function runClusterfileText(spec: RunSpec): string {
  const ssh: Record<string, unknown> = {};
  if (spec.ssh?.user !== undefined) ssh.user = spec.ssh.user;
  if (spec.ssh?.passwd !== undefined) ssh.passwd = secretValue(spec.ssh.passwd);
  if (spec.ssh?.pk !== undefined) ssh.pk = spec.ssh.pk;
  if (spec.ssh?.pkPasswd !== undefined) ssh.pkPasswd = secretValue(spec.ssh.pkPasswd);
  if (spec.ssh?.port !== undefined) ssh.port = spec.ssh.port;
  const hosts = [group(spec.masters, 'master')];
  if (typeof spec.nodes === 'number' ? spec.nodes > 0 : spec.nodes.length > 0) hosts.push(group(spec.nodes, 'node'));
  const doc = new Document({
    apiVersion: 'cloudimage.io/v1',
    kind: 'Cluster',
    metadata: { name: spec.name },
    spec: {
      image: spec.image,
      provider: spec.provider,
      ...(Object.keys(ssh).length > 0 ? { ssh } : {}),
      ...(spec.env && spec.env.length > 0 ? { env: spec.env } : {}),
      hosts,
    },
  });
  const seqs = doc.getIn(['spec', 'hosts']) as YAMLSeq<YAMLMap>;
  for (const g of seqs.items) flowLists(g);
  doc.commentBefore = ` Written by \`ci run\`; \`ci join\` and \`ci delete\` edit it. Apply it with \`ci apply -f\`.`;
  return doc.toString(stringOptions(''));
}

function flowLists(g: YAMLMap): void {
  for (const key of ['ips', 'roles']) {
    const s = g.get(key, true);
    if (isSeq(s)) s.flow = true;
  }
}

/** Whether the file writes `- item` under a key at the key's own indentation (as sealer's examples do). */
function stringOptions(text: string): ToStringOptions {
  const lines = text.split('\n');
  let indentSeq = true;
  for (let i = 0; i + 1 < lines.length; i++) {
    const key = /^( *)[^\s#-][^:]*:\s*(#.*)?$/.exec(lines[i]);
    const item = key && /^( *)- /.exec(lines[i + 1]);
    if (key && item) {
      indentSeq = item[1].length > key[1].length;
      break;
    }
  }
  return { flowCollectionPadding: false, indentSeq, lineWidth: 0 };
}

export interface HostChange {
  role: Role;
  /** BAREMETAL: these IPs. */
  ips?: string[];
  /** Providers that make hosts: this many. */
  count?: number;
}

interface ClusterDocument {
  docs: Document.Parsed[];
  cluster: Document.Parsed;
  hosts: YAMLSeq<unknown>;
  name: string;
}

function open(text: string, file: string): ClusterDocument {
  const docs = parseAllDocuments(text, { keepSourceTokens: false });
  const list = Array.isArray(docs) ? docs : [];
  const cluster = list.find((d) => d.get('kind') === 'Cluster');
  const hosts = cluster?.getIn(['spec', 'hosts'], true);
  if (!cluster || !isSeq(hosts)) {
    throw new UsageError(`${file} has no Cluster document with spec.hosts to edit`, 'check the file with `ci plan -f`');
  }
  return { docs: list, cluster, hosts, name: String(cluster.getIn(['metadata', 'name']) ?? '') };
}

function rolesOf(g: unknown): string[] {
  if (!isMap(g)) return [];
  const r = g.get('roles', true);
  return isSeq(r) ? r.items.map((x) => String((x as { value?: unknown }).value ?? x)) : [];
}

const only = (g: unknown, role: Role) => { const r = rolesOf(g); return r.length === 1 && r[0] === role; };

function render(d: ClusterDocument, text: string): string {
  const opts = stringOptions(text);
  return d.docs.map((doc) => doc.toString(opts)).join('');
}

/** A group for the new hosts shaped like its neighbours: flow `{...}` if they are, lists in flow style. */
function newGroup(d: ClusterDocument, change: HostChange): YAMLMap {
  const g = d.cluster.createNode(change.ips ? { ips: change.ips, roles: [change.role] } : { count: change.count, roles: [change.role] }) as YAMLMap;
  flowLists(g);
  if (d.hosts.items.some((x) => isMap(x) && x.flow)) g.flow = true;
  return g;
}

/**
 * Adds hosts: IPs to the first group of only this role that has its own list and no ssh of its own (new hosts
 * log in as the cluster does), or a count to the first such group; otherwise a new group. `existing` is every IP
 * the cluster has now, from the parsed file.
 */
export function addHosts(text: string, file: string, change: HostChange, existing: Map<string, string[]>): string {
  const d = open(text, file);
  if (change.ips) {
    for (const ip of change.ips) {
      const roles = existing.get(ip);
      if (roles) throw new UsageError(`${ip} is already in cluster ${d.name} (as ${roles.join(', ')})`, `\`ci state list -f ${file}\` shows its hosts; give only new IPs`);
    }
    const target = d.hosts.items.find((g) => only(g, change.role) && isMap(g) && isSeq(g.get('ips', true)) && !g.has('ssh')) as YAMLMap | undefined;
    if (target) for (const ip of change.ips) (target.get('ips', true) as unknown as YAMLSeq).add(d.cluster.createNode(ip));
    else d.hosts.add(newGroup(d, change));
  } else {
    const target = d.hosts.items.find((g) => only(g, change.role) && isMap(g) && g.has('count')) as YAMLMap | undefined;
    if (target) target.set('count', Number(target.get('count')) + change.count!);
    else d.hosts.add(newGroup(d, change));
  }
  return render(d, text);
}

/**
 * Removes hosts: each IP from the group that lists it (a group left empty goes), or a count from the last groups
 * of the role (their last hosts go, as a lower count names them). The cluster keeps at least one master.
 */
export function removeHosts(text: string, file: string, change: HostChange, existing: Map<string, string[]>): string {
  const d = open(text, file);
  const drop = (g: unknown) => d.hosts.items.splice(d.hosts.items.indexOf(g), 1);
  if (change.ips) {
    for (const ip of change.ips) {
      const roles = existing.get(ip);
      if (!roles) throw new UsageError(`${ip} is not in cluster ${d.name}`, `\`ci state list -f ${file}\` shows its hosts`);
      if (roles.includes('master') !== (change.role === 'master')) {
        throw new UsageError(`${ip} is a ${change.role === 'master' ? 'node' : 'master'} of cluster ${d.name}, not a ${change.role}`, `delete it with ${change.role === 'master' ? '-n' : '-m'}`);
      }
      for (const g of [...d.hosts.items]) {
        const ips = isMap(g) ? g.get('ips', true) : undefined;
        if (!isSeq(ips)) continue;
        const at = ips.items.findIndex((x) => String((x as { value?: unknown }).value ?? x) === ip);
        if (at < 0) continue;
        ips.items.splice(at, 1);
        if (ips.items.length === 0) drop(g);
      }
    }
  } else {
    let left = change.count!;
    const have = d.hosts.items.filter((g) => only(g, change.role) && isMap(g) && g.has('count')).reduce((n: number, g) => n + Number((g as YAMLMap).get('count')), 0);
    if (left > have) throw new UsageError(`cluster ${d.name} has ${have} ${change.role}${have === 1 ? '' : 's'}, fewer than the ${left} to delete`, `give a count of at most ${have}`);
    for (const g of [...d.hosts.items].reverse()) {
      if (left === 0) break;
      if (!only(g, change.role) || !isMap(g) || !g.has('count')) continue;
      const n = Number(g.get('count'));
      const take = Math.min(n, left);
      left -= take;
      if (take === n) drop(g);
      else g.set('count', n - take);
    }
  }
  if (!d.hosts.items.some((g) => rolesOf(g).includes('master'))) {
    throw new UsageError(`that would leave cluster ${d.name} without a master`, `to remove the whole cluster, run \`ci delete --all --name ${d.name}\``);
  }
  return render(d, text);
}
