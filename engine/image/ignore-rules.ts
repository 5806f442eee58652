/**
 * The build context's ignore file (`.kubefileignore`, else `.dockerignore`), with Docker's pattern rules: one
 * pattern a line, `#` comments, surrounding blanks trimmed, a leading `/` meaning the context root, `*` and `?`
 * never crossing `/`, `**` matching any number of directories (none included), `[...]` classes, `\` escapes, and
 * `!` exceptions. The last pattern that matches a path decides; a pattern that matches a directory also covers
 * everything below it. Paths are relative to the context root, with `/` separators.
 */
import { promises as fs } from 'node:fs';
import { join, posix } from 'node:path';

export interface IgnorePattern {
  /** The cleaned pattern as written (without `!`). */
  text: string;
  exception: boolean;
  line: number;
  regex: RegExp;
}

/** Regexp characters that mean nothing special in a Docker pattern and must match literally. */
const LITERAL = new Set(['.', '+', '(', ')', '|', '{', '}', '$', '^']);

function compile(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++; // `**/` is `**`
        re += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '\\') {
      if (i + 1 < pattern.length) re += '\\' + pattern[++i];
      else re += '\\\\';
    } else if (c === '[') {
      // A class is copied as it is, `[!...]` and `[^...]` both negate (as in Go's filepath.Match).
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw new Error(`unterminated [ in "${pattern}"`);
      let body = pattern.slice(i + 1, end);
      if (body.startsWith('!')) body = '^' + body.slice(1);
      re += `[${body}]`;
      i = end;
    } else if (LITERAL.has(c) || c === ']') {
      re += '\\' + c;
    } else {
      re += c;
    }
  }
  return new RegExp(re + '$', 's');
}

/** Docker's cleaning of one pattern: Clean, then a leading `/` dropped. */
function clean(p: string): string {
  let out = posix.normalize(p);
  if (out.length > 1 && out.endsWith('/')) out = out.slice(0, -1);
  if (out.length > 1 && out.startsWith('/')) out = out.slice(1);
  return out;
}

export class IgnoreRules {
  constructor(
    readonly patterns: IgnorePattern[],
    /** The file the patterns come from, relative to the context (for messages), or undefined when there is none. */
    readonly file?: string,
  ) {}

  static parse(text: string, file?: string): IgnoreRules {
    const patterns: IgnorePattern[] = [];
    text.replace(/\r\n?/g, '\n').split('\n').forEach((raw, idx) => {
      let p = raw.trim();
      if (p === '' || p.startsWith('#')) return;
      const exception = p.startsWith('!');
      if (exception) p = p.slice(1).trim();
      if (p === '') return;
      const text = clean(p);
      let regex: RegExp;
      try {
        regex = compile(text);
      } catch (err) {
        throw new IgnoreFileError(file ?? 'ignore file', idx + 1, (err as Error).message);
      }
      patterns.push({ text, exception, line: idx + 1, regex });
    });
    return new IgnoreRules(patterns, file);
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** True when `path` (relative to the context) is left out of the context. */
  excludes(path: string): boolean {
    const p = clean(path);
    if (p === '.' || p === '') return false;
    const parts = p.split('/');
    let excluded = false;
    for (const pat of this.patterns) {
      // Only a pattern that can change the verdict is tried.
      if (pat.exception !== excluded) continue;
      let hit = pat.regex.test(p);
      for (let i = 1; !hit && i < parts.length; i++) hit = pat.regex.test(parts.slice(0, i).join('/'));
      if (hit) excluded = !pat.exception;
    }
    return excluded;
  }

  /**
   * Whether a walk must enter an excluded directory: only when an exception pattern names something below it,
   * which is how Docker decides (literally, by the pattern's leading text).
   */
  mayIncludeBelow(dir: string): boolean {
    const prefix = clean(dir) + '/';
    return this.patterns.some((p) => p.exception && (p.text + '/').startsWith(prefix));
  }
}

export class IgnoreFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(`${file}:${line}: ${reason}`);
  }
}

export const IGNORE_FILES = ['.kubefileignore', '.dockerignore'] as const;

/** The context's ignore rules: `.kubefileignore` when present (it wins), else `.dockerignore`, else none. */
export async function loadIgnoreRules(context: string): Promise<IgnoreRules> {
  for (const name of IGNORE_FILES) {
    let text: string;
    try {
      text = await fs.readFile(join(context, name), 'utf8');
    } catch (err: any) {
      if (err?.code === 'ENOENT') continue;
      throw err;
    }
    return IgnoreRules.parse(text, name);
  }
  return new IgnoreRules([]);
}
