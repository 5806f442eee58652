import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';
import { pullImage } from '../../registry/pull.js';
import { ProgressView } from '../../registry/progress.js';
import { UsageError } from '../../kernel/errors.js';
import { formatPlatform, hostPlatform, parsePlatform } from '../../image/platform.js';

export function parseSize(text: string): number {
  const m = /^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`"${text}" is not a size`, 'write a number of bytes, or e.g. 512KiB, 16MiB');
  const unit = (m[2] ?? 'b').toLowerCase()[0];
  const n = Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
  if (n < 1) throw new UsageError(`size "${text}" must be at least one byte`);
  return n;
}

export function register(program: Command): void {
  program
    .command('pull')
    .description('fetch an image from its registry into the local store, verifying every digest')
    .argument('<image>', 'e.g. registry.example.com:5000/team/app:v1 or …@sha256:…')
    .option('--ca-file <path>', 'PEM file of the CA that signed the registry certificate')
    .option('--insecure', 'the registry speaks plain HTTP')
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image', formatPlatform(hostPlatform()))
    .action(async (image: string, o: { caFile?: string; insecure?: boolean; platform: string }) => {
      const view = process.stderr.isTTY ? new ProgressView(process.stderr) : undefined;
      const r = await pullImage(new ImageStore(), image, {
        caFile: o.caFile,
        insecure: o.insecure,
        platform: parsePlatform(o.platform),
        onProgress: view?.update,
      });
      view?.finish();
      process.stdout.write(`pulled ${r.ref} ${r.digest} (${r.downloaded.length} blobs fetched)\n`);
    });
}
