import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';

export function register(program: Command): void {
  program
    .command('rmi')
    .description('remove images and free the blobs no other image uses')
    .argument('<refs...>', 'image names, digests or ids')
    .action(async (refs: string[]) => {
      const store = new ImageStore();
      for (const ref of refs) {
        const { removed, freed } = await store.untag(ref);
        for (const r of removed) process.stdout.write(`Untagged: ${r}\n`);
        for (const d of freed) process.stdout.write(`Deleted: ${d}\n`);
      }
    });
}
