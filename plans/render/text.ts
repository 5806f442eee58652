/**
 * Terraform-style plan text, grouped by host. Returns a string; the CLI decides where it goes and whether it is
 * coloured (`color: isTTY`).
 */
import { Chalk } from 'chalk';
import { shortDigest } from '../../engine/kernel/digest.js';
import type { Action, DriftItem, Impact, Plan, PlannedHost, PlanRefresh } from '../actions.js';
import type { SelectorToken } from '../../engine/clusterfile/types.js';

export interface RenderOptions {
  color?: boolean;
}

const SYMBOL: Record<Impact, string> = { add: '+', change: '~', destroy: '-', none: ' ' };

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  do {
    v /= 1000;
    u++;
  } while (v >= 1000 && u < units.length - 1);
  return `${v.toFixed(1)} ${units[u]}`;
}

/** How many layers an unpack may keep from the host's rootfs: the bottom ones both share (if the host proves it unchanged). */
function incrementalText(a: { layers: string[]; base?: { layers: string[] } }): string {
  let keep = 0;
  const old = a.base?.layers ?? [];
  while (keep < a.layers.length && keep < old.length && a.layers[keep] === old[keep]) keep++;
  return keep === 0 ? '' : ` (${a.layers.length - keep} of ${a.layers.length} layers, on the host's rootfs)`;
}

export function describeAction(a: Action): string {
  switch (a.kind) {
    case 'create-host':
      return a.hosts.length === 1 ? `create ${a.summary}` : `create ${a.hosts.length} × ${a.summary}`;
    case 'infra':
      return `${a.op} ${a.summary}`;
    case 'send-layers':
      return `send ${a.layers.length} layer${a.layers.length === 1 ? '' : 's'} (${formatBytes(a.bytes)})`;
    case 'unpack':
      // After its prepare-rootfs, only the swap is left.
      if (a.deps.some((d) => d.startsWith('prepare-rootfs:'))) return `swap in rootfs ${shortDigest(a.image)}` + (a.config ? ` + config ${shortDigest(a.config)}` : '');
      return `unpack rootfs ${shortDigest(a.image)}` + (a.config ? ` + config ${shortDigest(a.config)}` : '') + incrementalText(a);
    case 'prepare-rootfs':
      return `stage rootfs ${shortDigest(a.image)}` + (a.config ? ` + config ${shortDigest(a.config)}` : '') + incrementalText(a);
    case 'hook':
      return `hook ${a.hook}`;
    case 'run-cmd':
      return `run CMD ${JSON.stringify(a.cmd.length > 60 ? a.cmd.slice(0, 57) + '...' : a.cmd)} on ${a.host}`;
    case 'launch-app':
      return `launch app ${a.app} (${a.by === 'appcmds' ? `${a.cmds.length} APPCMDS` : a.by}) on ${a.host}`;
    case 'plugin':
      return `plugin ${a.plugin} at ${a.point}` + (a.ifAddress ? ` (if its address is ${addressText(a.ifAddress)})` : '');
    case 'node-meta': {
      const what = [...Object.entries(a.labels).map(([k, v]) => `${k}=${v}`), ...a.unlabel.map((k) => `${k}-`), ...a.taints.map((t) => `taint ${t}`)];
      return `set node ${a.target}: ${what.join(', ')} (${a.source})` + (a.ifAddress ? ` (if its address is ${addressText(a.ifAddress)})` : '');
    }
    case 'host-aliases':
      return a.aliases.length ? `write /etc/hosts block: ${a.aliases.map((x) => `${x.ip} ${x.hostnames.join(' ')}`).join('; ')}` : 'remove /etc/hosts block';
    case 'remove-files':
      return 'remove files';
    case 'delete-host':
      return 'delete host';
    case 'set-image':
      return `set image ${a.image.ref} (${shortDigest(a.image.digest)})`;
    case 'gate':
      return `wait for ${a.deps.length} step${a.deps.length === 1 ? '' : 's'}`;
  }
}

function addressText(tokens: SelectorToken[]): string {
  return tokens.map((t) => (t.kind === 'ip' ? t.ip : t.kind === 'range' ? `${t.from}-${t.to}` : '')).filter(Boolean).join(', ');
}

function hostTitle(h: PlannedHost): string {
  const names = h.name && h.ip ? `${h.name} ${h.ip}` : h.key;
  // Hosts the state never recorded have no roles to show.
  return `host ${names}` + (h.roles.length > 0 ? ` (${h.roles.join(', ')})` : '');
}

export function renderPlanText(plan: Plan, opts: RenderOptions = {}): string {
  const c = new Chalk({ level: opts.color ? 1 : 0 });
  const paint: Record<Impact, (s: string) => string> = { add: c.green, change: c.yellow, destroy: c.red, none: (s) => s };
  const lines: string[] = [];
  const block = (impact: Impact, title: string, actions: Action[]) => {
    const sym = SYMBOL[impact];
    lines.push(paint[impact](`${sym} ${title}`));
    const texts = actions.map((a) => `${sym} ${describeAction(a)}`);
    const width = Math.max(...texts.map((t) => t.length));
    actions.forEach((a, i) => lines.push(`    ${paint[impact](texts[i].padEnd(width))}  ${c.dim(`# ${a.reason}`)}`));
  };

  if (plan.actions.length === 0) {
    const drift = plan.refresh ? driftLines(plan.refresh, c) : [];
    const head = drift.length ? drift.join('\n') + '\n\n' : '';
    if (plan.targets) return head + `No changes for ${plan.targets.join(', ')} of cluster ${plan.cluster}.\n${partialNote()}`;
    if (plan.operation === 'destroy') return `Nothing to destroy: no hosts or infrastructure of cluster ${plan.cluster} in the state, and no host of it left on this machine.\n`;
    return head + `No changes. Cluster ${plan.cluster} matches the Clusterfile${plan.image ? ` (image ${plan.image.ref})` : ''}.\n`;
  }
  const verb = plan.operation === 'destroy' ? 'destroy' : 'apply';
  lines.push(
    `ci will ${verb} cluster ${plan.cluster}` +
      (plan.image ? ` with image ${plan.image.ref} (${shortDigest(plan.image.digest)})` : '') +
      (plan.targets ? `, only for ${plan.targets.join(', ')} and what ${plan.targets.length === 1 ? 'it needs' : 'they need'}` : '') +
      ':',
  );
  if (plan.documents) lines.push(`  documents for hooks: ${plan.documents.names.join(', ')} (${shortDigest(plan.documents.digest)})`);
  if (plan.refresh) {
    const drift = driftLines(plan.refresh, c);
    if (drift.length) lines.push('', ...drift);
  }
  lines.push(`  ${c.green('+')} add   ${c.yellow('~')} change   ${c.red('-')} destroy`);
  lines.push('');
  // Infrastructure and hosts made in batches come before the hosts' steps, which need them; infrastructure that goes
  // comes after, as it goes last.
  const infraBlock = (acts: Action[]) => {
    if (acts.length === 0) return;
    const sym = (a: Action) => (a.kind === 'infra' ? (a.op === 'create' ? '+' : a.op === 'update' ? '~' : '-') : '+');
    const impactOf = (a: Action): Impact => (sym(a) === '+' ? 'add' : sym(a) === '~' ? 'change' : 'destroy');
    const worst: Impact = acts.some((a) => sym(a) === '-') ? 'destroy' : acts.some((a) => sym(a) === '+') ? 'add' : 'change';
    lines.push(paint[worst](`${SYMBOL[worst]} infrastructure (${plan.provider})`));
    // What is made has no ID until the provider answers; Terraform says so the same way.
    const unknown = (a: Action) => (a.kind === 'create-host' ? `: ${a.hosts.map((h) => h.key).join(', ')}; ${a.hosts.length === 1 ? 'ID' : 'IDs'} (known after apply)` : a.kind === 'infra' && a.op === 'create' ? ', ID (known after apply)' : '');
    const texts = acts.map((a) => `${sym(a)} ${describeAction(a)}${unknown(a)}`);
    const width = Math.max(...texts.map((t) => t.length));
    acts.forEach((a, i) => lines.push(`    ${paint[impactOf(a)](texts[i].padEnd(width))}  ${c.dim(`# ${a.reason}`)}`));
  };
  infraBlock(plan.actions.filter((a) => (a.kind === 'infra' && a.op !== 'delete') || (a.kind === 'create-host' && a.host === undefined)));
  // Grouped once: filtering every action per host is quadratic and takes seconds on thousands of hosts.
  const byHost = new Map<string, Action[]>();
  for (const a of plan.actions) {
    if (a.host === undefined || a.kind === 'run-cmd' || a.kind === 'launch-app') continue;
    const list = byHost.get(a.host);
    if (list) list.push(a);
    else byHost.set(a.host, [a]);
  }
  const inBatch = new Set(plan.actions.flatMap((a) => (a.kind === 'create-host' && a.host === undefined ? a.hosts.map((x) => x.key) : [])));
  for (const h of plan.hosts) {
    const acts = byHost.get(h.key) ?? [];
    if (acts.length === 0) continue;
    block(h.impact, hostTitle(h) + (inBatch.has(h.key) && !h.ip ? ', address (known after apply)' : ''), acts);
  }
  infraBlock(plan.actions.filter((a) => a.kind === 'infra' && a.op === 'delete'));
  configBlock(plan, lines, c);
  const clusterActs = plan.actions.filter((a) => a.kind === 'run-cmd' || a.kind === 'launch-app' || a.kind === 'set-image');
  if (clusterActs.length) block('change', `cluster ${plan.cluster}`, clusterActs);
  lines.push('');
  const s = plan.summary;
  lines.push(`Plan: ${s.add} to add, ${s.change} to change, ${s.destroy} to destroy.`);
  return lines.join('\n') + '\n' + (plan.targets ? partialNote() : '');
}

/** Said under every plan cut down by --target: what it leaves out may still differ. */
function partialNote(): string {
  return 'Note: --target given: this plan is partial; run `ci plan` without --target to see what else differs.\n';
}

/** The files the config layer changes on hosts, each with its (masked) unified diff. */
function configBlock(plan: Plan, lines: string[], c: InstanceType<typeof Chalk>): void {
  const cfg = plan.config;
  if (!cfg || cfg.changes.length === 0) return;
  const n = cfg.changes.length;
  lines.push(c.yellow(`~ config layer ${shortDigest(cfg.digest)} (${formatBytes(cfg.size)}): ${n} file${n === 1 ? '' : 's'} change${n === 1 ? 's' : ''}`));
  for (const f of cfg.changes) {
    lines.push(`    ${c.yellow(`~ ${f.path}`)}  ${c.dim(`# ${f.by.join(', ')}`)}`);
    for (const l of f.diff.replace(/\n$/, '').split('\n')) {
      const paint = l.startsWith('+++') || l.startsWith('---') ? c.bold : l.startsWith('+') ? c.green : l.startsWith('-') ? c.red : l.startsWith('@@') ? c.cyan : (s: string) => s;
      lines.push(`      ${paint(l)}`);
    }
  }
}

/** One drift item on one line: `host-2: drift: layer missing on host (1 of 3 recorded layer(s) ...)`. */
export function describeDrift(d: DriftItem): string {
  return `${d.host}: ${d.reason}${d.detail ? ` (${d.detail})` : ''}${d.kind === 'hooks-missing' ? '; reported only: hooks are not run again on a member' : ''}`;
}

/** What the refresh found, and the hosts it could not ask; nothing when every host matched the state. */
function driftLines(r: PlanRefresh, c: InstanceType<typeof Chalk>): string[] {
  if (r.drift.length === 0 && r.unreachable.length === 0) return [];
  const lines = [`Refresh (${r.depth}): ${r.drift.length === 0 ? 'no drift' : `${r.drift.length} difference${r.drift.length === 1 ? '' : 's'} between the hosts and the state`}:`];
  for (const d of r.drift) lines.push(`  ${c.yellow('!')} ${describeDrift(d)}`);
  for (const u of r.unreachable) lines.push(`  ${c.red('?')} ${u.host}: not refreshed: ${u.why}; its state is kept as it was`);
  return lines;
}

/** `ci plan --refresh-only`: the drift alone, as the refresh found it. */
export function renderRefreshText(plan: Plan, opts: RenderOptions = {}): string {
  const c = new Chalk({ level: opts.color ? 1 : 0 });
  if (!plan.refresh) return `Cluster ${plan.cluster}: the hosts were not refreshed.\n`;
  const lines = driftLines(plan.refresh, c);
  if (lines.length === 0) {
    const n = plan.hosts.filter((h) => h.impact !== 'add').length;
    return `No drift. The ${n} host${n === 1 ? '' : 's'} of cluster ${plan.cluster} hold what the state says.\n`;
  }
  return lines.join('\n') + '\n';
}

export function renderPlanJson(plan: Plan): string {
  return JSON.stringify(plan, null, 2) + '\n';
}
