import { Option, type Command } from 'commander';
import { ImageStore } from '../../image/store.js';
import { summarizeImage } from '../../image/inspect.js';

const FORMATS = ['json', 'digest', 'layers'] as const;

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show an image as JSON: digest, layers, CMDs, env, labels (or one field with --format)')
    .argument('<ref>', 'image name, digest or id')
    .addOption(
      new Option('--format <format>', 'json: the whole summary; digest: the manifest digest; layers: the layer digests, one per line')
        .choices(FORMATS)
        .default('json'),
    )
    .action(async (ref: string, o: { format: (typeof FORMATS)[number] }) => {
      const img = await new ImageStore().resolve(ref);
      if (o.format === 'digest') process.stdout.write(img.digest + '\n');
      else if (o.format === 'layers') process.stdout.write(img.manifest.layers.map((l) => l.digest + '\n').join(''));
      else process.stdout.write(JSON.stringify(summarizeImage(img), null, 2) + '\n');
    });
}
