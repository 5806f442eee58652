/** The lab network: one bridge in the root namespace (the operator's side) and one veth per host namespace. */
import { existsSync, readFileSync } from 'node:fs';
import { mustRun, runTool } from './run.js';
import { HOST_IFACE } from './names.js';
import { signal } from './procs.js';

export const linkExists = (name: string) => existsSync(`/sys/class/net/${name}`);
export const netnsExists = (ns: string) => existsSync(`/run/netns/${ns}`);

/**
 * The IPv4 addresses of this namespace's interfaces, by interface, down ones included (Node's networkInterfaces
 * leaves out interfaces without a carrier, such as a bridge no host is attached to yet).
 */
export async function interfaceAddresses(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const m of (await mustRun('ip', ['-4', '-o', 'addr', 'show'])).matchAll(/^\d+:\s+([^\s@]+)\S*\s+inet\s+([\d.]+)\//gm)) {
    const list = out.get(m[1]);
    if (list) list.push(m[2]);
    else out.set(m[1], [m[2]]);
  }
  return out;
}

/** IFF_UP in the link's flags (sysfs): set by `ip link set up`, whether or not a carrier is there. */
function linkIsUp(name: string): boolean {
  try {
    return (parseInt(readFileSync(`/sys/class/net/${name}/flags`, 'utf8'), 16) & 0x1) === 1;
  } catch {
    return false;
  }
}

/**
 * Makes the bridge, its gateway address and its up state, changing only what is missing: every lab open (each
 * `ci plan` of a local cluster) asks, and `addrs` (interfaceAddresses, read once for the open) saves running `ip`.
 */
export async function ensureBridge(bridge: string, gateway: string, addrs?: Map<string, string[]>): Promise<void> {
  const made = !linkExists(bridge);
  if (made) await mustRun('ip', ['link', 'add', bridge, 'type', 'bridge']);
  const has = !made && ((addrs ?? (await interfaceAddresses())).get(bridge) ?? []).includes(gateway);
  if (!has) await mustRun('ip', ['addr', 'add', `${gateway}/24`, 'dev', bridge]);
  if (!linkIsUp(bridge)) await mustRun('ip', ['link', 'set', bridge, 'up']);
}

export async function deleteLink(name: string): Promise<void> {
  if (linkExists(name)) await runTool('ip', ['link', 'del', name]);
}

/**
 * The host's MAC follows from its address (10.250.k.i, unique on this machine): a host made again at the address of
 * a removed one (a failed create retried, a scale-in then out) keeps the MAC that the bridge's and the other hosts'
 * neighbour caches hold, instead of being unreachable until those entries expire (up to about a minute).
 */
export function macFor(ip: string): string {
  return ['02', '63', '69', ...ip.split('.').slice(1).map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
}

export async function ensureNetns(ns: string): Promise<void> {
  if (!netnsExists(ns)) await mustRun('ip', ['netns', 'add', ns]);
}

/** Creates the namespace and its link; addresses are set but no default route, so nothing leaves the lab. */
export async function ensureHostNetwork(ns: string, veth: string, bridge: string, ip: string): Promise<void> {
  await ensureNetns(ns);
  if (!linkExists(veth)) {
    await runTool('ip', ['-n', ns, 'link', 'del', HOST_IFACE]);
    await mustRun('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', HOST_IFACE, 'address', macFor(ip), 'netns', ns]);
  }
  await mustRun('ip', ['link', 'set', veth, 'master', bridge, 'up']);
  const addrs = await mustRun('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', HOST_IFACE]);
  if (!addrs.includes(`inet ${ip}/`)) await mustRun('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', HOST_IFACE]);
  await mustRun('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await mustRun('ip', ['-n', ns, 'link', 'set', HOST_IFACE, 'up']);
}

/** Kills whatever still runs inside the namespace (left over by a crash), then deletes it and its link. */
export async function deleteHostNetwork(ns: string, veth: string): Promise<void> {
  if (netnsExists(ns)) {
    const pids = await runTool('ip', ['netns', 'pids', ns]);
    for (const p of pids.stdout.split(/\s+/).filter(Boolean)) signal(Number(p), 'SIGKILL');
    await runTool('ip', ['netns', 'del', ns]);
  }
  await deleteLink(veth);
}

export async function listNetns(prefix: string): Promise<string[]> {
  const res = await runTool('ip', ['netns', 'list']);
  return res.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n && n.startsWith(prefix));
}

export async function setLinkUp(ns: string, up: boolean): Promise<void> {
  await mustRun('ip', ['-n', ns, 'link', 'set', HOST_IFACE, up ? 'up' : 'down']);
}

/** Token bucket on both directions: host egress inside its namespace, host ingress on the bridge-side veth. */
export async function shapeLink(ns: string, veth: string, rateKbit: number | undefined): Promise<void> {
  if (!rateKbit) {
    await runTool('tc', ['-n', ns, 'qdisc', 'del', 'dev', HOST_IFACE, 'root']);
    await runTool('tc', ['qdisc', 'del', 'dev', veth, 'root']);
    return;
  }
  const tbf = ['root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', `${Math.max(4, Math.ceil(rateKbit / 80))}kb`, 'latency', '400ms'];
  await mustRun('tc', ['-n', ns, 'qdisc', 'replace', 'dev', HOST_IFACE, ...tbf]);
  await mustRun('tc', ['qdisc', 'replace', 'dev', veth, ...tbf]);
}
