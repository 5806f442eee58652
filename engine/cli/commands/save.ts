import type { Command } from 'commander';
import { resolve } from 'node:path';
import { ImageStore } from '../../image/store.js';
import { saveImages } from '../../image/archive.js';

export function register(program: Command): void {
  program
    .command('save')
    .description('write images to one OCI archive (shared layers stored once)')
    .argument('<images...>', 'images in the local store')
    .requiredOption('-o, --output <file>', 'archive to write, e.g. images.tar')
    .action(async (images: string[], o: { output: string }) => {
      const r = await saveImages(new ImageStore(), images, resolve(o.output));
      process.stdout.write(`saved ${r.images.length} image(s), ${r.blobs} blobs, to ${r.file}\n`);
    });
}
