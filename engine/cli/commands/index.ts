/** Every command module registers itself on the program; the list order is the order in `ci --help`. */
import type { Command } from 'commander';
import { register as build } from './build.js';
import { register as images } from './images.js';
import { register as inspect } from './inspect.js';
import { register as tag } from './tag.js';
import { register as rmi } from './rmi.js';

export type RegisterCommand = (program: Command) => void;

export const COMMANDS: RegisterCommand[] = [build, images, inspect, tag, rmi];
