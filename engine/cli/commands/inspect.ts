import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';
import { summarizeImage } from '../../image/inspect.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show an image as JSON: digest, layers, CMDs, env, labels')
    .argument('<ref>', 'image name, digest or id')
    .action(async (ref: string) => {
      const img = await new ImageStore().resolve(ref);
      process.stdout.write(JSON.stringify(summarizeImage(img), null, 2) + '\n');
    });
}
