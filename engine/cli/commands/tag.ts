import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';

export function register(program: Command): void {
  program
    .command('tag')
    .description('give an image another name')
    .argument('<source>', 'existing image name, digest or id')
    .argument('<target>', 'new name')
    .action(async (source: string, target: string) => {
      const store = new ImageStore();
      const img = await store.resolve(source);
      await store.tag(target, { mediaType: img.manifest.mediaType, digest: img.digest, size: img.manifestSize });
    });
}
