/**
 * The distribution auth dance: a registry answers 401 with `WWW-Authenticate: Basic …` or
 * `Bearer realm=…,service=…,scope=…`; for Bearer we trade (optional) credentials for a token at the realm.
 */
export interface Challenge {
  scheme: 'none' | 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Parses one challenge (registries send one); tolerant of quoting and spacing. */
export function parseChallenge(header: string | undefined): Challenge {
  if (!header) return { scheme: 'none', params: {} };
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return { scheme: 'none', params: {} };
  const scheme = m[1].toLowerCase();
  const params: Record<string, string> = {};
  const re = /([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2])) !== null) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  if (scheme === 'basic') return { scheme: 'basic', params };
  if (scheme === 'bearer') return { scheme: 'bearer', params };
  return { scheme: 'none', params };
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

/** Stable cache key for a set of scopes. */
export function scopeKey(scopes: string[]): string {
  return [...new Set(scopes)].sort().join(' ');
}
