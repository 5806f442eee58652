import type { Command } from 'commander';
import { ImageStore } from '../../image/store.js';
import { parseReference } from '../../image/reference.js';
import { shortDigest } from '../../kernel/digest.js';
import { humanSize, relativeTime, table } from '../format.js';
import { redact } from '../../kernel/redact.js';
import { UsageError } from '../../kernel/errors.js';

export function register(program: Command): void {
  program
    .command('images')
    .description('list images in the local store')
    .option('--json', 'print JSON')
    .option('-q, --quiet', 'print only image IDs, one per line, each image once (`ci rmi --force $(ci images -q)` empties the store)')
    .action(async (o: { json?: boolean; quiet?: boolean }) => {
      const store = new ImageStore();
      if (o.quiet && o.json) throw new UsageError('--quiet and --json cannot be used together');
      if (o.quiet) {
        // From the index alone: an image whose blobs are damaged is still listed, so it can be removed.
        const ids = new Set((await store.list()).map((img) => shortDigest(img.digest)));
        process.stdout.write([...ids].map((id) => id + '\n').join(''));
        return;
      }
      const rows = [];
      for (const img of await store.list()) {
        // A damaged image is still listed (so it can be removed), with its size unknown and the reason told.
        const resolved = await store.resolve(img.ref).catch((err: Error) => {
          process.stderr.write(`warning: ${redact(err.message)}\n`);
          return undefined;
        });
        const r = parseReference(img.ref);
        rows.push({
          name: r.registry ? `${r.registry}/${r.repository}` : r.repository,
          tag: r.tag ?? '<none>',
          id: img.digest,
          created: img.storedAt,
          size: resolved ? ImageStore.imageSize(resolved) : null,
        });
      }
      if (o.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        table(
          ['NAME', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'],
          rows.map((r) => [r.name, r.tag, shortDigest(r.id), relativeTime(r.created), r.size === null ? '?' : humanSize(r.size)]),
        ),
      );
    });
}
