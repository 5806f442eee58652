/**
 * Kubefile parsing: comments, `\` continuations, instruction keywords in any case, JSON-array forms of RUN, CMD
 * and COPY, `k=v` pairs of ENV and LABEL. Parsing is pure; variable expansion happens in the builder, where ARG
 * and ENV values are known.
 *
 * Arguments that start with `[` are the JSON (exec) form when they parse as a JSON array. When they do not, they
 * are refused if they begin like one — `["`, or `[` and a quoted word followed by `,` or by nothing — because
 * Docker would quietly run such a line as a shell command and a broken CMD only fails on the cluster's hosts.
 * Anything else is an ordinary shell command (`RUN [ -f x ] && y`, `RUN [ "$A" = b ]`) or, for COPY, a glob.
 */
import { KubefileError, kubefileErrors } from '../kernel/errors.js';
import { LEGACY_OPS, checkApplications, parseAppInstruction } from './kubefile-apps.js';

export type Instruction =
  | { op: 'FROM'; line: number; text: string; image: string }
  | ({ op: 'COPY'; line: number; text: string } & CopyArgs)
  | ({ op: 'ADD'; line: number; text: string } & CopyArgs)
  | { op: 'RUN'; line: number; text: string; shell?: string; exec?: string[] }
  | { op: 'CMD'; line: number; text: string; shell?: string; exec?: string[] }
  | { op: 'ENV'; line: number; text: string; pairs: [string, string][] }
  | { op: 'LABEL'; line: number; text: string; pairs: [string, string][] }
  | { op: 'ARG'; line: number; text: string; name: string; default?: string }
  | { op: 'CMDS'; line: number; text: string; cmds: string[] }
  | { op: 'APP'; line: number; text: string; name: string; sources: string[] }
  | { op: 'APPCMDS'; line: number; text: string; name: string; cmds: string[] }
  | { op: 'LAUNCH'; line: number; text: string; apps: string[] };

/** What COPY and ADD take: sources, a destination, and the `--chown`/`--chmod` flags as written. */
export interface CopyArgs {
  sources: string[];
  dest: string;
  chown?: string;
  chmod?: string;
}

const OPS = new Set(['FROM', 'COPY', 'ADD', 'RUN', 'CMD', 'ENV', 'LABEL', 'ARG', 'CMDS', 'APP', 'APPCMDS', 'LAUNCH', ...LEGACY_OPS]);
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

interface LogicalLine {
  line: number;
  text: string;
}

/** A parse problem of one instruction, turned into a located KubefileError by parseKubefile. */
class Problem extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/**
 * Joins `\` continuations and drops comments and blank lines, keeping the first physical line number. A problem
 * is added to `problems`, so the lines before it are still checked.
 */
function logicalLines(source: string, file: string, problems: KubefileError[]): LogicalLine[] {
  const out: LogicalLine[] = [];
  const physical = source.replace(/\r\n?/g, '\n').split('\n');
  let buf: string[] = [];
  let start = 0;
  let continued = 0;
  for (let i = 0; i < physical.length; i++) {
    const raw = physical[i];
    const trimmed = raw.trim();
    if (buf.length > 0 && (trimmed === '' || trimmed.startsWith('#'))) continue; // comments inside a continuation
    if (buf.length === 0 && (trimmed === '' || trimmed.startsWith('#'))) continue;
    if (buf.length === 0) start = i + 1;
    if (/\\\s*$/.test(raw)) {
      buf.push(raw.replace(/\\\s*$/, ''));
      continued = i + 1;
      continue;
    }
    buf.push(raw);
    out.push({ line: start, text: buf.join(' ').trim() });
    buf = [];
  }
  if (buf.length > 0) {
    // Usually a line lost at the end of the file: refuse rather than build what is left.
    problems.push(new KubefileError(
      { file, line: continued },
      'the line ends with \\ (continued on the next line), but nothing follows it',
      'remove the trailing \\ or add the rest of the instruction',
    ));
  }
  return out;
}

/** Splits words the way a shell would for simple quoting: single and double quotes, backslash escapes. */
export function splitWords(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} quote`);
  if (inWord) words.push(cur);
  return words;
}

function parsePairs(args: string, allowLegacy: boolean): [string, string][] {
  const words = splitWords(args);
  if (words.length === 0) throw new Error('needs at least one key=value');
  if (allowLegacy && !words[0].includes('=')) {
    // Legacy `ENV key value with spaces`.
    const m = /^(\S+)\s+(.*)$/.exec(args.trim());
    if (!m) throw new Error(`"${args.trim()}" needs a value: write key=value`);
    return [[m[1], m[2]]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`"${w}" is not key=value`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

/** `["`, or `[` then a quoted word followed by `,` or by the end: meant as JSON, whatever else it is. */
const LOOKS_LIKE_JSON = /^\[(?:"|\s*(?:"(?:[^"\\]|\\.)*"|'[^']*')\s*(?:,|$))/;

/**
 * The JSON form's words, or undefined when `args` is not in JSON form (see the rule at the top of this file).
 * `form` shows the JSON form and `other` names the alternative, for the hint.
 */
function jsonForm(args: string, form: string, other: string): string[] | undefined {
  const t = args.trim();
  if (!t.startsWith('[')) return undefined;
  let arr: unknown;
  try {
    arr = JSON.parse(t);
  } catch {
    if (!LOOKS_LIKE_JSON.test(t)) return undefined;
    const why = t.endsWith(']') ? 'are not valid JSON' : 'have no closing ]';
    throw new Problem(
      `the arguments start like the JSON form but ${why}`,
      `write ${form} with double quotes, commas and a closing ], or leave the brackets out for ${other}`,
    );
  }
  if (!Array.isArray(arr) || arr.length === 0 || !arr.every((x) => typeof x === 'string')) {
    throw new Problem('the JSON form must be a non-empty array of strings', `write ${form}`);
  }
  return arr as string[];
}

function parseCommand(op: string, args: string): { shell?: string; exec?: string[] } {
  const exec = jsonForm(args, `${op} ["executable", "arg"]`, 'the shell form');
  return exec ? { exec } : { shell: args.trim() };
}

/**
 * Parses the whole file and reports every problem it finds, each located at its line (one problem is thrown as
 * itself, several as a KubefileErrors).
 */
export function parseKubefile(source: string, file: string): Instruction[] {
  const result: Instruction[] = [];
  const problems: KubefileError[] = [];
  for (const { line, text } of logicalLines(source, file, problems)) {
    const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(text);
    const keyword = (m?.[1] ?? '').toUpperCase();
    const args = (m?.[2] ?? '').trim();
    const loc = { file, line };
    if (!OPS.has(keyword)) {
      problems.push(new KubefileError(loc, `unknown instruction "${m?.[1]}"`, 'use one of FROM, COPY, ADD, RUN, CMD, ENV, ARG, LABEL, APP, APPCMDS, LAUNCH, CMDS'));
      continue;
    }
    if (!args) {
      problems.push(new KubefileError(loc, `${keyword} needs arguments`));
      continue;
    }
    try {
      result.push(parseInstruction(keyword, args, line, text));
    } catch (err) {
      if (err instanceof KubefileError) problems.push(err);
      else problems.push(new KubefileError(loc, `${keyword}: ${(err as Error).message}`, err instanceof Problem ? err.hint : undefined));
    }
  }
  if (result.length === 0 && problems.length === 0) throw new KubefileError({ file }, 'the Kubefile has no instructions', 'start it with FROM scratch');
  const firstReal = result.find((i) => i.op !== 'ARG');
  // A broken line before the first instruction may well be the FROM: no second error about the same mistake.
  const brokenBefore = problems.some((p) => (p.location.line ?? 0) < (firstReal?.line ?? Infinity));
  if (result.length > 0 && !brokenBefore && (!firstReal || firstReal.op !== 'FROM')) {
    problems.push(new KubefileError({ file, line: firstReal?.line ?? 1 }, `the first instruction must be FROM, found ${firstReal?.op ?? 'none'}`));
  }
  const froms = result.filter((i) => i.op === 'FROM');
  for (const extra of froms.slice(1)) problems.push(new KubefileError({ file, line: extra.line }, 'only one FROM is allowed (multi-stage builds are not supported)'));
  problems.push(...checkApplications(result, file));
  if (problems.length > 0) throw kubefileErrors(file, problems);
  return result;
}

const COPY_FLAGS = new Set(['chown', 'chmod']);
const FLAG_HINTS: Record<string, string> = {
  from: 'multi-stage builds are not supported: build that image first and COPY from the build context',
};

/** `[--chown=u:g] [--chmod=mode] src... dest`, or the JSON form after the flags, as Docker reads them. */
function parseCopyArgs(op: string, args: string): CopyArgs {
  const out: Partial<CopyArgs> = {};
  let rest = args.trim();
  for (let m = /^--([A-Za-z-]+)(?:=(\S*))?(?:\s+|$)/.exec(rest); m; m = /^--([A-Za-z-]+)(?:=(\S*))?(?:\s+|$)/.exec(rest)) {
    const [all, name, raw] = m;
    if (!COPY_FLAGS.has(name)) throw new Problem(`option --${name} is not supported`, FLAG_HINTS[name] ?? `${op} takes --chown=user:group and --chmod=mode`);
    const value = raw === undefined ? undefined : splitWords(raw)[0] ?? '';
    if (!value) throw new Problem(`--${name} needs a value`, name === 'chown' ? 'write --chown=user:group' : 'write --chmod=0644');
    if (out[name as 'chown' | 'chmod'] !== undefined) throw new Problem(`--${name} is given twice`);
    out[name as 'chown' | 'chmod'] = value;
    rest = rest.slice(all.length);
  }
  const words = jsonForm(rest, `${op} ["source", "destination"]`, 'space-separated paths') ?? splitWords(rest);
  const flag = words.find((w) => /^--[A-Za-z]/.test(w));
  if (flag && words.indexOf(flag) < words.length - 1) throw new Problem(`option ${flag} must come before the sources`, `write ${op} ${flag} src... dest`);
  if (words.length < 2) throw new Problem(`needs at least one source and a destination: ${op} src... dest`);
  return { ...out, sources: words.slice(0, -1), dest: words[words.length - 1] };
}

function parseInstruction(op: string, args: string, line: number, text: string): Instruction {
  switch (op) {
    case 'FROM': {
      const words = splitWords(args);
      if (words.length !== 1) throw new Error(`takes one image reference, got "${args}"`);
      return { op, line, text, image: words[0] };
    }
    case 'COPY':
    case 'ADD':
      return { op, line, text, ...parseCopyArgs(op, args) };
    case 'RUN':
    case 'CMD':
      return { op, line, text, ...parseCommand(op, args) };
    case 'ENV':
    case 'LABEL': {
      const pairs = parsePairs(args, op === 'ENV');
      for (const [k] of pairs) {
        if (op === 'ENV' && !NAME_RE.test(k)) throw new Error(`"${k}" is not a valid variable name`);
        if (!k) throw new Error('empty key');
      }
      return { op, line, text, pairs };
    }
    case 'ARG': {
      const words = splitWords(args);
      if (words.length !== 1) throw new Error(`takes one name[=default], got "${args}"`);
      const eq = words[0].indexOf('=');
      const name = eq < 0 ? words[0] : words[0].slice(0, eq);
      if (!NAME_RE.test(name)) throw new Error(`"${name}" is not a valid argument name (letters, digits and _, not starting with a digit)`);
      return { op, line, text, name, default: eq < 0 ? undefined : words[0].slice(eq + 1) };
    }
    default:
      return parseAppInstruction(op, args, line, text, { splitWords, problem: (message, hint) => new Problem(message, hint) });
  }
  throw new Error(`unknown instruction ${op}`);
}

/** Expands `$NAME`, `${NAME}`, `${NAME:-default}` from `vars`; unknown names expand to "". */
export function expandVars(s: string, vars: Record<string, string>): string {
  return s.replace(/\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, braced, def, bare) => {
    if (m === '\\$') return '$';
    const name = braced ?? bare;
    const v = vars[name];
    if (v !== undefined && v !== '') return v;
    return def ?? (v ?? '');
  });
}
