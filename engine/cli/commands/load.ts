import type { Command } from 'commander';
import { resolve } from 'node:path';
import { ImageStore } from '../../image/store.js';
import { loadImages } from '../../image/archive.js';

export function register(program: Command): void {
  program
    .command('load')
    .description('import the images of an OCI archive, verifying every digest')
    .requiredOption('-i, --input <file>', 'archive written by `ci save` (or skopeo oci-archive)')
    .option('-t, --tag <name>', 'name for the image when the archive holds one unnamed image')
    .action(async (o: { input: string; tag?: string }) => {
      const r = await loadImages(new ImageStore(), resolve(o.input), { tag: o.tag });
      for (const i of r.images) process.stdout.write(`loaded ${i.ref} ${i.digest}\n`);
    });
}
