/**
 * The `ci` command. Each command lives in its own module under commands/ and registers itself; this file is
 * the only place where errors become exit codes and text (the codes are in exit-codes.ts).
 */
import { Command, CommanderError } from 'commander';
import { CiError, KubefileErrors, UsageError } from '../kernel/errors.js';
import { redact } from '../kernel/redact.js';
import { commandsFor } from './commands/index.js';
import { EXIT } from './exit-codes.js';
import { productVersion } from './version.js';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('ci')
    .description('cloudimage: build, share and run whole distributed systems as images')
    .version(productVersion(), '-V, --version', 'print the version of ci')
    .option('--debug', 'show stack traces for errors')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of await commandsFor(argv)) register(program);
  let running: Command | undefined;
  usageHints(program, (cmd) => (running = cmd));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? EXIT.ok : Number(process.exitCode);
  } catch (err) {
    return reportError(err, argv.includes('--debug'), running && helpHint(running));
  }
}

function helpHint(cmd: Command): string {
  const path: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) path.unshift(c.name());
  return `run \`${path.join(' ')} --help\` to see ${cmd.commands.length > 0 ? 'its commands and options' : 'its usage'}`;
}

/**
 * After commander's own usage message, one line naming the help of the command that was mistyped; and the
 * command being run is remembered, for the hint of a UsageError found later (a bad flag value, say).
 */
function usageHints(cmd: Command, onDispatch: (sub: Command) => void): void {
  cmd.showHelpAfterError(`hint: ${helpHint(cmd)}`);
  if (cmd.commands.length > 0) cmd.hook('preSubcommand', (_cmd, sub) => onDispatch(sub));
  for (const sub of cmd.commands) usageHints(sub, onDispatch);
}

/** `usageHint` is shown for a UsageError that brings no hint of its own. */
export function reportError(err: unknown, debug: boolean, usageHint?: string): number {
  if (err instanceof CommanderError) {
    // commander already printed its message (help, version, or the usage error and our hint).
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof KubefileErrors) {
    // Like a compiler: every problem on its own line (with its hint), then how many there were.
    for (const e of err.errors) {
      process.stderr.write(`error: ${redact(e.message)}\n`);
      if (e.hint) process.stderr.write(`hint: ${redact(e.hint)}\n`);
    }
    process.stderr.write(`error: ${err.errors.length} errors in ${redact(err.file)}; nothing was built\n`);
    return err.exitCode;
  }
  if (err instanceof CiError) {
    process.stderr.write(`error: ${redact(err.message)}\n`);
    const hint = err.hint ?? (err instanceof UsageError ? usageHint : undefined);
    if (hint) process.stderr.write(`hint: ${redact(hint)}\n`);
    if (debug && err.stack) process.stderr.write(redact(err.stack) + '\n');
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`error: internal error (this is a bug in cloudimage): ${redact(e?.message ?? String(err))}\n`);
  if (debug && e?.stack) process.stderr.write(redact(e.stack) + '\n');
  else process.stderr.write('hint: run again with --debug for the stack trace\n');
  return EXIT.internal;
}
