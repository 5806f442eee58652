/**
 * Plugin documents as they act. sealer wrote them in two generations: `spec.action` with `PreInit|PostInstall`
 * and `spec.on` (its v1 API), and `spec.action: pre-init-host` with `spec.scope: master|node` (its later one). Both
 * map onto the points of cloudimage's plan (PLUGIN_POINTS); what has no place in it is refused by name.
 */
import type { z } from 'zod';
import { canonicalJson, sha256 } from '../kernel/digest.js';
import { parseSelector, parseToken } from './selector.js';
import type { FieldPath } from './locate.js';
import type { DesiredHost, DesiredPlugin, NodeMetaLine, PluginPoint, SelectorToken } from './types.js';

export { PLUGIN_API_VERSIONS, PluginDocSchema } from './schema.js';
import { PluginDocSchema } from './schema.js';
export type PluginDoc = z.infer<typeof PluginDocSchema>;

/** sealer's action names, both generations, and the point of the plan each runs at. */
export const ACTIONS: Record<string, { point: PluginPoint; clusterScoped?: boolean }> = {
  Originally: { point: 'originally' },
  PreInstall: { point: 'pre-install', clusterScoped: true },
  'pre-install': { point: 'pre-install', clusterScoped: true },
  PreInit: { point: 'pre-init' },
  'pre-init-host': { point: 'pre-init' },
  'post-init-host': { point: 'post-init' },
  PreJoin: { point: 'pre-join' },
  PostJoin: { point: 'post-join' },
  PreGuest: { point: 'pre-guest' },
  PostInstall: { point: 'post-install' },
  'post-install': { point: 'post-install', clusterScoped: true },
  'upgrade-host': { point: 'upgrade' },
  upgrade: { point: 'upgrade', clusterScoped: true },
  PreClean: { point: 'pre-clean' },
  'pre-clean-host': { point: 'pre-clean' },
  'pre-uninstall': { point: 'pre-clean', clusterScoped: true },
  PostClean: { point: 'post-clean' },
  'post-clean-host': { point: 'post-clean' },
  'post-uninstall': { point: 'post-clean', clusterScoped: true },
};

/** sealer actions with no point in cloudimage's plan, and why. */
const REFUSED_ACTIONS: Record<string, string> = {
  'pre-scaleup': 'scale-up steps are not separate in cloudimage: use PreJoin, which runs before each host joins',
  'post-scaleup': 'scale-up steps are not separate in cloudimage: use PostJoin, which runs after each host joins',
  rollback: 'cloudimage rolls back by applying the earlier image, which runs the upgrade point: use upgrade-host',
};

const TYPES = ['SHELL', 'LABEL', 'TAINT', 'HOSTNAME'] as const;
const REFUSED_TYPES: Record<string, string> = {
  ETCD: 'back etcd up with a SHELL plugin (etcdctl snapshot save) at the point you need',
  CLUSTERCHECK: 'wait for the cluster in a SHELL plugin (kubectl wait) at PostInstall',
};

export interface PluginIssue {
  path: FieldPath;
  message: string;
  rule: string;
}

const EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'];
const LABEL_KEY = /^([A-Za-z0-9.-]+\/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?)?$/;

/** `key=value:Effect`, `key:Effect`, either with a trailing `-` (removal); or why not. */
export function taintError(t: string): string | undefined {
  const m = /^([^=:]+)(?:=([^:]*))?:([A-Za-z]+)(-?)$/.exec(t) ?? /^([^=:]+)(-)$/.exec(t);
  if (!m) return `"${t}" is not a taint: write key=value:NoSchedule, key:NoExecute, or key=value:NoSchedule- to remove one`;
  if (!LABEL_KEY.test(m[1])) return `"${m[1]}" is not a valid taint key`;
  if (m[2] !== undefined && m[2] !== '-' && !LABEL_VALUE.test(m[2])) return `"${m[2]}" is not a valid taint value`;
  if (m[3] !== undefined && m[3] !== '-' && !EFFECTS.includes(m[3])) return `taint effect "${m[3]}" must be one of ${EFFECTS.join(', ')}`;
  return undefined;
}

function nodeLines(type: 'LABEL' | 'TAINT', data: string, report: (msg: string) => void): NodeMetaLine[] {
  const out: NodeMetaLine[] = [];
  let bad = 0;
  const add = (msg: string) => {
    bad++;
    report(msg);
  };
  data.split('\n').forEach((line, i) => {
    const text = line.trim();
    if (text === '' || text.startsWith('#')) return;
    const [where, ...rest] = text.split(/\s+/);
    const select = parseToken(where);
    const at = `data line ${i + 1}`;
    if ('error' in select) return add(`${at}: ${select.error}`);
    if (rest.length === 0) return add(`${at}: nothing to set after "${where}"`);
    const items = rest.join('').split(',').filter(Boolean);
    const entry: NodeMetaLine = { select, labels: {}, unlabel: [], taints: [] };
    for (const item of items) {
      if (type === 'TAINT') {
        const bad = taintError(item);
        if (bad) return add(`${at}: ${bad}`);
        entry.taints.push(item);
      } else if (item.endsWith('-') && !item.includes('=')) {
        const key = item.slice(0, -1);
        if (!LABEL_KEY.test(key)) return add(`${at}: "${key}" is not a valid label key`);
        entry.unlabel.push(key);
      } else {
        const eq = item.indexOf('=');
        const key = eq < 0 ? item : item.slice(0, eq);
        const value = eq < 0 ? undefined : item.slice(eq + 1);
        if (value === undefined || !LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) {
          return add(`${at}: "${item}" is not a label: write key=value, or key- to remove one`);
        }
        entry.labels[key] = value;
      }
    }
    out.push(entry);
  });
  if (out.length === 0 && bad === 0) add(`no lines: write one "<address or host name> ${type === 'LABEL' ? 'key=value,...' : 'key=value:NoSchedule,...'}" a line`);
  return out;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/;

/** `<address or host name> <new hostname>` a line. */
function hostnameLines(data: string, add: (msg: string) => void): { select: SelectorToken; hostname: string }[] {
  const out: { select: SelectorToken; hostname: string }[] = [];
  let bad = 0;
  data.split('\n').forEach((line, i) => {
    const text = line.trim();
    if (text === '' || text.startsWith('#')) return;
    const parts = text.split(/\s+/);
    const select = parseToken(parts[0]);
    const why = 'error' in select ? select.error : parts.length !== 2 ? 'write one "<address> <hostname>" a line' : !HOSTNAME.test(parts[1]) ? `"${parts[1]}" is not a host name` : undefined;
    if (why) {
      bad++;
      return add(`data line ${i + 1}: ${why}`);
    }
    out.push({ select: select as SelectorToken, hostname: parts[1] });
  });
  if (out.length === 0 && bad === 0) add('no lines: write one "<address> <hostname>" a line');
  return out;
}

/** A validated Plugin document as it acts, or the problems found (located by the caller). */
export function pluginFromDoc(doc: PluginDoc): { plugin?: DesiredPlugin; issues: PluginIssue[] } {
  const issues: PluginIssue[] = [];
  const issue = (path: FieldPath, message: string, rule = 'plugin') => issues.push({ path, message, rule });
  const type = doc.spec.type;
  if (!(TYPES as readonly string[]).includes(type)) {
    const why = REFUSED_TYPES[type];
    issue(['spec', 'type'], why ? `plugin type ${type} is not supported: ${why}` : `unknown plugin type ${JSON.stringify(type)}: expected one of ${TYPES.join(', ')}`, 'plugin-type');
    return { issues };
  }
  if (doc.spec.on !== undefined && doc.spec.scope !== undefined) issue(['spec', 'scope'], 'give either on or scope, not both');
  const actionText = doc.spec.action ?? (type === 'SHELL' ? undefined : type === 'HOSTNAME' ? 'PreInit' : 'PostInstall');
  if (actionText === undefined) {
    issue(['spec', 'action'], 'is required: say where the plugin runs (PreInit, PostInstall...)');
    return { issues };
  }
  const points: PluginPoint[] = [];
  let clusterScoped = false;
  for (const raw of actionText.split('|').map((a) => a.trim())) {
    const a = ACTIONS[raw];
    if (a) {
      if (!points.includes(a.point)) points.push(a.point);
      clusterScoped ||= !!a.clusterScoped;
    } else if (REFUSED_ACTIONS[raw]) issue(['spec', 'action'], `action ${raw} is not supported: ${REFUSED_ACTIONS[raw]}`, 'plugin-action');
    else issue(['spec', 'action'], `unknown action ${JSON.stringify(raw)}: expected one of ${Object.keys(ACTIONS).join(', ')}`, 'plugin-action');
  }
  if (type === 'HOSTNAME' && points.some((p) => p !== 'originally' && p !== 'pre-init')) {
    issue(['spec', 'action'], 'a HOSTNAME plugin names hosts before they are set up, so it runs at PreInit (or Originally)', 'plugin-action');
  }
  if ((type === 'LABEL' || type === 'TAINT') && points.some((p) => p !== 'post-install' && p !== 'post-join')) {
    issue(['spec', 'action'], `a ${type} plugin acts on Kubernetes nodes, so it runs at PostInstall or PostJoin`, 'plugin-action');
  }
  const selField = doc.spec.on !== undefined ? 'on' : 'scope';
  const selText = doc.spec.on ?? doc.spec.scope;
  let on: SelectorToken[] | undefined;
  if (selText !== undefined && selText.trim() !== '') {
    const r = parseSelector(selText);
    if ('error' in r) issue(['spec', selField], r.error, 'plugin-selector');
    else on = r.tokens;
  } else if (clusterScoped) on = [{ kind: 'master0' }];
  let nodes: NodeMetaLine[] | undefined;
  let hostnames: DesiredPlugin['hostnames'];
  if (type === 'HOSTNAME') {
    if (selText !== undefined) issue(['spec', selField], 'a HOSTNAME plugin names its hosts in data, one a line');
    hostnames = hostnameLines(doc.spec.data, (m) => issue(['spec', 'data'], m, 'plugin-data'));
  } else if (type !== 'SHELL') {
    if (selText !== undefined) issue(['spec', selField], `a ${type} plugin names its hosts in data, one a line`);
    nodes = nodeLines(type as 'LABEL' | 'TAINT', doc.spec.data, (m) => issue(['spec', 'data'], m, 'plugin-data'));
  } else if (doc.spec.data.trim() === '') issue(['spec', 'data'], 'is empty: give the script to run');
  if (issues.length) return { issues };
  const plugin: DesiredPlugin = {
    name: doc.metadata.name,
    type: type as DesiredPlugin['type'],
    points,
    data: doc.spec.data,
    identity: sha256(canonicalJson({ type, data: doc.spec.data })),
  };
  if (on) plugin.on = on;
  if (nodes) plugin.nodes = nodes;
  if (hostnames) plugin.hostnames = hostnames;
  return { plugin, issues };
}

/** Selector entries that name a role no host has and no host: checked once the hosts are known. */
export function unknownNames(tokens: SelectorToken[], hosts: DesiredHost[]): string[] {
  const known = new Set(hosts.flatMap((h) => [...h.roles, h.key, ...(h.name ? [h.name] : [])]));
  return tokens.filter((t): t is Extract<SelectorToken, { kind: 'name' }> => t.kind === 'name' && !known.has(t.name)).map((t) => t.name);
}
