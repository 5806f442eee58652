/**
 * API parameters as the SDK flattens them: scalars as text, objects as `Name.Field`, lists as `Name.N` and
 * `Name.N.Field` (1-based), and a few lists as JSON text (`InstanceIds`, `KeyPairNames`, `SecurityGroupIds`).
 * Reading a parameter validates it; a bad value becomes the API's own error answer.
 */
import { errors } from './api-errors.js';
import type { ApiError } from './wire.js';

/** Parameters of the signature schemes, never parameters of an action. */
const PROTOCOL_PARAMS = new Set([
  'Action', 'Version', 'Format', 'Timestamp', 'SignatureNonce', 'SignatureMethod', 'SignatureVersion', 'SignatureType',
  'AccessKeyId', 'SecurityToken', 'BearerToken', 'Signature',
]);

export class ApiParams {
  private readonly map: Map<string, string>;

  /** `pairs`: decoded query and form parameters; later ones win. */
  constructor(pairs: Iterable<[string, string]>) {
    this.map = new Map();
    for (const [k, v] of pairs) if (!PROTOCOL_PARAMS.has(k)) this.map.set(k, v);
  }

  /** Every action parameter, sorted by name: what a ClientToken's stored call is compared by. */
  entries(): [string, string][] {
    return [...this.map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  str(name: string): string | undefined {
    return this.map.get(name);
  }

  /** Absent and empty are the same for most parameters (the SDK never sends undefined ones). */
  nonEmpty(name: string): string | undefined {
    const v = this.map.get(name);
    return v === undefined || v === '' ? undefined : v;
  }

  required(name: string, missing: () => ApiError = () => errors.missing(name)): string {
    const v = this.nonEmpty(name);
    if (v === undefined) throw missing();
    return v;
  }

  int(name: string, opts: { min?: number; max?: number; error?: () => ApiError } = {}): number | undefined {
    const v = this.nonEmpty(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    const bad = opts.error ?? (() => errors.invalid(name));
    if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(n)) throw bad();
    if (opts.min !== undefined && n < opts.min) throw bad();
    if (opts.max !== undefined && n > opts.max) throw bad();
    return n;
  }

  bool(name: string): boolean | undefined {
    const v = this.nonEmpty(name);
    if (v === undefined) return undefined;
    const l = v.toLowerCase();
    if (l === 'true') return true;
    if (l === 'false') return false;
    throw errors.invalid(name);
  }

  /** `Name.1`, `Name.2`, ... in index order (gaps allowed, as the API allows them). */
  list(name: string): string[] {
    return this.indexed(name).map(([, rest, v]) => (rest === '' ? v : undefined)).filter((v): v is string => v !== undefined);
  }

  /** `Name.N.Field` entries, one object per N in index order. Nested lists stay flat: `Name.N.Sub.M` -> `Sub.M`. */
  objects(name: string): Record<string, string>[] {
    const byIndex = new Map<number, Record<string, string>>();
    for (const [i, rest, v] of this.indexed(name)) {
      if (rest === '') continue;
      const o = byIndex.get(i) ?? {};
      o[rest] = v;
      byIndex.set(i, o);
    }
    return [...byIndex.entries()].sort(([a], [b]) => a - b).map(([, o]) => o);
  }

  /** `Name.Field` entries as one object. */
  object(name: string): Record<string, string> {
    const o: Record<string, string> = {};
    const prefix = `${name}.`;
    for (const [k, v] of this.map) if (k.startsWith(prefix)) o[k.slice(prefix.length)] = v;
    return o;
  }

  /** A list sent as JSON text, e.g. `InstanceIds=["i-a","i-b"]`. */
  jsonList(name: string, opts: { max?: number; error?: () => ApiError } = {}): string[] | undefined {
    const v = this.nonEmpty(name);
    if (v === undefined) return undefined;
    const bad = opts.error ?? (() => errors.malformed(name));
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      throw bad();
    }
    if (!Array.isArray(parsed) || parsed.some((x) => typeof x !== 'string')) throw bad();
    if (opts.max !== undefined && parsed.length > opts.max) throw bad();
    return parsed as string[];
  }

  private indexed(name: string): [number, string, string][] {
    const out: [number, string, string][] = [];
    const prefix = `${name}.`;
    for (const [k, v] of this.map) {
      if (!k.startsWith(prefix)) continue;
      const m = /^(\d+)(?:\.(.+))?$/.exec(k.slice(prefix.length));
      if (!m) continue;
      const i = Number(m[1]);
      if (i < 1) throw errors.invalid(k);
      out.push([i, m[2] ?? '', v]);
    }
    return out.sort((a, b) => a[0] - b[0]);
  }
}

/** Name filters of Describe calls: `*` matches any run of characters, anything else itself. */
export function wildcardMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${re}$`).test(value);
}
