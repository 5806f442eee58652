/**
 * `ci save` / `ci load`: one OCI archive (a tar of an OCI image layout: oci-layout, index.json naming each
 * image with org.opencontainers.image.ref.name, blobs/sha256/…) holding any number of images, each shared
 * blob once. `skopeo inspect oci-archive:file.tar` reads it. Loading verifies every digest and size before
 * any image is named; the archive is unpacked in the store's temp area and removed afterwards.
 */
import { promises as fs } from 'node:fs';
import { join, dirname } from 'node:path';
import * as tar from 'tar';
import { CiError, DigestMismatchError } from '../kernel/errors.js';
import { isDigest, digestHex, sha256, sha256File, type Digest } from '../kernel/digest.js';
import { tempSibling } from '../kernel/fsutil.js';
import { MEDIA, REF_NAME, type Descriptor, type ImageConfig, type ImageIndex, type Manifest } from './oci.js';
import { checkLayers, LayerCheckCache } from './layer-check.js';
import { UnsafeLayerError } from './layer-tree.js';
import { checkAppMeta } from './apps.js';
import { normalizeReference } from './reference.js';
import type { ImageStore } from './store.js';

export class ArchiveError extends CiError {
  constructor(file: string, message: string, hint?: string) {
    super('ARCHIVE_INVALID', `${file}: ${message}`, { hint });
  }
}

export interface SaveResult {
  file: string;
  images: { ref: string; digest: Digest }[];
  blobs: number;
}

export async function saveImages(store: ImageStore, refs: string[], file: string): Promise<SaveResult> {
  if (refs.length === 0) throw new ArchiveError(file, 'no images to save', 'name at least one image');
  const images = await Promise.all(refs.map((r) => store.resolve(r)));
  const staging = await store.tempPath('save');
  await fs.mkdir(join(staging, 'blobs', 'sha256'), { recursive: true });
  try {
    const blobs = new Set<Digest>();
    const index: ImageIndex = { schemaVersion: 2, mediaType: MEDIA.index, manifests: [] };
    for (const img of images) {
      for (const d of [img.digest, img.manifest.config.digest, ...img.manifest.layers.map((l) => l.digest)]) blobs.add(d);
      const name = img.ref.startsWith('sha256:') ? undefined : img.ref;
      index.manifests.push({
        mediaType: img.manifest.mediaType ?? MEDIA.manifest,
        digest: img.digest,
        size: img.manifestSize,
        ...(name ? { annotations: { [REF_NAME]: name } } : {}),
        platform: { architecture: img.config.architecture ?? 'amd64', os: img.config.os ?? 'linux' },
      });
    }
    for (const d of blobs) {
      const dest = join(staging, 'blobs', 'sha256', digestHex(d));
      // Hard links: the archive is written from the store's own files without copying gigabytes first.
      await fs.link(store.blobPath(d), dest).catch(() => fs.copyFile(store.blobPath(d), dest));
    }
    await fs.writeFile(join(staging, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await fs.writeFile(join(staging, 'index.json'), JSON.stringify(index));
    await fs.mkdir(dirname(file), { recursive: true });
    const tmp = tempSibling(file);
    try {
      await tar.c({ cwd: staging, file: tmp, portable: true, noDirRecurse: false }, ['oci-layout', 'index.json', 'blobs']);
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    return { file, images: images.map((i) => ({ ref: i.ref, digest: i.digest })), blobs: blobs.size };
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

export interface LoadResult {
  images: { ref: string; digest: Digest }[];
}

const ALLOWED = /^(?:\.\/)?(?:oci-layout|index\.json|blobs\/?|blobs\/sha256\/?|blobs\/sha256\/[a-f0-9]{64})$/;

export async function loadImages(store: ImageStore, file: string, opts: { tag?: string } = {}): Promise<LoadResult> {
  await store.init();
  try {
    await fs.access(file);
  } catch {
    throw new ArchiveError(file, 'cannot read the archive', 'check the path given to -i');
  }
  const dir = await store.tempPath('load');
  await fs.mkdir(dir, { recursive: true });
  try {
    const rejected: string[] = [];
    try {
      await tar.x({
        file,
        cwd: dir,
        strict: true,
        preserveOwner: false,
        filter: (path, entry) => {
          const type = (entry as { type?: string }).type;
          const ok = ALLOWED.test(path) && (type === 'File' || type === 'Directory' || type === 'OldFile');
          if (!ok) rejected.push(path);
          return ok;
        },
      });
    } catch (err: any) {
      throw new ArchiveError(file, `not a readable tar archive: ${err?.message ?? err}`, 'make the archive with `ci save` or `skopeo copy … oci-archive:FILE`');
    }
    let index: ImageIndex;
    try {
      index = JSON.parse(await fs.readFile(join(dir, 'index.json'), 'utf8'));
    } catch {
      throw new ArchiveError(file, 'has no readable index.json, so it is not an OCI archive', 'make the archive with `ci save`');
    }
    const entries = await manifestsOf(dir, file, index);
    if (entries.length === 0) throw new ArchiveError(file, 'holds no images');
    if (opts.tag && entries.length !== 1) throw new ArchiveError(file, `holds ${entries.length} images; a tag can only name one`);

    // Every blob is verified and every image's layers checked before anything enters the store; only then is
    // anything committed, and names come last.
    const verified = new Map<string, string>();
    const verify = async (d: Descriptor): Promise<string> => {
      const known = verified.get(d.digest);
      if (known) return known;
      if (!isDigest(d.digest)) throw new ArchiveError(file, `"${d.digest}" is not a sha256 digest`);
      const src = join(dir, 'blobs', 'sha256', digestHex(d.digest));
      let size: number;
      try {
        size = (await fs.stat(src)).size;
      } catch {
        throw new ArchiveError(file, `blob ${d.digest} is missing`);
      }
      if (size !== d.size) throw new DigestMismatchError(`${file}: blob ${d.digest}`, `${d.size} bytes`, `${size} bytes`);
      const actual = await sha256File(src);
      if (actual !== d.digest) throw new DigestMismatchError(`${file}: blob ${d.digest}`, d.digest, actual);
      verified.set(d.digest, src);
      return src;
    };
    const named: { name: string; desc: Descriptor; blobs: Descriptor[] }[] = [];
    for (const { desc, manifest } of entries) {
      await verify(desc);
      for (const d of [manifest.config, ...manifest.layers]) await verify(d);
      const raw = opts.tag ?? desc.annotations?.[REF_NAME];
      if (!raw) throw new ArchiveError(file, `image ${desc.digest} has no name`, 'give one with --tag');
      let name: string;
      try {
        name = normalizeReference(raw);
      } catch {
        throw new ArchiveError(file, `image ${desc.digest} is named "${raw}", which is not an image reference`, 'give a name with --tag');
      }
      let config: ImageConfig;
      try {
        config = JSON.parse(await fs.readFile(verified.get(manifest.config.digest)!, 'utf8')) as ImageConfig;
      } catch {
        throw new ArchiveError(file, `the config of image ${name} is not JSON`);
      }
      checkAppMeta(config?.cloudimage, `${name} in ${file}`);
      const layers = manifest.layers.map((l) => l.digest);
      const allowSetid = config?.cloudimage?.allowSetid === true;
      try {
        const checked = await checkLayers((d) => verified.get(d)!, layers, { allowSetid });
        await new LayerCheckCache(store.home).put(layers, checked);
      } catch (err) {
        if (err instanceof UnsafeLayerError) throw err.inImage(`${name} in ${file}`);
        throw err;
      }
      named.push({ name, desc: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size }, blobs: [desc, manifest.config, ...manifest.layers] });
    }
    const committed = new Set<string>();
    for (const { blobs } of named) {
      for (const d of blobs) {
        if (committed.has(d.digest)) continue;
        await store.commitFile(verified.get(d.digest)!, undefined, d.digest);
        committed.add(d.digest);
      }
    }
    const images: LoadResult['images'] = [];
    for (const { name, desc } of named) images.push({ ref: await store.tag(name, desc), digest: desc.digest });
    return { images };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Image manifests in the layout, descending one level into nested indexes (skopeo writes those for lists). */
async function manifestsOf(dir: string, file: string, index: ImageIndex): Promise<{ desc: Descriptor; manifest: Manifest }[]> {
  const out: { desc: Descriptor; manifest: Manifest }[] = [];
  for (const desc of index.manifests ?? []) {
    const raw = await readVerified(dir, file, desc);
    const parsed = JSON.parse(raw.toString('utf8'));
    if (Array.isArray(parsed.manifests)) {
      throw new ArchiveError(file, `image ${desc.digest} is a multi-platform index, which cannot be loaded yet`, 'save a single-platform image');
    }
    if (!parsed.config?.digest || !Array.isArray(parsed.layers)) throw new ArchiveError(file, `${desc.digest} is not an image manifest`);
    out.push({ desc, manifest: parsed as Manifest });
  }
  return out;
}

async function readVerified(dir: string, file: string, d: Descriptor): Promise<Buffer> {
  if (!isDigest(d.digest)) throw new ArchiveError(file, `"${d.digest}" is not a sha256 digest`);
  let raw: Buffer;
  try {
    raw = await fs.readFile(join(dir, 'blobs', 'sha256', digestHex(d.digest)));
  } catch {
    throw new ArchiveError(file, `manifest ${d.digest} is missing`);
  }

  const actual = sha256(raw);
  if (actual !== d.digest) throw new DigestMismatchError(`${file}: manifest ${d.digest}`, d.digest, actual);
  return raw;
}


