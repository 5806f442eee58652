/** `ci version`: the same as `ci --version`, for those who type it as a command. */
import type { Command } from 'commander';
import { productVersion } from '../version.js';

export function register(program: Command): void {
  program
    .command('version')
    .description('print the version of ci (as --version does)')
    .action(() => {
      process.stdout.write(`${productVersion()}\n`);
    });
}
