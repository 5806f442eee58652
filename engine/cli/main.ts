/**
 * The `ci` command. Each command lives in its own module under commands/ and registers itself; this file is
 * the only place where errors become exit codes and text.
 */
import { Command, CommanderError } from 'commander';
import { CiError } from '../errors.js';
import { redact } from '../redact.js';
import { COMMANDS } from './commands/index.js';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('ci')
    .description('cloudimage: build, share and run whole distributed systems as images')
    .option('--debug', 'show stack traces for errors')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of COMMANDS) register(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    return reportError(err, argv.includes('--debug'));
  }
}

export function reportError(err: unknown, debug: boolean): number {
  if (err instanceof CommanderError) {
    // commander already printed its message (help or usage).
    return err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof CiError) {
    process.stderr.write(`error: ${redact(err.message)}\n`);
    if (err.hint) process.stderr.write(`hint: ${redact(err.hint)}\n`);
    if (debug && err.stack) process.stderr.write(redact(err.stack) + '\n');
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`error: internal error (this is a bug in cloudimage): ${redact(e?.message ?? String(err))}\n`);
  if (debug && e?.stack) process.stderr.write(redact(e.stack) + '\n');
  else process.stderr.write('hint: run again with --debug for the stack trace\n');
  return 70;
}

