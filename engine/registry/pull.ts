/**
 * `ci pull` and the implicit pull of `ci apply`: fetches the manifest (choosing our platform from an index),
 * checks every byte against its digest, writes blobs through the store's verifying writer, and names the
 * image only once every blob is present, so a failed pull never leaves a named half image.
 */
import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import pLimit from 'p-limit';
import { retry } from '../kernel/retry.js';
import { sha256, type Digest } from '../kernel/digest.js';
import { DigestMismatchError, ImageMetadataError, ImageNotFoundError, RegistryError } from '../kernel/errors.js';
import { checkAppMeta } from '../image/apps.js';
import { MEDIA, type Descriptor, type ImageConfig, type ImageIndex, type Manifest } from '../image/oci.js';
import { checkStoredLayers } from '../image/layer-check.js';
import { UnsafeLayerError } from '../image/layer-tree.js';
import { formatReference, parseReference } from '../image/reference.js';
import type { ImageStore, ResolvedImage } from '../image/store.js';
import { formatPlatform, hostPlatform, platformMatches, type Platform } from '../image/platform.js';
import { RegistryClient, type FetchedManifest } from './client.js';
import { pullScope } from './auth.js';
import { byteCounter, remoteReference, type TransferOptions } from './transfer.js';

const INDEX_TYPES = new Set<string>([MEDIA.index, 'application/vnd.docker.distribution.manifest.list.v2+json']);

export interface PullOptions extends TransferOptions {
  /** Chosen from a multi-platform image; this machine's platform when not given. */
  platform?: Platform;
  /** The image manifest must have this digest (the tag must not have moved since it was looked at). */
  expectedDigest?: Digest;
}

/** An image as its registry describes it, read without storing anything. */
export interface RemoteImage {
  digest: Digest;
  manifest: Manifest;
  config: ImageConfig;
}

export interface PullResult extends ResolvedImage {
  /** Blobs fetched this time (the rest were already in the store). */
  downloaded: Digest[];
}

export async function pullImage(store: ImageStore, text: string, opts: PullOptions = {}): Promise<PullResult> {
  const target = remoteReference(text, 'pull');
  await store.init();
  const client = await RegistryClient.open(target.registry, opts);
  const scopes = [pullScope(target.repository)];
  try {
    const where = `${target.registry}/${target.repository}`;
    const { fetched, digest, manifest } = await fetchImageManifest(client, target, text, opts);
    if (opts.expectedDigest && digest !== opts.expectedDigest) {
      throw new RegistryError('REGISTRY_TAG_MOVED', `${text} now names ${digest}, not ${opts.expectedDigest} as it did a moment ago`, {
        hint: 'someone pushed to that tag meanwhile: run the command again',
      });
    }

    const downloaded: Digest[] = [];
    const limit = pLimit(opts.concurrency ?? 3);
    const blobs: [Descriptor, 'config' | 'layer'][] = [[manifest.config, 'config'], ...manifest.layers.map((l): [Descriptor, 'layer'] => [l, 'layer'])];
    const seen = new Set<string>();
    // Every transfer settles before a failure is reported, so none is left writing a temp file into the store.
    const settled = await Promise.allSettled(
      blobs
        .filter(([d]) => !seen.has(d.digest) && seen.add(d.digest))
        .map(([d, kind]) =>
          limit(async () => {
            if (await store.hasBlob(d.digest)) {
              opts.onProgress?.({ digest: d.digest, kind, state: 'present', bytes: d.size, total: d.size });
              return;
            }
            await retry(async () => {
              const src = await client.getBlob(target.repository, d.digest, scopes);
              const counted = byteCounter((n) => opts.onProgress?.({ digest: d.digest, kind, state: 'receiving', bytes: n, total: d.size }));
              const through = new PassThrough();
              const piping = pipeline(src, counted, through);
              const [stored] = await Promise.all([store.putStream(through, d.digest), piping]);
              if (stored.size !== d.size) {
                throw new RegistryError('REGISTRY_PROTOCOL', `blob ${d.digest} from ${where} is ${stored.size} bytes, the manifest says ${d.size}`);
              }
            }, opts.retry);
            downloaded.push(d.digest);
            opts.onProgress?.({ digest: d.digest, kind, state: 'received', bytes: d.size, total: d.size });
          }),
        ),
    );
    const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;

    // Layers are checked before the image gets a name; what this pull fetched for a refused image goes again.
    const config = parseJson<ImageConfig>(await store.readBlob(manifest.config.digest));
    try {
      checkAppMeta(config?.cloudimage, text);
      await checkStoredLayers(store, { ref: text, layers: manifest.layers.map((l) => l.digest), allowSetid: config?.cloudimage?.allowSetid });
    } catch (err) {
      if (err instanceof UnsafeLayerError || err instanceof ImageMetadataError) await store.discardUnreferenced(downloaded);
      throw err;
    }
    const put = await store.putBlob(fetched.bytes);
    if (put.digest !== digest) throw new DigestMismatchError(`manifest ${where}`, digest, put.digest);
    const name = await store.tag(formatReference(target.tag ? { ...target, digest: undefined } : target), {
      mediaType: fetched.mediaType || manifest.mediaType || MEDIA.manifest,
      digest,
      size: fetched.bytes.length,
      ...(config?.architecture && config.os ? { platform: { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) } } : {}),
    });
    return { ...(await store.resolve(name)), downloaded };
  } finally {
    client.close();
  }
}

/** Returns the image from the store, pulling it first when it is missing and the name has a registry. */
export async function ensureImage(store: ImageStore, ref: string, opts: PullOptions = {}): Promise<ResolvedImage> {
  try {
    return await store.resolve(ref);
  } catch (err) {
    if (!(err instanceof ImageNotFoundError)) throw err;
    let registry: string | undefined;
    try {
      registry = parseReference(ref).registry;
    } catch {
      throw err;
    }
    if (!registry) throw err;
    return pullImage(store, ref, opts);
  }
}

function verifyManifest(what: string, bytes: Buffer, expected: Digest | undefined, claimed: string | undefined): Digest {
  const actual = sha256(bytes);
  if (expected && actual !== expected) throw new DigestMismatchError(what, expected, actual);
  // Only sha256 claims can be checked; a registry using another algorithm is trusted on the bytes alone.
  if (claimed && claimed.startsWith('sha256:') && claimed !== actual) throw new DigestMismatchError(what, claimed, actual);
  return actual;
}

/**
 * The image manifest a reference names: for an index, the one of the requested platform. Every manifest is
 * checked against its digest.
 */
async function fetchImageManifest(
  client: RegistryClient,
  target: ReturnType<typeof remoteReference>,
  text: string,
  opts: PullOptions,
): Promise<{ fetched: FetchedManifest; digest: Digest; manifest: Manifest }> {
  const scopes = [pullScope(target.repository)];
  const where = `${target.registry}/${target.repository}`;
  let manifestRef = target.digest ?? target.tag!;
  let expected: Digest | undefined = target.digest;
  let fetched = await retry(() => client.getManifest(target.repository, manifestRef, scopes), opts.retry);
  let digest = verifyManifest(`manifest ${where}:${manifestRef}`, fetched.bytes, expected, fetched.claimedDigest);
  if (INDEX_TYPES.has(fetched.mediaType) || INDEX_TYPES.has(parseJson(fetched.bytes)?.mediaType)) {
    const child = choosePlatform(parseJson<ImageIndex>(fetched.bytes), opts.platform ?? hostPlatform(), text);
    manifestRef = child.digest;
    expected = child.digest;
    fetched = await retry(() => client.getManifest(target.repository, manifestRef, scopes), opts.retry);
    digest = verifyManifest(`manifest ${where}@${manifestRef}`, fetched.bytes, expected, fetched.claimedDigest);
  }
  const manifest = parseJson<Manifest>(fetched.bytes);
  if (!manifest?.config?.digest || !Array.isArray(manifest.layers)) {
    throw new RegistryError('REGISTRY_PROTOCOL', `${where}:${manifestRef} is not an image manifest (media type ${fetched.mediaType})`);
  }
  return { fetched, digest, manifest };
}

/** Looks an image up in its registry (manifest and config, both verified) without storing anything. */
export async function fetchRemoteImage(text: string, opts: PullOptions = {}): Promise<RemoteImage> {
  const target = remoteReference(text, 'pull');
  const client = await RegistryClient.open(target.registry, opts);
  try {
    const { digest, manifest } = await fetchImageManifest(client, target, text, opts);
    const bytes = await retry(async () => {
      const chunks: Buffer[] = [];
      for await (const c of await client.getBlob(target.repository, manifest.config.digest, [pullScope(target.repository)])) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    }, opts.retry);
    const actual = sha256(bytes);
    if (actual !== manifest.config.digest) throw new DigestMismatchError(`config of ${text}`, manifest.config.digest, actual);
    return { digest, manifest, config: parseJson<ImageConfig>(bytes) };
  } finally {
    client.close();
  }
}

function choosePlatform(index: ImageIndex, platform: Platform, text: string): Descriptor {
  const hit = index?.manifests?.find((m) => m.platform && platformMatches(m.platform, platform));
  if (hit) return hit;
  if (index?.manifests?.length === 1 && !index.manifests[0].platform) return index.manifests[0];
  const offered = (index?.manifests ?? []).map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ');
  throw new RegistryError('REGISTRY_NO_PLATFORM', `${text} has no image for ${formatPlatform(platform)} (it offers: ${offered || 'nothing'})`, {
    source: 'user',
    hint: 'choose one of those with --platform',
  });
}

function parseJson<T = any>(bytes: Buffer): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new RegistryError('REGISTRY_PROTOCOL', 'the registry sent a manifest that is not JSON');
  }
}
