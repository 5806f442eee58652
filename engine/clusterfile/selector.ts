/**
 * sealer's host selectors (`spec.on` of a Plugin, `spec.scope` in its later form): tokens separated by `,` or `|`,
 * each a role name, `master0`, an IPv4 address, an IPv4 range `10.0.0.2-10.0.0.9`, a label `key=value` (matched
 * against the Clusterfile's `hosts[].labels`), or a host's name. Parsed here into data; the planner matches it.
 */
import type { SelectorToken } from './types.js';

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const LABEL_KEY = /^([A-Za-z0-9.-]+\/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?)?$/;

export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

/** The address as a number, for range checks; IPv4 only. */
export function ipv4Number(s: string): number {
  return s.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export type SelectorResult = { tokens: SelectorToken[] } | { error: string };

/** One token of a selector, or why it is not one. */
export function parseToken(raw: string): SelectorToken | { error: string } {
  const t = raw.trim();
  if (t === '') return { error: 'an empty entry (two separators in a row, or one at an end)' };
  if (t === 'master0') return { kind: 'master0' };
  if (isIpv4(t)) return { kind: 'ip', ip: t };
  const dash = t.indexOf('-');
  if (dash > 0 && /^[0-9.]+-[0-9.]+$/.test(t)) {
    const from = t.slice(0, dash);
    const to = t.slice(dash + 1);
    if (!isIpv4(from) || !isIpv4(to)) return { error: `"${t}" is not a range of IPv4 addresses (write it as 10.0.0.2-10.0.0.9)` };
    if (ipv4Number(from) > ipv4Number(to)) return { error: `the range ${t} ends before it starts` };
    return { kind: 'range', from, to };
  }
  if (/^[0-9.]+$/.test(t)) return { error: `"${t}" is not an IPv4 address` };
  const eq = t.indexOf('=');
  if (eq >= 0) {
    const key = t.slice(0, eq);
    const value = t.slice(eq + 1);
    if (!LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) return { error: `"${t}" is not a label selector key=value` };
    return { kind: 'label', key, value };
  }
  if (!NAME.test(t)) return { error: 'an entry that is not a role, master0, an address, a range, a label or a host name' };
  return { kind: 'name', name: t };
}

export function parseSelector(text: string): SelectorResult {
  const tokens: SelectorToken[] = [];
  for (const part of text.split(/[,|]/)) {
    const t = parseToken(part);
    if ('error' in t) return t;
    tokens.push(t);
  }
  return { tokens };
}
