/**
 * The Clusterfile's plugins, node labels/taints and host aliases as plan steps, placed at their points among the
 * steps the planner made. Pure: it reads the planned actions and the state, adds its own steps and makes the
 * planner's steps wait for them where a point comes before (init-host waits for PreInit). A step runs when what it
 * would apply differs from what the host recorded (`applied`), so an unchanged plugin does not run again.
 */
import { canonicalJson, sha256, type Digest } from '../engine/kernel/digest.js';
import type { DesiredCluster, DesiredPlugin, HostAlias, PluginPoint, SelectorToken } from '../engine/clusterfile/types.js';
import type { ClusterState, HostState } from '../state/model.js';
import type { Action, NodeMetaAction, PluginAction } from './actions.js';

/** A host as selectors see it; `ip` absent when the host is still to be made. */
export interface SelectableHost {
  key: string;
  name?: string;
  ip?: string;
  roles: string[];
  labels?: Record<string, string>;
}

export type Selection = 'yes' | 'no' | 'if-address';

function ipv4Number(s: string): number {
  return s.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

function tokenSelects(t: SelectorToken, h: SelectableHost, master0: string | undefined): Selection {
  switch (t.kind) {
    case 'master0':
      return h.key === master0 ? 'yes' : 'no';
    case 'name':
      return h.roles.includes(t.name) || h.key === t.name || h.name === t.name ? 'yes' : 'no';
    case 'label':
      return h.labels?.[t.key] === t.value ? 'yes' : 'no';
    case 'ip':
      return h.ip === undefined ? 'if-address' : h.ip === t.ip ? 'yes' : 'no';
    case 'range': {
      if (h.ip === undefined) return 'if-address';
      if (!/^\d+\.\d+\.\d+\.\d+$/.test(h.ip)) return 'no';
      const n = ipv4Number(h.ip);
      return n >= ipv4Number(t.from) && n <= ipv4Number(t.to) ? 'yes' : 'no';
    }
  }
}

/** Whether a selector (absent: every host) picks the host; `if-address` when only its address, unknown yet, decides. */
export function selects(tokens: SelectorToken[] | undefined, h: SelectableHost, master0: string | undefined): Selection {
  if (!tokens) return 'yes';
  const r = tokens.map((t) => tokenSelects(t, h, master0));
  return r.includes('yes') ? 'yes' : r.includes('if-address') ? 'if-address' : 'no';
}

/** Whether an address matches the address entries of a selector (the executor's check for `ifAddress`). */
export function addressSelected(tokens: SelectorToken[], ip: string): boolean {
  return tokens.some((t) => tokenSelects(t, { key: '', ip, roles: [] }, undefined) === 'yes');
}

/** Host points in plan order; the clean points are planned only where a host is cleaned. */
const HOST_POINTS: PluginPoint[] = ['originally', 'pre-install', 'pre-init', 'post-init', 'pre-join', 'post-join', 'pre-guest', 'upgrade', 'post-install'];

export const pluginId = (p: DesiredPlugin, point: PluginPoint, key: string) => `plugin:${p.points.length > 1 ? `${p.name}@${point}` : p.name}:${key}`;
export const pluginRecord = (name: string, point: PluginPoint) => `plugin:${name}@${point}`;
export const aliasesDigest = (aliases: HostAlias[]): Digest => sha256(canonicalJson(aliases));

/** The planned steps as plugin steps read them: a Map of them, or the planner's table. */
export type PlannedSteps = Pick<ReadonlyMap<string, Action>, 'get' | 'values'>;

interface Ctx {
  actions: PlannedSteps;
  add: (a: Action) => void;
  /** The index of `actions`, when the caller keeps one (it is told of every step added through `add`). */
  index?: PlanIndex;
  /** Adds a dep to planned steps (see waiter), when the caller keeps one. */
  waitFor?: (dependents: string[], id: string) => void;
}

/** The context with an index and a waiter that learn of every step added. */
export function indexed(ctx: Ctx): Required<Ctx> {
  if (ctx.index && ctx.waitFor) return ctx as Required<Ctx>;
  const index = planIndex(ctx.actions);
  return {
    actions: ctx.actions,
    index,
    waitFor: waiter(ctx.actions),
    add: (a) => {
      ctx.add(a);
      index.added(a);
    },
  };
}

const JOIN_HOOKS = new Set(['init-master0', 'join-master', 'join-node']);

/**
 * The planned steps the plugin steps attach to, indexed by host and by kind: a lookup costs what it returns, not
 * a scan of the whole plan (plugin steps look up per host and point, so scans made large plans quadratic). Ids
 * come out in the order the steps were planned. Steps added later are indexed through `added`. The index is built
 * at its first lookup, from the plan as it then is: a plan without plugins, aliases or labels never asks one, and
 * indexing 200,000 steps for nothing was a tenth of a 50,000-host plan.
 */
export function planIndex(actions: PlannedSteps) {
  const rank = new Map<string, number>();
  const onHost = new Map<string, string[]>();
  const madeIn = new Map<string, string[]>();
  const ofKind = new Map<Action['kind'], string[]>();
  const push = <K>(m: Map<K, string[]>, k: K, id: string) => {
    const list = m.get(k);
    if (list) list.push(id);
    else m.set(k, [id]);
  };
  let built = false;
  const index = (a: Action) => {
    // A step planned again under the same id keeps its place, as in the Map; the lookups read the step now there.
    if (rank.has(a.id)) return;
    rank.set(a.id, rank.size);
    push(ofKind, a.kind, a.id);
    // Not the steps master0 runs for every node (node-meta) nor plugin steps: no lookup asks for those by host.
    if (a.host !== undefined && a.kind !== 'node-meta' && a.kind !== 'plugin' && a.kind !== 'host-aliases') push(onHost, a.host, a.id);
    if (a.kind === 'create-host') for (const h of a.hosts) if (h.key !== a.host) push(madeIn, h.key, a.id);
  };
  // Before the first lookup the Map itself is the record: building then reads every step added so far, in order.
  const added = (a: Action) => {
    if (built) index(a);
  };
  const whenBuilt = <T>(read: () => T): T => {
    if (!built) {
      built = true;
      for (const a of actions.values()) index(a);
    }
    return read();
  };
  const hostSteps = (key: string) => whenBuilt(() => onHost.get(key));
  const madeInOf = (key: string) => whenBuilt(() => madeIn.get(key));
  const ofKindOf = (k: Action['kind']) => whenBuilt(() => ofKind.get(k));
  const pick = (ids: string[] | undefined, pred: (a: Action) => boolean): string[] => {
    const out: string[] = [];
    for (const id of ids ?? []) {
      const a = actions.get(id);
      if (a && pred(a)) out.push(id);
    }
    return out;
  };
  /** Ids of several lists (each in plan order) merged into plan order. */
  const merged = (...lists: (string[] | undefined)[]): string[] => {
    const some = lists.filter((l): l is string[] => !!l && l.length > 0);
    return some.length <= 1 ? (some[0] ?? []) : some.flat().sort((x, y) => rank.get(x)! - rank.get(y)!);
  };
  const hook = (key: string, names: string[]) => pick(hostSteps(key), (a) => a.kind === 'hook' && names.includes(a.hook));
  const isPrep = (key: string) => (a: Action) =>
    (a.kind === 'create-host' && a.hosts.some((h) => h.key === key)) || ((a.kind === 'send-layers' || a.kind === 'unpack') && a.host === key);
  const prep = (key: string) => pick(merged(hostSteps(key), madeInOf(key)), isPrep(key));
  const made = (key: string) => pick(merged(hostSteps(key), madeInOf(key)), (a) => a.kind === 'create-host' && a.hosts.some((h) => h.key === key));
  const kind = (k: Action['kind'], pred: (a: Action) => boolean = () => true) => pick(ofKindOf(k), pred);
  const onHostOf = (key: string, pred: (a: Action) => boolean) => pick(hostSteps(key), pred);
  const members = () => kind('hook', (a) => a.kind === 'hook' && (JOIN_HOOKS.has(a.hook) || a.hook === 'reconfigure' || a.hook === 'upgrade'));
  const guests = () => pick(merged(ofKindOf('run-cmd'), ofKindOf('launch-app')), () => true);
  return { hook, prep, made, kind, onHost: onHostOf, members, guests, added };
}

export type PlanIndex = ReturnType<typeof planIndex>;

/**
 * Makes each of `dependents` wait for `id`. The set of each dependent's deps is kept beside it, so adding a dep
 * does not scan the list (a pre-install plugin on every host makes every join wait for every host's step).
 */
function waiter(actions: PlannedSteps) {
  const depsOf = new WeakMap<Action, Set<string>>();
  return (dependents: string[], id: string): void => {
    for (const d of dependents) {
      const a = actions.get(d);
      if (!a) continue;
      let set = depsOf.get(a);
      if (!set) depsOf.set(a, (set = new Set(a.deps)));
      if (set.has(id)) continue;
      set.add(id);
      a.deps.push(id);
    }
  };
}

function selectable(key: string, hs: HostState | undefined, d: { name?: string; ip?: string; roles: string[]; labels?: Record<string, string> } | undefined): SelectableHost {
  const ip = hs?.ip || d?.ip;
  return { key, roles: d?.roles ?? hs?.roles ?? [], ...(d?.name ?? hs?.name ? { name: d?.name ?? hs?.name } : {}), ...(ip ? { ip } : {}), ...(d?.labels ? { labels: d.labels } : {}) };
}

function addressTokens(tokens: SelectorToken[] | undefined): SelectorToken[] {
  return (tokens ?? []).filter((t) => t.kind === 'ip' || t.kind === 'range');
}

/** Adds the plugin, node-meta and host-aliases steps of an apply plan. */
export function addPluginSteps(input: { desired: DesiredCluster; state?: ClusterState; master0: string; removed: HostState[] }, ctx: Ctx): void {
  const { desired, state, master0 } = input;
  const cx = indexed(ctx);
  const { add, waitFor, index: f } = cx;
  const plugins = desired.pluginSteps ?? [];
  const shell = plugins.filter((p) => p.type === 'SHELL' || p.type === 'HOSTNAME');
  const lastOnHost = new Map<string, string>();
  const byPoint = new Map<PluginPoint, string[]>();
  const note = (point: PluginPoint, id: string) => {
    const list = byPoint.get(point);
    if (list) list.push(id);
    else byPoint.set(point, [id]);
  };
  const at = (...points: PluginPoint[]) => points.flatMap((p) => byPoint.get(p) ?? []);

  // Steps that wait for every member (or every pre-install step) wait for a gate holding that list once: listed in
  // each step, it made plans grow as hosts squared (5,000 hosts with one pre-install plugin: 50 million deps, 78 s).
  // A gate is made when a step first needs its list, and made again only once the list has changed.
  const gates = new Map<string, { key: string; id: string; n: number }>();
  const gated = (name: string, key: string, list: () => string[]): string[] => {
    const known = gates.get(name);
    if (known?.key === key) return [known.id];
    const deps = list();
    if (deps.length === 0) return [];
    // Numbered in the order they are made, as the plan is made the same way each time: `gate:post-install:2`.
    const n = (known?.n ?? 0) + 1;
    const id = n === 1 ? `gate:${name}` : `gate:${name}:${n}`;
    add({ id, kind: 'gate', reason: `${deps.length} steps first`, deps });
    gates.set(name, { key, id, n });
    return [id];
  };
  const count = (...points: PluginPoint[]) => points.map((p) => byPoint.get(p)?.length ?? 0).join('.');
  // Node-meta steps whose waits, followed back, reach every node-meta step planned so far: one, while each waits for
  // the one before (at PreGuest and PostInstall they all run on master0, one after another, as when each named every
  // earlier one), so that one stands for all of them in what later steps wait for.
  let metas: string[] = [];
  // Where the latest of them (the last of `metas`) was planned: its point, and the plugin steps planned by then.
  let lastMeta: { point: PluginPoint; notes: string } | undefined;
  const preInstall = () => gated('pre-install', '', () => at('pre-install'));

  // Host aliases first: everything after may resolve the names they give.
  const wanted = desired.hostAliases ?? [];
  const aliasesId = new Map<string, string>();
  const identity = aliasesDigest(wanted);
  for (const h of desired.hosts) {
    const recorded = state?.hosts[h.key]?.applied?.['host-aliases'];
    if (wanted.length ? recorded === identity : recorded === undefined) continue;
    const id = `host-aliases:${h.key}`;
    add({ id, kind: 'host-aliases', host: h.key, aliases: wanted.map((a) => ({ ip: a.ip, hostnames: [...a.hostnames] })), identity, reason: wanted.length ? (recorded ? 'host aliases changed' : state?.hosts[h.key] ? 'host aliases added' : 'new host') : 'host aliases removed', deps: f.made(h.key) });
    aliasesId.set(h.key, id);
    waitFor(f.hook(h.key, ['init-host']), id);
  }

  const hostDeps = (key: string): string[] => [...f.prep(key), ...(aliasesId.has(key) ? [aliasesId.get(key)!] : []), ...(lastOnHost.has(key) ? [lastOnHost.get(key)!] : [])];
  const depsFor = (point: PluginPoint, key: string): string[] => {
    const base = hostDeps(key);
    switch (point) {
      case 'originally':
      case 'pre-install':
      case 'pre-init':
        return base;
      case 'post-init':
      case 'pre-join':
        return [...base, ...f.hook(key, ['init-host']), ...preInstall()];
      case 'post-join':
        return [...base, ...f.hook(key, ['init-host', ...JOIN_HOOKS]), ...preInstall()];
      case 'upgrade':
        return [...base, ...f.hook(key, ['upgrade'])];
      default:
        return [...base, ...afterMembers(point)];
    }
  };
  /** What a pre-guest or post-install step waits for besides its host's own steps: one gate, or the node-meta before. */
  const afterMembers = (point: PluginPoint): string[] => {
    const guest = point === 'pre-guest';
    const notes = guest ? count('post-join', 'upgrade') : count('post-join', 'upgrade', 'pre-guest');
    return gated(point, `${notes}.${metas.length}.${metas[metas.length - 1] ?? ''}`, () =>
      guest ? [...f.members(), ...at('post-join', 'upgrade'), ...metas] : [...f.members(), ...f.guests(), ...at('post-join', 'upgrade', 'pre-guest'), ...metas],
    );
  };
  const dependentsFor = (point: PluginPoint, key: string): string[] => {
    switch (point) {
      case 'originally':
      case 'pre-init':
        return f.hook(key, ['init-host']);
      case 'pre-install':
        // Through one gate, once every host's pre-install steps are planned (below).
        return [];
      case 'post-init':
        return f.hook(key, [...JOIN_HOOKS]);
      case 'pre-join':
        return f.hook(key, ['join-master', 'join-node']);
      case 'post-join':
      case 'upgrade':
      case 'pre-guest':
        return f.guests();
      default:
        return [];
    }
  };

  // The Clusterfile's own labels and taints, once the node is a member and before the CMDs and apps.
  const nodeMeta = (target: string, source: string, record: string, meta: { labels: Record<string, string>; unlabel: string[]; taints: string[] }, identity: Digest, id: string, point: PluginPoint, ifAddress?: SelectorToken[]) => {
    if (state?.hosts[target]?.applied?.[record] === identity) return;
    const recorded = state?.hosts[target]?.applied?.[record];
    // kubectl on master0 needs it to be a member, and the node to have joined. After another node-meta step at the
    // same point, with no plugin step planned since, that one already waits for everything else this one would.
    const notes = count(...HOST_POINTS);
    const follows = lastMeta && lastMeta.point === point && lastMeta.notes === notes && (point === 'pre-guest' || point === 'post-install');
    const deps = [...(follows ? [...hostDeps(target), metas[metas.length - 1]] : depsFor(point, target)), ...f.hook(master0, [...JOIN_HOOKS, 'upgrade'])];
    const a: NodeMetaAction = { id, kind: 'node-meta', host: master0, target, source, labels: meta.labels, unlabel: meta.unlabel, taints: meta.taints, identity, record, reason: recorded ? `${source} changed` : state?.hosts[target] ? `${source} added` : 'new host', deps };
    if (ifAddress) a.ifAddress = ifAddress;
    add(a);
    lastMeta = { point, notes };
    // At PreGuest and PostInstall it waits for all earlier ones (through the one before, or its gate).
    metas = point === 'pre-guest' || point === 'post-install' ? [id] : [...metas, id];
    if (point !== 'post-install') waitFor(f.guests(), id);
  };
  for (const h of desired.hosts) {
    if (!h.labels && !h.taints) continue;
    const meta = { labels: h.labels ?? {}, unlabel: [], taints: h.taints ?? [] };
    nodeMeta(h.key, 'hosts[].labels/taints', 'node-meta', meta, sha256(canonicalJson(meta)), `node-meta:${h.key}`, 'pre-guest');
  }

  const firstLines = new Map<DesiredPlugin, (h: SelectableHost) => { select: SelectorToken; hostname: string } | undefined>();
  for (const point of HOST_POINTS) {
    for (const p of shell) {
      if (!p.points.includes(point)) continue;
      let lineFor = firstLines.get(p);
      if (!lineFor) firstLines.set(p, (lineFor = firstSelecting(p.hostnames ?? [], master0)));
      for (const h of desired.hosts) {
        const hs = state?.hosts[h.key];
        const me = selectable(h.key, hs, h);
        // A HOSTNAME plugin's lines each name one host: the first that selects it gives its name.
        const named = lineFor(me);
        if (p.type === 'HOSTNAME' && !named) continue;
        const on = named ? [named.select] : p.on;
        const sel = selects(on, me, master0);
        if (sel === 'no') continue;
        const record = pluginRecord(p.name, point);
        if (point === 'upgrade' ? f.hook(h.key, ['upgrade']).length === 0 : hs?.applied?.[record] === p.identity) continue;
        const recorded = hs?.applied?.[record];
        const a: PluginAction = {
          id: pluginId(p, point, h.key),
          kind: 'plugin',
          host: h.key,
          plugin: p.name,
          point,
          data: named ? hostnameScript(named.hostname) : p.data,
          identity: named ? sha256(canonicalJson({ plugin: p.identity, hostname: named.hostname })) : p.identity,
          record,
          ...(named ? { hostname: named.hostname } : {}),
          reason: point === 'upgrade' ? 'host upgraded' : recorded ? 'plugin changed' : hs && !isNew(hs) ? 'new plugin' : 'new host',
          deps: depsFor(point, h.key),
        };
        if (sel === 'if-address') a.ifAddress = addressTokens(on);
        add(a);
        waitFor(dependentsFor(point, h.key), a.id);
        lastOnHost.set(h.key, a.id);
        note(point, a.id);
      }
    }
    // LABEL and TAINT plugins act on nodes at their point, one step per node.
    for (const p of plugins.filter((x) => x.type !== 'SHELL' && x.points.includes(point))) {
      const lines = p.nodes ?? [];
      const linesOf = selectingLines(lines, master0);
      // Each host's lines in order; hosts in the order a scan of lines, then hosts, first meets them.
      const picked: { me: SelectableHost; lines: number[] }[] = [];
      for (const h of desired.hosts) {
        if (lines.length === 0) break;
        const me = selectable(h.key, state?.hosts[h.key], h);
        const found = linesOf(me);
        if (found.length) picked.push({ me, lines: found });
      }
      picked.sort((x, y) => x.lines[0] - y.lines[0]);
      const perHost = new Map<string, { labels: Record<string, string>; unlabel: string[]; taints: string[]; ifAddress?: SelectorToken[] }>();
      for (const { me, lines: found } of picked) {
        const m = perHost.get(me.key) ?? { labels: {}, unlabel: [], taints: [] };
        for (const i of found) {
          const line = lines[i];
          Object.assign(m.labels, line.labels);
          m.unlabel.push(...line.unlabel);
          m.taints.push(...line.taints);
          // An address entry selects a host whose address is unknown yet only perhaps: the executor decides.
          if (me.ip === undefined && (line.select.kind === 'ip' || line.select.kind === 'range')) m.ifAddress = [...(m.ifAddress ?? []), line.select];
        }
        perHost.set(me.key, m);
      }
      for (const [key, m] of perHost) {
        const { ifAddress, ...meta } = m;
        nodeMeta(key, `plugin ${p.name}`, pluginRecord(p.name, point), meta, p.identity, pluginId(p, point, key), point, ifAddress);
      }
    }
    // Every host's install waits for every host's pre-install steps.
    if (point === 'pre-install') {
      const gate = preInstall();
      if (gate.length) waitFor(f.kind('hook', (a) => a.kind === 'hook' && (a.hook === 'init-host' || JOIN_HOOKS.has(a.hook))), gate[0]);
    }
  }

  // Hosts removed from the Clusterfile: PreClean before they leave, PostClean after their clean.
  for (const hs of input.removed) addCleanSteps(shell, hs, state?.master0, cx);
}

/**
 * The lines whose selector does not rule the host out (`selects` is not 'no'), by index in the order given, as a
 * scan of the lines would find them, without the scan: a HOSTNAME or LABEL plugin may have a line per host, and
 * scanning them for every host made 50,000 hosts cost 50,000 times 50,000 checks. Addresses, names, labels and
 * master0 are looked up by value; only address ranges are checked one by one (a range is one line for many hosts,
 * so there are few).
 */
export function selectingLines(lines: { select: SelectorToken }[], master0: string | undefined): (h: SelectableHost) => number[] {
  if (lines.length === 0) return () => [];
  const byIp = new Map<string, number[]>();
  const byName = new Map<string, number[]>();
  const byLabel = new Map<string, number[]>();
  const toMaster0: number[] = [];
  const ranges: number[] = [];
  // A host whose address is still unknown may be selected by every address entry.
  const addresses: number[] = [];
  const note = (m: Map<string, number[]>, k: string, i: number) => {
    const list = m.get(k);
    if (list) list.push(i);
    else m.set(k, [i]);
  };
  lines.forEach((l, i) => {
    const t = l.select;
    switch (t.kind) {
      case 'master0':
        toMaster0.push(i);
        break;
      case 'name':
        note(byName, t.name, i);
        break;
      case 'label':
        // Keys and values as JSON, so no two pairs make the same text.
        note(byLabel, JSON.stringify([t.key, t.value]), i);
        break;
      case 'ip':
        note(byIp, t.ip, i);
        addresses.push(i);
        break;
      case 'range':
        ranges.push(i);
        addresses.push(i);
        break;
    }
  });
  return (h) => {
    const found: number[] = [];
    const add = (list: number[] | undefined) => {
      if (list) for (const i of list) found.push(i);
    };
    if (h.key === master0) add(toMaster0);
    // A role, key or name given twice finds its lines once.
    const names = new Set([...h.roles, h.key, ...(h.name !== undefined ? [h.name] : [])]);
    for (const n of names) add(byName.get(n));
    if (h.labels) for (const k of Object.keys(h.labels)) add(byLabel.get(JSON.stringify([k, h.labels[k]])));
    if (h.ip === undefined) add(addresses);
    else {
      add(byIp.get(h.ip));
      for (const i of ranges) if (tokenSelects(lines[i].select, h, master0) !== 'no') found.push(i);
    }
    // Each line has one entry, so it is found at most once; the lookups only come in another order.
    return found.length > 1 ? found.sort((x, y) => x - y) : found;
  };
}

/** The first of `lines` that does not rule the host out (see selectingLines). */
export function firstSelecting<L extends { select: SelectorToken }>(lines: L[], master0: string | undefined): (h: SelectableHost) => L | undefined {
  const of = selectingLines(lines, master0);
  return (h) => {
    const found = of(h);
    return found.length ? lines[found[0]] : undefined;
  };
}

/** What a HOSTNAME plugin runs: the name now (its own UTS namespace on a LOCAL host) and at the next boot. */
export function hostnameScript(name: string): string {
  return `hostname ${name}\nprintf '%s\\n' ${name} > /etc/hostname`;
}

function isNew(hs: HostState): boolean {
  return !Object.values(hs.hooks).some(Boolean);
}

/** PreClean and PostClean around the leave/clean of a host that is cleaned (removed, or the cluster destroyed). */
export function addCleanSteps(shell: DesiredPlugin[], hs: HostState, master0: string | undefined, ctx: Ctx): void {
  if (!shell.some((p) => p.type === 'SHELL' && (p.points.includes('pre-clean') || p.points.includes('post-clean')))) return;
  const { actions, add, waitFor, index: f } = indexed(ctx);
  const first = f.hook(hs.key, ['leave']).length ? f.hook(hs.key, ['leave']) : f.hook(hs.key, ['clean']);
  const clean = f.hook(hs.key, ['clean']);
  if (first.length === 0) return;
  const removeFiles = f.onHost(hs.key, (a) => a.kind === 'remove-files');
  let last: string | undefined;
  for (const point of ['pre-clean', 'post-clean'] as PluginPoint[]) {
    for (const p of shell.filter((x) => x.type === 'SHELL')) {
      if (!p.points.includes(point) || selects(p.on, selectable(hs.key, hs, undefined), master0) !== 'yes') continue;
      const record = pluginRecord(p.name, point);
      if (hs.applied?.[record] === p.identity) continue;
      const deps = point === 'pre-clean' ? [...(last ? [last] : [])] : [...clean, ...first, ...(last ? [last] : [])];
      const inherited = point === 'pre-clean' ? (actions.get(first[0])?.deps ?? []) : [];
      const a: PluginAction = { id: pluginId(p, point, hs.key), kind: 'plugin', host: hs.key, plugin: p.name, point, data: p.data, identity: p.identity, record, reason: 'host cleaned', deps: [...inherited, ...deps] };
      add(a);
      waitFor(point === 'pre-clean' ? first : removeFiles, a.id);
      last = a.id;
    }
  }
}
