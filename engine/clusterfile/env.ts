/** `${VAR}` expansion from the caller's environment. `$${` writes a literal `${`. */
import { UsageError } from '../kernel/errors.js';
export class UnsetVariable extends Error {
  constructor(readonly variable: string) {
    super(variable);
  }
}

const REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export function expandVars(text: string, env: NodeJS.ProcessEnv): string {
  return text.replace(REF, (m, name: string | undefined) => {
    if (m === '$${') return '${';
    const v = env[name!];
    if (v === undefined) throw new UnsetVariable(name!);
    return v;
  });
}

/**
 * `KEY=VALUE` list to values by key, as sealer reads `spec.env`: a key given several times is a list of its values
 * in order (`CertSANs=a`, `CertSANs=b`). Returns the index of a malformed entry instead.
 */
export function parseEnvList(list: readonly string[]): Record<string, string[]> | { bad: number } {
  const out: Record<string, string[]> = {};
  for (let i = 0; i < list.length; i++) {
    const eq = list[i].indexOf('=');
    const key = eq > 0 ? list[i].slice(0, eq) : '';
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) return { bad: i };
    (out[key] ??= []).push(list[i].slice(eq + 1));
  }
  return out;
}

export interface EnvValues {
  /** What hooks get: a list's items joined with spaces, so `for v in $CertSANs` walks them. */
  env: Record<string, string>;
  /** The keys that are lists. */
  lists: Record<string, string[]>;
}

/** A host's env: the group's keys replace the cluster's whole (a list is not merged), as sealer does. */
export function envValues(...layers: Record<string, string[]>[]): EnvValues {
  const merged: Record<string, string[]> = Object.assign({}, ...layers);
  const env: Record<string, string> = {};
  const lists: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(merged)) {
    env[k] = v.join(' ');
    if (v.length > 1) lists[k] = v;
  }
  return { env, lists };
}

/** `--env K=V` flags, repeatable; later ones win. Values are plain strings, taken as typed (no `${VAR}` expansion). */
export function envFlags(list: readonly string[] | undefined, flag = '--env'): Record<string, string> {
  const r = parseEnvList(list ?? []);
  if ('bad' in r) {
    const entry = list![r.bad as number];
    const eq = entry.indexOf('=');
    // Only the part before "=" is shown: the value may be a secret.
    const what = eq < 0 ? 'has no "="' : `has the key "${entry.slice(0, eq)}", which is not a name`;
    throw new UsageError(`${flag} number ${(r.bad as number) + 1} ${what}`, `write ${flag} KEY=VALUE; a key is a letter or _ then letters, digits, _ . or -`);
  }
  // A key given twice: the later flag wins.
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v[v.length - 1]]));
}
