import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';
import { pushImage } from '../../registry/push.js';
import { ProgressView } from '../../registry/progress.js';
import { parseSize } from './pull.js';

export function register(program: Command): void {
  program
    .command('push')
    .description('send an image to its registry (or to DESTINATION); blobs the registry has are not sent again')
    .argument('<image>', 'image in the local store, e.g. registry.example.com:5000/team/app:v1')
    .argument('[destination]', 'push under another name, e.g. registry.example.com:5000/team/app:v1')
    .option('--ca-file <path>', 'PEM file of the CA that signed the registry certificate')
    .option('--insecure', 'the registry speaks plain HTTP')
    .option('--chunk-size <bytes>', 'upload blobs larger than this in chunks (e.g. 16MiB)')
    .action(async (image: string, destination: string | undefined, o: { caFile?: string; insecure?: boolean; chunkSize?: string }) => {
      const view = process.stderr.isTTY ? new ProgressView(process.stderr) : undefined;
      const r = await pushImage(new ImageStore(), image, {
        destination,
        caFile: o.caFile,
        insecure: o.insecure,
        chunkSize: o.chunkSize ? parseSize(o.chunkSize) : undefined,
        onProgress: view?.update,
      });
      view?.finish();
      process.stdout.write(
        `pushed ${r.ref} ${r.digest} (${r.uploaded.length} uploaded, ${r.mounted.length} mounted, ${r.skipped.length} already there)\n`,
      );
    });
}
