/** Shared shapes for push and pull: options, progress events, retry policy. */
import { Transform } from 'node:stream';
import type { RetryOptions } from '../kernel/retry.js';
import type { Digest } from '../kernel/digest.js';
import { RegistryError } from '../kernel/errors.js';
import { parseReference, type Reference } from '../image/reference.js';
import type { ClientOptions } from './client.js';

export type BlobState = 'exists' | 'mounted' | 'sending' | 'sent' | 'receiving' | 'received' | 'present';

export interface ProgressEvent {
  digest: Digest;
  kind: 'config' | 'layer';
  state: BlobState;
  /** Bytes moved so far for this blob. */
  bytes: number;
  total: number;
}

export interface TransferOptions extends ClientOptions {
  onProgress?: (e: ProgressEvent) => void;
  /** Blobs moved at the same time. */
  concurrency?: number;
  retry?: RetryOptions;
}

/** A reference that names a registry; a bare local name cannot be pushed or pulled. */
export function remoteReference(text: string, verb: 'push' | 'pull'): Reference & { registry: string } {
  const ref = parseReference(text);
  if (!ref.registry) {
    throw new RegistryError('REGISTRY_LOCAL_REFERENCE', `cannot ${verb} "${text}": the name has no registry host, so it is local only`, {
      source: 'user',
      hint:
        verb === 'push'
          ? `give the destination with a registry, e.g. \`ci push ${text} registry.example.com:5000/${ref.repository}:${ref.tag ?? 'latest'}\``
          : 'prefix the name with the registry host, e.g. registry.example.com:5000/team/app:v1',
    });
  }
  return ref as Reference & { registry: string };
}

/** Counts bytes flowing through, for progress. */
export function byteCounter(onBytes: (total: number) => void): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      total += chunk.length;
      onBytes(total);
      cb(null, chunk);
    },
  });
}
