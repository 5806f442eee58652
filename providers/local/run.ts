/** Runs local system tools (ip, tc, mount, ssh-keygen, debootstrap) and turns failures into LocalHostError. */
import { spawn } from 'node:child_process';
import { LocalHostError } from './errors.js';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runTool(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 120_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => reject(new LocalHostError(`cannot run ${cmd}: ${e.message}`, { cause: e, hint: `install ${cmd} (see the LOCAL provider requirements)` })));
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs and throws on non-zero exit, naming the command line and its stderr. */
export async function mustRun(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; what?: string } = {}): Promise<string> {
  const res = await runTool(cmd, args, opts);
  if (res.code !== 0) {
    const line = [cmd, ...args].join(' ');
    const tail = (res.stderr || res.stdout).trimEnd().split('\n').slice(-15).join('\n');
    throw new LocalHostError(`${opts.what ? opts.what + ': ' : ''}\`${line}\` exited with ${res.code ?? 'a signal'}${tail ? `\n${tail}` : ''}`);
  }
  return res.stdout;
}
