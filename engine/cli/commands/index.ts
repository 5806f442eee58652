/** Every command module registers itself on the program; the list order is the order in `ci --help`. */
import type { Command } from 'commander';
import { register as build } from './build.js';
import { register as images } from './images.js';
import { register as inspect } from './inspect.js';
import { register as tag } from './tag.js';
import { register as rmi } from './rmi.js';
import { register as login } from './login.js';
import { register as logout } from './logout.js';
import { register as push } from './push.js';
import { register as pull } from './pull.js';
import { register as save } from './save.js';
import { register as load } from './load.js';
import { register as merge } from './merge.js';
import { register as plan } from './plan.js';
import { register as apply } from './apply.js';
import { register as destroy } from './destroy.js';
import { register as state } from './state.js';
import { register as run } from './run.js';
import { registerJoin as join, registerDelete as del } from './join.js';
import { register as emulator } from './emulator.js';
import { register as version } from './version.js';

export type RegisterCommand = (program: Command) => void;

export const COMMANDS: RegisterCommand[] = [build, images, inspect, tag, rmi, login, logout, push, pull, save, load, merge, plan, apply, destroy, run, join, del, state, emulator, version];
