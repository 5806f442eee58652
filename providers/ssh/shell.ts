import { CiError } from '../../engine/kernel/errors.js';

/** POSIX single quoting: safe for any byte string, including quotes and newlines. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * A shell pipeline stage printing the lowercase hex SHA-256 of its stdin. OpenSSL's digest uses the CPU's SHA
 * instructions (3 to 5 times coreutils' sha256sum here), which matters when every byte of every layer is hashed on
 * every host; sha256sum when a host has no openssl. One group, so a redirection after it feeds the digest.
 */
export const SHA256_OF_STDIN = '{ { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi; } | cut -c1-64; }';

/**
 * The same choice for files: a shell command hashing the files `find` (its command without an action) finds, one
 * `<hex> <path>` line each (coreutils puts two spaces, OpenSSL a space and `*`; both end in the path).
 */
export function sha256OfFound(find: string): string {
  return `if command -v openssl >/dev/null 2>&1; then ${find} -exec openssl dgst -sha256 -r {} +; else ${find} -exec sha256sum -- {} +; fi`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `export NAME='value'` lines; a value with newlines spans several lines inside its quotes. */
export function envScript(env: Record<string, string>): string {
  let out = '';
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) {
      throw new CiError('ENV_NAME_INVALID', `invalid environment variable name "${name}": use letters, digits and _ only`);
    }
    out += `export ${name}=${shellQuote(value)}\n`;
  }
  return out;
}

/**
 * Reads the environment from the head of stdin: a line with a count N, then N lines of `export` statements.
 * The shell's `read` takes no byte past each line, so the rest of stdin is left to the command. Env travels this
 * way, and not in the command text, because the command text becomes the argv of a shell on the host, which any
 * local user can read (`ps`, /proc/PID/cmdline); and sshd normally refuses `setenv` requests.
 */
const ENV_READER = [
  'IFS= read -r __ci_n || exit 125',
  '__ci_env=',
  'while [ "$__ci_n" -gt 0 ]; do',
  '  IFS= read -r __ci_l || exit 125',
  '  __ci_env="$__ci_env$__ci_l',
  '"',
  '  __ci_n=$((__ci_n - 1))',
  'done',
  'eval "$__ci_env"',
  'unset __ci_n __ci_l __ci_env',
  '',
].join('\n');

export interface WireCommand {
  /** The command line sent to sshd: never holds env values. */
  command: string;
  /** What must be written to stdin before anything else: the env, for ENV_READER. */
  stdinPrefix?: string;
}

/** The command actually sent: env read from stdin, and run through `sudo -n` when the login user is not root. */
export function wireCommand(command: string, opts: { user: string; env?: Record<string, string> }): WireCommand {
  const env = opts.env && Object.keys(opts.env).length > 0 ? envScript(opts.env) : undefined;
  const script = env === undefined ? command : ENV_READER + command;
  const wire = opts.user === 'root' ? script : `sudo -n sh -c ${shellQuote(script)}`;
  if (env === undefined) return { command: wire };
  const lines = env.split('\n').length - 1;
  return { command: wire, stdinPrefix: `${lines}\n${env}` };
}
