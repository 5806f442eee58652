import { CiError } from '../../engine/errors.js';

/** POSIX single quoting: safe for any byte string, including quotes and newlines. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Environment is exported in the command text because sshd normally refuses `setenv` requests
 * (AcceptEnv rarely lists our names).
 */
export function envPrefix(env: Record<string, string> | undefined): string {
  if (!env) return '';
  let out = '';
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) {
      throw new CiError('ENV_NAME_INVALID', `invalid environment variable name "${name}": use letters, digits and _ only`);
    }
    out += `export ${name}=${shellQuote(value)}; `;
  }
  return out;
}

/** The command line actually sent: env exported, and run through `sudo -n` when the login user is not root. */
export function wrapCommand(command: string, opts: { user: string; env?: Record<string, string> }): string {
  const script = envPrefix(opts.env) + command;
  if (opts.user === 'root') return script;
  return `sudo -n sh -c ${shellQuote(script)}`;
}
