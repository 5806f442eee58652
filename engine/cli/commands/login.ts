import type { Command } from 'commander';
import { login } from '../../registry/login.js';
import { registerSecret } from '../../kernel/redact.js';
import { UsageError } from '../../kernel/errors.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function register(program: Command): void {
  program
    .command('login')
    .description('log in to a registry; the login is kept in $CI_HOME/auth.json (mode 0600)')
    .argument('<registry>', 'registry host[:port]')
    .requiredOption('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password (prefer --password-stdin: arguments are visible to other users)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--ca-file <path>', 'PEM file of the CA that signed the registry certificate (remembered)')
    .option('--insecure', 'the registry speaks plain HTTP (remembered)')
    .action(async (registry: string, o: { username: string; password?: string; passwordStdin?: boolean; caFile?: string; insecure?: boolean }) => {
      if (o.password !== undefined && o.passwordStdin) throw new UsageError('give the password either with -p or with --password-stdin, not both');
      let password = o.password;
      if (o.passwordStdin) password = await readStdin();
      if (password === undefined) throw new UsageError('no password given', 'pass --password-stdin and pipe the password in, or use -p');
      registerSecret(password);
      if (!password) throw new UsageError('the password is empty');
      if (o.password !== undefined) process.stderr.write('warning: -p puts the password in the process list; prefer --password-stdin\n');
      const path = await login(registry, { username: o.username, password }, { caFile: o.caFile, insecure: o.insecure });
      process.stdout.write(`logged in to ${registry} as ${o.username} (saved in ${path})\n`);
    });
}
