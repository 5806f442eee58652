/** `${VAR}` expansion from the caller's environment. `$${` writes a literal `${`. */
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

/** `KEY=VALUE` list to a record; later entries win. Returns the index of a malformed entry instead. */
export function parseEnvList(list: readonly string[]): Record<string, string> | { bad: number } {
  const out: Record<string, string> = {};
  for (let i = 0; i < list.length; i++) {
    const eq = list[i].indexOf('=');
    const key = eq > 0 ? list[i].slice(0, eq) : '';
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) return { bad: i };
    out[key] = list[i].slice(eq + 1);
  }
  return out;
}
