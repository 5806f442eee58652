import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';
import type { StoreError } from '../../kernel/errors.js';

export function register(program: Command): void {
  program
    .command('rmi')
    .description('remove images and free the blobs no other image uses')
    .argument('<refs...>', 'image names, digests or ids')
    .option('-f, --force', 'remove an image given by ID or digest even when it has several names (all of them go)')
    .action(async (refs: string[], o: { force?: boolean }) => {
      const store = new ImageStore();
      let gcFailure: StoreError | undefined;
      for (const ref of refs) {
        const r = await store.untag(ref, { force: !!o.force });
        for (const name of r.removed) process.stdout.write(`Untagged: ${name}\n`);
        for (const d of r.freed) process.stdout.write(`Deleted: ${d}\n`);
        gcFailure = r.gcFailure; // each collection looks at the whole store: the last one is what holds now
      }
      // Every name asked for is removed first; then why unused blobs were kept, once.
      if (gcFailure) throw gcFailure;
    });
}
