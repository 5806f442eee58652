import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';
import { mergeImages } from '../../image/merge.js';

export function register(program: Command): void {
  program
    .command('merge')
    .description("make one image from several: their layers in order (each once), then their CMDs in order")
    .argument('<images...>', 'two or more images in the local store')
    .requiredOption('-t, --tag <name>', 'name of the merged image')
    .action(async (images: string[], o: { tag: string }) => {
      const r = await mergeImages(new ImageStore(), images, o.tag);
      process.stdout.write(`merged ${images.join(' + ')} into ${r.ref} ${r.digest} (${r.layers} layers, ${r.cmds} CMDs)\n`);
    });
}
