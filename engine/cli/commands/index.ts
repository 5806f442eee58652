/** Every command module registers itself on the program; the list order is the order in `ci --help`. */
import type { Command } from 'commander';

export type RegisterCommand = (program: Command) => void;

export const COMMANDS: RegisterCommand[] = [];
