import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CI_BIN = fileURLToPath(new URL('../../dist/engine/cli/bin.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the compiled `ci` as a user would, with its own environment. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CI_BIN, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, FORCE_COLOR: '0', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    collect(child, opts.input, resolve, reject);
  });
}

function collect(child: ChildProcessWithoutNullStreams, input: string | undefined, resolve: (r: CliResult) => void, reject: (e: Error) => void): void {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b) => (stdout += b));
  child.stderr.on('data', (b) => (stderr += b));
  child.on('error', reject);
  child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  child.stdin.end(input ?? '');
}

/**
 * Runs the compiled `ci` on a real pseudo-terminal (util-linux `script`), so that it sees a TTY as a user's shell
 * gives it. stdout and stderr both arrive on the terminal, hence in `stdout`, with CR LF line ends.
 */
export function runCliInTerminal(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Promise<CliResult> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, CI_BIN, ...args].map(quote).join(' ');
  const env = { ...process.env, ...opts.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['--quiet', '--return', '--command', command, '/dev/null'], { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    collect(child, opts.input, resolve, reject);
  });
}
