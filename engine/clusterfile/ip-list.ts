/**
 * Host lists as sealer's `-m/-n` take them: `10.0.0.2,10.0.0.3`, ranges `10.0.0.2-10.0.0.9` (IPv4, both ends
 * written in full), and both mixed. A mistake is refused with the entry and the flag named, never half-used.
 */
import { isIP, isIPv4 } from 'node:net';
import { UsageError } from '../kernel/errors.js';

/** A range this long is almost surely a typo (10.0.0.2-10.1.0.9); write a Clusterfile for more. */
export const MAX_RANGE = 1024;

function toInt(ip: string): number {
  return ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function fromInt(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

export function parseIpList(text: string, flag: string): string[] {
  const entries = text.split(',').map((s) => s.trim());
  const out: string[] = [];
  const seen = new Set<string>();
  const bad = (entry: string, why: string, hint?: string): never => {
    throw new UsageError(`${flag}: ${entry === '' ? 'an empty entry' : `"${entry}"`} ${why}`, hint ?? 'give IPs separated by commas, or a range such as 10.0.0.2-10.0.0.9');
  };
  for (const entry of entries) {
    if (entry === '') bad(entry, 'in the list (two commas, or one at an end)');
    const dash = entry.indexOf('-');
    let ips: string[];
    if (dash < 0) {
      if (!isIP(entry)) bad(entry, 'is not an IPv4 or IPv6 address');
      ips = [entry];
    } else {
      const [from, to] = [entry.slice(0, dash), entry.slice(dash + 1)];
      if (!isIPv4(from) || !isIPv4(to)) bad(entry, 'is not a range of IPv4 addresses', 'write a range with both ends in full, such as 10.0.0.2-10.0.0.9');
      const [a, b] = [toInt(from), toInt(to)];
      if (b < a) bad(entry, 'ends before it starts', `write the lower address first: ${to}-${from}`);
      if (b - a + 1 > MAX_RANGE) bad(entry, `holds ${b - a + 1} addresses, more than ${MAX_RANGE}`, 'check the range; for more hosts, write them in a Clusterfile and use `ci apply -f`');
      ips = [];
      for (let n = a; n <= b; n++) ips.push(fromInt(n));
    }
    for (const ip of ips) {
      if (seen.has(ip)) bad(ip, 'is given twice', 'list each host once');
      seen.add(ip);
      out.push(ip);
    }
  }
  return out;
}

/** A count of hosts for LOCAL clusters (`--local 3`, `-m 1 -n 2` with --local). */
export function parseCount(text: string, flag: string, min = 1): number {
  if (!/^[0-9]+$/.test(text.trim()) || Number(text) < min) {
    throw new UsageError(`${flag} must be a whole number of at least ${min}, not "${text}"`, 'where this machine or the cloud makes the hosts (LOCAL, ALI_CLOUD), -m and -n count them');
  }
  return Number(text);
}
