/**
 * A Config document (sealer's `kind: Config`) as cloudimage acts on it: which file of the image's rootfs, what
 * data, how it is written (`overwrite` or `merge`), and the `process` chain applied to the data first.
 */
import type { FieldPath } from './locate.js';

export const STRATEGIES = ['overwrite', 'merge'] as const;
export type Strategy = (typeof STRATEGIES)[number];

export const PROCESSORS = ['value', 'toJson', 'toBase64', 'toSecret'] as const;
export type Processor = (typeof PROCESSORS)[number];

export interface ConfigSpec {
  /** The Config's metadata.name. */
  name: string;
  /** Relative to the rootfs, canonical (no `.`, `..` or empty segments). */
  path: string;
  /** The data as written: a string is used as text, a mapping or list as YAML. */
  data: unknown;
  strategy: Strategy;
  process: Processor[];
  /** Where the document is, for errors found when it is applied. */
  at: { file: string; line: number };
}

export interface SpecIssue {
  path: FieldPath;
  message: string;
}

const KNOWN = new Set(['path', 'data', 'strategy', 'process']);

/** Every problem of one Config's spec; none means `toConfigSpec` succeeds. */
export function configSpecIssues(spec: Record<string, unknown>): SpecIssue[] {
  const out: SpecIssue[] = [];
  for (const k of Object.keys(spec)) {
    if (!KNOWN.has(k)) {
      out.push({ path: ['spec', k], message: k === 'appName' ? 'appName is not supported: give the path relative to the rootfs (application/apps/<app>/...)' : `unknown field "${k}": a Config has path, data, strategy and process` });
    }
  }
  if (spec.path === undefined) out.push({ path: ['spec', 'path'], message: 'is required: the file of the image rootfs this Config writes' });
  else if (typeof spec.path !== 'string') out.push({ path: ['spec', 'path'], message: 'must be a string' });
  else {
    const why = pathProblem(spec.path);
    if (why) out.push({ path: ['spec', 'path'], message: why });
  }
  if (spec.data === undefined || spec.data === null) out.push({ path: ['spec', 'data'], message: 'is required: the content to write or merge' });
  if (spec.strategy !== undefined && !(STRATEGIES as readonly unknown[]).includes(spec.strategy)) {
    out.push({ path: ['spec', 'strategy'], message: `must be one of ${STRATEGIES.map((s) => JSON.stringify(s)).join(', ')}` });
  }
  if (spec.process !== undefined) {
    if (typeof spec.process !== 'string') out.push({ path: ['spec', 'process'], message: 'must be a string such as "value|toJson|toBase64"' });
    else {
      const r = parseProcess(spec.process);
      if ('error' in r) out.push({ path: ['spec', 'process'], message: r.error });
    }
  }
  return out;
}

export function toConfigSpec(name: string, spec: Record<string, unknown>, at: { file: string; line: number }): ConfigSpec {
  const p = spec.process === undefined ? { chain: [] as Processor[] } : parseProcess(String(spec.process));
  if ('error' in p) throw new Error(p.error);
  return {
    name,
    path: canonical(String(spec.path)),
    data: spec.data,
    strategy: (spec.strategy as Strategy | undefined) ?? 'overwrite',
    process: p.chain,
    at,
  };
}

/** `value|toJson|toBase64`: known names, each once, `value` only first, `toSecret` only last and only after `value`. */
export function parseProcess(text: string): { chain: Processor[] } | { error: string } {
  const names = text.split('|').map((s) => s.trim());
  const chain: Processor[] = [];
  for (const n of names) {
    if (!(PROCESSORS as readonly string[]).includes(n)) {
      return { error: `unknown processor ${JSON.stringify(n)}: use ${PROCESSORS.join(', ')}, joined with "|"` };
    }
    if (chain.includes(n as Processor)) return { error: `processor ${n} is given twice` };
    chain.push(n as Processor);
  }
  if (chain.includes('value') && chain[0] !== 'value') return { error: 'value must come first: it applies the processors after it to each top-level value' };
  if (chain.includes('toSecret') && chain[chain.length - 1] !== 'toSecret') return { error: 'toSecret must come last: it writes the result into the Secret' };
  if (chain.includes('toSecret') && chain[0] !== 'value') return { error: 'toSecret writes each top-level key into the Secret\'s data: start the chain with value (value|toSecret)' };
  return { chain };
}

/** Why a Config path cannot name a file inside the rootfs, or undefined when it can (symlinks are checked when applied). */
export function pathProblem(path: string): string | undefined {
  if (path.trim() === '') return 'must not be empty';
  if (path.startsWith('/')) return 'must be relative to the image rootfs, not absolute';
  if (path.includes('\0')) return 'must not contain a NUL character';
  const segs = path.split('/');
  if (segs.includes('..')) return 'must not contain ".." segments: a Config writes inside the image rootfs only';
  if (path.endsWith('/')) return 'must name a file, not a directory';
  if (segs.filter((s) => s !== '' && s !== '.').length === 0) return 'must name a file inside the rootfs';
  return undefined;
}

export function canonical(path: string): string {
  return path.split('/').filter((s) => s !== '' && s !== '.').join('/');
}
