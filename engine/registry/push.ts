/**
 * `ci push`: sends a stored image's config, layers and exact manifest bytes (so the digest is unchanged).
 * Blobs the registry already has are never re-sent (HEAD first); blobs that a local image says live in
 * another repository of the same registry are mounted instead of uploaded.
 */
import { createReadStream } from 'node:fs';
import pLimit from 'p-limit';
import { retry } from '../kernel/retry.js';
import type { Digest } from '../kernel/digest.js';
import { RegistryError } from '../kernel/errors.js';
import { MEDIA, type Descriptor, type Manifest } from '../image/oci.js';
import { parseReference, formatReference } from '../image/reference.js';
import type { ImageStore } from '../image/store.js';
import { RegistryClient } from './client.js';
import { pushScope } from './auth.js';
import { byteCounter, remoteReference, type TransferOptions } from './transfer.js';

export interface PushResult {
  /** Where the image now lives, `registry/repository:tag`. */
  ref: string;
  digest: Digest;
  uploaded: Digest[];
  mounted: Digest[];
  /** Blobs the registry already had. */
  skipped: Digest[];
}

export async function pushImage(store: ImageStore, source: string, opts: TransferOptions & { destination?: string } = {}): Promise<PushResult> {
  const target = remoteReference(opts.destination ?? source, 'push');
  const image = await store.resolve(source);
  if (target.digest && target.digest !== image.digest) {
    throw new RegistryError('REGISTRY_DIGEST_REFERENCE', `cannot push ${source} as ${formatReference(target)}: the image's digest is ${image.digest}`, {
      source: 'user',
      hint: 'push by tag, or name the digest the image really has',
    });
  }
  const client = await RegistryClient.open(target.registry, opts);
  try {
    await client.ping([pushScope(target.repository)]);
    const mountable = await mountCandidates(store, target.registry, target.repository);
    const blobs: { d: Descriptor; kind: 'config' | 'layer' }[] = [];
    const seen = new Set<string>();
    for (const [d, kind] of [[image.manifest.config, 'config'], ...image.manifest.layers.map((l) => [l, 'layer'])] as [Descriptor, 'config' | 'layer'][]) {
      if (!seen.has(d.digest)) blobs.push({ d, kind });
      seen.add(d.digest);
    }
    const result: PushResult = { ref: formatReference(target), digest: image.digest, uploaded: [], mounted: [], skipped: [] };
    const limit = pLimit(opts.concurrency ?? 3);
    const scopes = [pushScope(target.repository)];
    await Promise.all(
      blobs.map(({ d, kind }) =>
        limit(() =>
          retry(async () => {
            const progress = (state: 'exists' | 'mounted' | 'sending' | 'sent', bytes: number) =>
              opts.onProgress?.({ digest: d.digest, kind, state, bytes, total: d.size });
            if (await client.hasBlob(target.repository, d.digest, scopes)) {
              result.skipped.push(d.digest);
              progress('exists', d.size);
              return;
            }
            progress('sending', 0);
            const how = await client.uploadBlob(
              target.repository,
              {
                digest: d.digest,
                size: d.size,
                open: (start, end) => {
                  const file = createReadStream(store.blobPath(d.digest), { start, end: Math.max(start, end - 1) });
                  const counted = byteCounter((n) => progress('sending', start + n));
                  file.on('error', (err) => counted.destroy(err));
                  return file.pipe(counted);
                },
              },
              { mountFrom: mountable.get(d.digest) },
            );
            if (how === 'mounted') {
              result.mounted.push(d.digest);
              progress('mounted', d.size);
            } else {
              result.uploaded.push(d.digest);
              progress('sent', d.size);
            }
          }, opts.retry),
        ),
      ),
    );
    const bytes = await store.readBlob(image.digest);
    const mediaType = image.manifest.mediaType ?? MEDIA.manifest;
    const reference = target.tag ?? image.digest;
    const claimed = await retry(() => client.putManifest(target.repository, reference, bytes, mediaType), opts.retry);
    if (claimed && claimed !== image.digest) {
      throw new RegistryError('REGISTRY_PROTOCOL', `registry ${target.registry} stored the manifest under ${claimed}, expected ${image.digest}`);
    }
    return result;
  } finally {
    client.close();
  }
}

/**
 * Blob digest -> another repository of the same registry that (by a local image's name) holds it. A guess:
 * when wrong, the registry just opens a normal upload.
 */
async function mountCandidates(store: ImageStore, registry: string, repository: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const img of await store.list()) {
    let ref;
    try {
      ref = parseReference(img.ref);
    } catch {
      continue;
    }
    if (ref.registry !== registry || ref.repository === repository) continue;
    try {
      const m = await store.readJson<Manifest>(img.digest);
      for (const d of [m.config, ...m.layers]) if (!out.has(d.digest)) out.set(d.digest, ref.repository);
    } catch {
      // A damaged entry offers no mounts.
    }
  }
  return out;
}
