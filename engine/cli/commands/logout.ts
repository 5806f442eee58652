import type { Command } from 'commander';
import { removeLogin } from '../../registry/credentials.js';

export function register(program: Command): void {
  program
    .command('logout')
    .description('forget the login for a registry')
    .argument('<registry>', 'registry host[:port]')
    .action(async (registry: string) => {
      const removed = await removeLogin(registry);
      process.stdout.write(removed ? `logged out of ${registry}\n` : `not logged in to ${registry}\n`);
    });
}
