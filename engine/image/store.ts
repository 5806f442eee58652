/**
 * The local image store: an OCI image layout at `$CI_HOME/images` (oci-layout, index.json, blobs/sha256),
 * each image named by the `org.opencontainers.image.ref.name` annotation so skopeo and other OCI tools read it.
 *
 * Atomicity: blobs are written to `$CI_HOME/tmp`, verified, then renamed into place (a blob file either is
 * complete or absent); index.json is replaced atomically under a lock. A write that dies half-way leaves only
 * unreferenced temp files or blobs, never a half image.
 */
import { promises as fs, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import lockfile from 'proper-lockfile';
import { ciHome } from '../home.js';
import { digestHex, isDigest, sha256, type Digest } from '../digest.js';
import { writeFileAtomic, exists } from '../fsutil.js';
import { DigestMismatchError, ImageNotFoundError, StateError } from '../errors.js';
import { MEDIA, REF_NAME, STORED_AT, type Descriptor, type ImageConfig, type ImageIndex, type Manifest } from './oci.js';
import { normalizeReference, parseReference } from './reference.js';

export interface ResolvedImage {
  /** Normalised name the store keeps it under (`name:tag`), or the digest form asked for. */
  ref: string;
  digest: Digest;
  manifest: Manifest;
  manifestSize: number;
  config: ImageConfig;
  storedAt?: string;
}

export interface StoredImage {
  ref: string;
  digest: Digest;
  storedAt?: string;
}

export class ImageStore {
  readonly home: string;
  readonly root: string;
  readonly tmpDir: string;

  constructor(home: string = ciHome()) {
    this.home = home;
    this.root = join(home, 'images');
    this.tmpDir = join(home, 'tmp');
  }

  async init(): Promise<void> {
    await fs.mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true });
    await fs.mkdir(this.tmpDir, { recursive: true });
    if (!(await exists(join(this.root, 'oci-layout')))) {
      await writeFileAtomic(join(this.root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    }
    if (!(await exists(join(this.root, 'index.json')))) {
      const empty: ImageIndex = { schemaVersion: 2, mediaType: MEDIA.index, manifests: [] };
      await writeFileAtomic(join(this.root, 'index.json'), JSON.stringify(empty));
    }
  }

  blobPath(d: Digest): string {
    return join(this.root, 'blobs', 'sha256', digestHex(d));
  }

  async hasBlob(d: Digest): Promise<boolean> {
    return exists(this.blobPath(d));
  }

  async blobSize(d: Digest): Promise<number> {
    return (await fs.stat(this.blobPath(d))).size;
  }

  /** A fresh path in the store's temp area (same filesystem as the blobs, so rename is atomic). */
  async tempPath(prefix = 'blob'): Promise<string> {
    await fs.mkdir(this.tmpDir, { recursive: true });
    return join(this.tmpDir, `${prefix}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  async putBlob(data: string | Uint8Array): Promise<{ digest: Digest; size: number }> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const digest = sha256(buf);
    if (!(await this.hasBlob(digest))) await writeFileAtomic(this.blobPath(digest), buf);
    return { digest, size: buf.length };
  }

  /**
   * Moves a finished temp file into the blob store. With `expected`, the content is hashed and must match:
   * a mismatch deletes the temp file and throws, so nothing corrupt is ever stored.
   */
  async commitFile(tmp: string, expected?: Digest, knownDigest?: Digest): Promise<{ digest: Digest; size: number }> {
    let digest = knownDigest;
    if (!digest || expected) {
      const h = createHash('sha256');
      const fh = await fs.open(tmp, 'r');
      try {
        for await (const chunk of fh.createReadStream()) h.update(chunk as Buffer);
      } finally {
        await fh.close().catch(() => {});
      }
      digest = `sha256:${h.digest('hex')}`;
    }
    if (expected && digest !== expected) {
      await fs.rm(tmp, { force: true });
      throw new DigestMismatchError(`blob ${expected}`, expected, digest);
    }
    const size = (await fs.stat(tmp)).size;
    const dest = this.blobPath(digest);
    if (await exists(dest)) {
      await fs.rm(tmp, { force: true });
    } else {
      const fh = await fs.open(tmp, 'r+');
      await fh.sync();
      await fh.close();
      await fs.rename(tmp, dest);
    }
    return { digest, size };
  }

  /** Streams into the store, verifying against `expected` when given. */
  async putStream(src: Readable, expected?: Digest): Promise<{ digest: Digest; size: number }> {
    const tmp = await this.tempPath();
    const h = createHash('sha256');
    const hasher = new Transform({
      transform(chunk, _enc, cb) {
        h.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(src, hasher, createWriteStream(tmp));
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    const actual: Digest = `sha256:${h.digest('hex')}`;
    if (expected && actual !== expected) {
      await fs.rm(tmp, { force: true });
      throw new DigestMismatchError(`blob ${expected}`, expected, actual);
    }
    return this.commitFile(tmp, undefined, actual);
  }

  async readBlob(d: Digest): Promise<Buffer> {
    try {
      return await fs.readFile(this.blobPath(d));
    } catch (err) {
      throw new StateError(`blob ${d} is missing from the store at ${this.root}`, 'the store is damaged: pull or build the image again');
    }
  }

  async readJson<T>(d: Digest): Promise<T> {
    return JSON.parse((await this.readBlob(d)).toString('utf8')) as T;
  }

  async readIndex(): Promise<ImageIndex> {
    try {
      return JSON.parse(await fs.readFile(join(this.root, 'index.json'), 'utf8')) as ImageIndex;
    } catch (err: any) {
      if (err?.code === 'ENOENT') return { schemaVersion: 2, mediaType: MEDIA.index, manifests: [] };
      throw new StateError(`cannot read ${join(this.root, 'index.json')}: ${err?.message ?? err}`);
    }
  }

  /** Runs `fn` with index.json locked against other cloudimage processes. */
  async withIndexLock<T>(fn: () => Promise<T>): Promise<T> {
    await this.init();
    const release = await lockfile.lock(this.root, {
      lockfilePath: join(this.home, 'images.lock'),
      retries: { retries: 50, minTimeout: 20, maxTimeout: 500 },
      stale: 30_000,
    });
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  private async writeIndex(index: ImageIndex): Promise<void> {
    await writeFileAtomic(join(this.root, 'index.json'), JSON.stringify(index, null, 2) + '\n');
  }

  /** Stores a manifest (and checks the blobs it names are present), then names it. */
  async putManifest(manifest: Manifest): Promise<Descriptor> {
    for (const d of [manifest.config, ...manifest.layers]) {
      if (!(await this.hasBlob(d.digest))) throw new StateError(`cannot store manifest: blob ${d.digest} is missing`);
    }
    const body = JSON.stringify(manifest);
    const { digest, size } = await this.putBlob(body);
    return { mediaType: manifest.mediaType ?? MEDIA.manifest, digest, size };
  }

  /** Points `ref` at a stored manifest, replacing what the name pointed at before. */
  async tag(ref: string, manifest: Descriptor): Promise<string> {
    const name = normalizeReference(ref);
    await this.withIndexLock(async () => {
      const index = await this.readIndex();
      index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== name);
      index.manifests.push({
        mediaType: manifest.mediaType,
        digest: manifest.digest,
        size: manifest.size,
        annotations: { [REF_NAME]: name, [STORED_AT]: new Date().toISOString() },
        platform: { architecture: 'amd64', os: 'linux' },
      });
      index.manifests.sort((a, b) => (a.annotations?.[REF_NAME] ?? '').localeCompare(b.annotations?.[REF_NAME] ?? ''));
      await this.writeIndex(index);
    });
    return name;
  }

  async list(): Promise<StoredImage[]> {
    const index = await this.readIndex();
    return index.manifests
      .filter((m) => m.annotations?.[REF_NAME])
      .map((m) => ({ ref: m.annotations![REF_NAME], digest: m.digest, storedAt: m.annotations?.[STORED_AT] }));
  }

  /** Finds an image by name, by digest, or by a unique digest prefix (an image id). */
  async find(refOrId: string): Promise<StoredImage | undefined> {
    const images = await this.list();
    if (isDigest(refOrId)) return images.find((i) => i.digest === refOrId) ?? { ref: refOrId, digest: refOrId as Digest };
    let name: string | undefined;
    try {
      const parsed = parseReference(refOrId);
      if (parsed.digest && !parsed.tag) return images.find((i) => i.digest === parsed.digest);
      name = normalizeReference(refOrId);
    } catch {
      name = undefined;
    }
    const byName = name ? images.find((i) => i.ref === name) : undefined;
    if (byName) return byName;
    if (/^[a-f0-9]{6,64}$/.test(refOrId)) {
      const hits = [...new Map(images.filter((i) => digestHex(i.digest).startsWith(refOrId)).map((i) => [i.digest, i])).values()];
      if (hits.length === 1) return hits[0];
    }
    return undefined;
  }

  async resolve(refOrId: string): Promise<ResolvedImage> {
    const found = await this.find(refOrId);
    if (!found || !(await this.hasBlob(found.digest))) throw new ImageNotFoundError(refOrId);
    const raw = await this.readBlob(found.digest);
    const manifest = JSON.parse(raw.toString('utf8')) as Manifest;
    const config = await this.readJson<ImageConfig>(manifest.config.digest);
    return { ref: found.ref, digest: found.digest, manifest, manifestSize: raw.length, config, storedAt: found.storedAt };
  }

  /** Removes a name; then frees every blob no remaining name reaches. Returns the freed digests. */
  async untag(refOrId: string): Promise<{ removed: string[]; freed: Digest[] }> {
    return this.withIndexLock(async () => {
      const found = await this.find(refOrId);
      if (!found) throw new ImageNotFoundError(refOrId);
      const index = await this.readIndex();
      // An id or digest removes every name of that image; a name removes just itself.
      const byId = found.ref === refOrId || normalizeSafe(refOrId) === found.ref ? false : true;
      const removed: string[] = [];
      index.manifests = index.manifests.filter((m) => {
        const name = m.annotations?.[REF_NAME];
        const drop = byId ? m.digest === found.digest : name === found.ref;
        if (drop && name) removed.push(name);
        return !drop;
      });
      await this.writeIndex(index);
      const freed = await this.gcLocked(index);
      return { removed, freed };
    });
  }

  private async gcLocked(index: ImageIndex): Promise<Digest[]> {
    const live = new Set<string>();
    for (const m of index.manifests) {
      live.add(m.digest);
      try {
        const manifest = await this.readJson<Manifest>(m.digest);
        live.add(manifest.config.digest);
        for (const l of manifest.layers) live.add(l.digest);
      } catch {
        // A missing manifest blob keeps nothing alive.
      }
    }
    const freed: Digest[] = [];
    const dir = join(this.root, 'blobs', 'sha256');
    for (const hex of await fs.readdir(dir)) {
      const d = `sha256:${hex}` as Digest;
      if (!live.has(d)) {
        await fs.rm(join(dir, hex), { force: true });
        freed.push(d);
      }
    }
    return freed;
  }

  /**
   * Removes blobs just fetched for an image that was then refused, unless a named image uses them. When any named
   * image cannot be read, nothing is removed: a blob kept by mistake costs disk, one removed by mistake breaks an image.
   */
  async discardUnreferenced(digests: Digest[]): Promise<void> {
    if (digests.length === 0) return;
    await this.withIndexLock(async () => {
      const live = new Set<string>();
      for (const m of (await this.readIndex()).manifests) {
        live.add(m.digest);
        let manifest: Manifest;
        try {
          manifest = await this.readJson<Manifest>(m.digest);
        } catch {
          return;
        }
        live.add(manifest.config.digest);
        for (const l of manifest.layers) live.add(l.digest);
      }
      for (const d of digests) if (!live.has(d)) await fs.rm(this.blobPath(d), { force: true });
    });
  }

  /** Total bytes of an image: manifest, config and layers. */
  static imageSize(img: ResolvedImage): number {
    return img.manifestSize + img.manifest.config.size + img.manifest.layers.reduce((a, l) => a + l.size, 0);
  }
}

function normalizeSafe(s: string): string | undefined {
  try {
    return normalizeReference(s);
  } catch {
    return undefined;
  }
}
