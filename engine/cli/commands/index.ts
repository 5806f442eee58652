/**
 * Every command module registers itself on the program; the list order is the order in `ci --help`. Modules are
 * loaded when needed: a run that names its command loads only that command's module (and what it imports), so
 * `ci plan` does not pay for the image builder, the registry client or the emulator.
 */
import type { Command } from 'commander';

export type RegisterCommand = (program: Command) => void;

interface CommandModule {
  /** The top-level commands the module registers. */
  names: string[];
  load: () => Promise<RegisterCommand>;
}

export const COMMANDS: CommandModule[] = [
  { names: ['build'], load: async () => (await import('./build.js')).register },
  { names: ['images'], load: async () => (await import('./images.js')).register },
  { names: ['inspect'], load: async () => (await import('./inspect.js')).register },
  { names: ['tag'], load: async () => (await import('./tag.js')).register },
  { names: ['rmi'], load: async () => (await import('./rmi.js')).register },
  { names: ['login'], load: async () => (await import('./login.js')).register },
  { names: ['logout'], load: async () => (await import('./logout.js')).register },
  { names: ['push'], load: async () => (await import('./push.js')).register },
  { names: ['pull'], load: async () => (await import('./pull.js')).register },
  { names: ['save'], load: async () => (await import('./save.js')).register },
  { names: ['load'], load: async () => (await import('./load.js')).register },
  { names: ['merge'], load: async () => (await import('./merge.js')).register },
  { names: ['plan'], load: async () => (await import('./plan.js')).register },
  { names: ['apply'], load: async () => (await import('./apply.js')).register },
  { names: ['destroy'], load: async () => (await import('./destroy.js')).register },
  { names: ['run'], load: async () => (await import('./run.js')).register },
  { names: ['join'], load: async () => (await import('./join.js')).registerJoin },
  { names: ['delete'], load: async () => (await import('./join.js')).registerDelete },
  { names: ['state', 'force-unlock'], load: async () => (await import('./state.js')).register },
  { names: ['emulator'], load: async () => (await import('./emulator.js')).register },
  { names: ['version'], load: async () => (await import('./version.js')).register },
];

/**
 * The registrations a run needs: only its command's when `argv` names a known one (the first word that is not an
 * option: ci's own options take no values), otherwise every command's (`ci --help`, `ci help`, a mistyped command,
 * which commander answers with the closest names).
 */
export async function commandsFor(argv: string[]): Promise<RegisterCommand[]> {
  const word = argv.find((a) => !a.startsWith('-'));
  const named = word === undefined ? undefined : COMMANDS.find((c) => c.names.includes(word));
  return Promise.all((named ? [named] : COMMANDS).map((c) => c.load()));
}
