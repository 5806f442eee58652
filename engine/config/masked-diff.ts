/**
 * The unified diff a plan shows for a file a Config or template changes, with secrets masked: every value of a
 * Secret's data/stringData (and its decoded form), every value whose key reads like a password, token, secret or
 * key, in structured files and in plain `key=value` / `key: value` lines alike. Masked values go through the one
 * redaction registry, so they stay masked in every later output too.
 */
import { createTwoFilesPatch } from 'diff';
import { parseAllDocuments } from 'yaml';
import { redact, registerSecret } from '../kernel/redact.js';

const SENSITIVE_KEY = /(pass(word|wd|phrase)?|pwd|token|secret|(^|[_.-])key$|private[_-]?key|access[_-]?key|api[_-]?key|credential)/i;

export function isSensitiveKey(k: string): boolean {
  return SENSITIVE_KEY.test(k);
}

/** Values of the file that must not be shown, as found in its YAML or JSON structure. */
export function sensitiveValues(text: string): string[] {
  const found: string[] = [];
  const walk = (v: unknown, sensitive: boolean) => {
    if (v === null || v === undefined) return;
    if (typeof v !== 'object') {
      if (sensitive) found.push(String(v));
      return;
    }
    if (Array.isArray(v)) return v.forEach((x) => walk(x, sensitive));
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(x, sensitive || isSensitiveKey(k));
  };
  let docs: unknown[] = [];
  try {
    const parsed = parseAllDocuments(text, { uniqueKeys: false });
    docs = (Array.isArray(parsed) ? parsed : []).filter((d) => d.errors.length === 0).map((d) => d.toJS({ maxAliasCount: 0 }));
  } catch {
    docs = [];
  }
  for (const d of docs) {
    if (!d || typeof d !== 'object' || Array.isArray(d)) continue;
    const doc = d as Record<string, unknown>;
    if (doc.kind === 'Secret') {
      for (const field of ['data', 'stringData']) {
        const m = doc[field];
        if (!m || typeof m !== 'object') continue;
        for (const v of Object.values(m as Record<string, unknown>)) {
          if (v === null || v === undefined) continue;
          found.push(String(v));
          if (field === 'data') found.push(Buffer.from(String(v), 'base64').toString('utf8'));
        }
      }
    }
    walk(doc, false);
  }
  return found;
}

/** `password=x`, `token: x`, `"apiKey": "x"` on a line of any file. */
const LINE = /^([+\- ]?\s*(?:export\s+)?"?([A-Za-z0-9_.-]+)"?\s*[:=]\s*)(.+)$/;

function maskLine(line: string): string {
  const m = LINE.exec(line);
  if (!m || !isSensitiveKey(m[2])) return line;
  const value = m[3].trim();
  if (value === '' || value === '|' || value === '>' || value === '{' || value === '[') return line;
  return `${m[1]}******`;
}

/** The unified diff from `before` to `after` (undefined: no such file), masked; '' when they are the same. */
export function maskedDiff(path: string, before: string | undefined, after: string | undefined): string {
  if (before === after) return '';
  for (const v of [...sensitiveValues(before ?? ''), ...sensitiveValues(after ?? '')]) registerSecret(v);
  const patch = createTwoFilesPatch(before === undefined ? '/dev/null' : `a/${path}`, after === undefined ? '/dev/null' : `b/${path}`, before ?? '', after ?? '', undefined, undefined, { context: 3 });
  // The first line of the package's output is a separator of its own ("====="), not part of a unified diff.
  const lines = patch.split('\n').filter((l, i) => !(i === 0 && /^=+$/.test(l)) && !l.startsWith('Index: '));
  return redact(lines.map((l) => (l.startsWith('---') || l.startsWith('+++') || l.startsWith('@@') ? l : maskLine(l))).join('\n')).replace(/\n+$/, '') + '\n';
}
