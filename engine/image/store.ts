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
import { ciHome } from '../kernel/home.js';
import { digestHex, isDigest, sha256, type Digest } from '../kernel/digest.js';
import { writeFileAtomic } from '../kernel/fsutil.js';
import { DigestMismatchError, ImageInUseError, ImageNotFoundError, StoreError } from '../kernel/errors.js';
import { MEDIA, REF_NAME, STORED_AT, type Descriptor, type ImageConfig, type ImageIndex, type Manifest } from './oci.js';
import { normalizeReference, parseReference } from './reference.js';
import { checkAppMeta } from './apps.js';

export interface ResolvedImage {
  /** Normalised name the store keeps it under (`name:tag`), or the digest form asked for. */
  ref: string;
  digest: Digest;
  manifest: Manifest;
  manifestSize: number;
  config: ImageConfig;
  storedAt?: string;
}

export interface UntagResult {
  /** The names removed (always removed, even when no blob could be freed). */
  removed: string[];
  freed: Digest[];
  /** Why blobs that may now be unused were kept: a manifest the collector could not read, or a failed delete. */
  gcFailure?: StoreError;
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
    // Only "no such file" means absent: a store that cannot be looked at is never re-initialised over.
    if (!(await present(join(this.root, 'oci-layout')))) {
      await writeFileAtomic(join(this.root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    }
    if (!(await present(join(this.root, 'index.json')))) {
      const empty: ImageIndex = { schemaVersion: 2, mediaType: MEDIA.index, manifests: [] };
      await writeFileAtomic(join(this.root, 'index.json'), JSON.stringify(empty));
    }
  }

  blobPath(d: Digest): string {
    return join(this.root, 'blobs', 'sha256', digestHex(d));
  }

  async hasBlob(d: Digest): Promise<boolean> {
    try {
      return await present(this.blobPath(d));
    } catch (err) {
      throw this.unreadable(d, err instanceof StoreError ? err.cause : err);
    }
  }

  async blobSize(d: Digest): Promise<number> {
    try {
      return (await fs.stat(this.blobPath(d))).size;
    } catch (err) {
      throw isAbsent(err) ? this.missing(d) : this.unreadable(d, err);
    }
  }

  private missing(d: Digest): StoreError {
    return new StoreError('STORE_BLOB_MISSING', `blob ${d} is missing from the store at ${this.root}`, {
      hint: 'the store is damaged: pull or build the image again',
    });
  }

  private unreadable(d: Digest, err: unknown): StoreError {
    return new StoreError('STORE_UNREADABLE', `cannot read blob ${d} in the store at ${this.root}: ${ioMessage(err)}`, {
      hint: `check ${this.blobPath(d)} and the permissions of the store`,
      cause: err,
    });
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
    if (await this.hasBlob(digest)) {
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
      throw isAbsent(err) ? this.missing(d) : this.unreadable(d, err);
    }
  }

  async readJson<T>(d: Digest): Promise<T> {
    return parseJson<T>((await this.readBlob(d)).toString('utf8'), `blob ${d} in the store at ${this.root}`);
  }

  async readIndex(): Promise<ImageIndex> {
    const path = join(this.root, 'index.json');
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (err) {
      if (isAbsent(err)) return { schemaVersion: 2, mediaType: MEDIA.index, manifests: [] };
      throw new StoreError('STORE_UNREADABLE', `cannot read ${path}: ${ioMessage(err)}`, { hint: 'check the permissions of the store', cause: err });
    }
    const index = parseJson<ImageIndex>(text, path);
    if (!Array.isArray(index?.manifests)) throw new StoreError('STORE_DAMAGED', `${path} is not an OCI image index`);
    return index;
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
      if (!(await this.hasBlob(d.digest))) throw new StoreError('STORE_BLOB_MISSING', `cannot store the manifest: blob ${d.digest} is missing from the store at ${this.root}`);
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
        platform: manifest.platform ?? { architecture: 'amd64', os: 'linux' },
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
    const manifest = parseJson<Manifest>(raw.toString('utf8'), `manifest ${found.digest} of ${found.ref}`);
    if (!digestOf(manifest?.config) || !digestsOf(manifest.layers)) {
      throw new StoreError('STORE_DAMAGED', `manifest ${found.digest} of ${found.ref} is not an image manifest`, { hint: DAMAGED_HINT });
    }
    const config = await this.readJson<ImageConfig>(manifest.config.digest);
    checkAppMeta(config?.cloudimage, found.ref);
    return { ref: found.ref, digest: found.digest, manifest, manifestSize: raw.length, config, storedAt: found.storedAt };
  }

  /**
   * Removes a name; then frees every blob no remaining name reaches. Blobs shared with other images (an image
   * built FROM this one, another tag) stay, so no other image ever blocks a removal or is broken by it. When the collector cannot tell what is still
   * in use, the name is removed all the same, nothing is freed, and `gcFailure` says why.
   */
  async untag(refOrId: string, opts: { force?: boolean } = {}): Promise<UntagResult> {
    return this.withIndexLock(async () => {
      const found = await this.find(refOrId);
      if (!found) throw new ImageNotFoundError(refOrId);
      const index = await this.readIndex();
      // An id or digest removes every name of that image (when it has several, only if forced); a name just itself.
      const byId = found.ref === refOrId || normalizeSafe(refOrId) === found.ref ? false : true;
      if (byId && !opts.force) {
        const names = index.manifests.flatMap((m) => (m.digest === found.digest && m.annotations?.[REF_NAME] ? [m.annotations[REF_NAME]] : []));
        if (names.length > 1) throw new ImageInUseError(refOrId, names);
      }
      const removed: string[] = [];
      index.manifests = index.manifests.filter((m) => {
        const name = m.annotations?.[REF_NAME];
        const drop = byId ? m.digest === found.digest : name === found.ref;
        if (drop && name) removed.push(name);
        return !drop;
      });
      await this.writeIndex(index);
      return { removed, ...(await this.gcLocked(index)) };
    });
  }

  /**
   * Frees every blob that no name in `index` reaches, following nested indexes. Fails closed: if any manifest or
   * index on the way cannot be read or understood, what it keeps alive is unknown, so nothing at all is freed.
   */
  private async gcLocked(index: ImageIndex): Promise<{ freed: Digest[]; gcFailure?: StoreError }> {
    const live = new Set<string>();
    const read = new Set<string>();
    const pending = index.manifests.map((m) => ({ digest: m.digest, name: m.annotations?.[REF_NAME] ?? m.digest }));
    while (pending.length > 0) {
      const { digest, name } = pending.pop()!;
      live.add(digest);
      if (read.has(digest)) continue;
      read.add(digest);
      let refs: BlobRefs | undefined;
      try {
        refs = blobRefs(await this.readJson<unknown>(digest));
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        return { freed: [], gcFailure: gcBlocked(`the manifest of ${name} cannot be read: ${err.message}`, name, err) };
      }
      if (!refs) return { freed: [], gcFailure: gcBlocked(`the manifest ${digest} of ${name} is neither an image manifest nor an index`, name) };
      for (const d of refs.blobs) live.add(d);
      for (const d of refs.manifests) pending.push({ digest: d, name });
    }
    const dir = join(this.root, 'blobs', 'sha256');
    const freed: Digest[] = [];
    try {
      for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
        // Only what looks like a blob: anything else in there was not put there by a store.
        if (!entry.isFile() || !/^[a-f0-9]{64}$/.test(entry.name)) continue;
        const d = `sha256:${entry.name}` as Digest;
        if (live.has(d)) continue;
        await fs.rm(join(dir, entry.name), { force: true });
        freed.push(d);
      }
    } catch (err) {
      const failure = new StoreError('STORE_UNREADABLE', `freeing unused blobs in ${dir} failed: ${ioMessage(err)}`, {
        hint: 'check the permissions of the store; the next `ci rmi` frees what is left',
        cause: err,
      });
      return { freed, gcFailure: failure };
    }
    return { freed };
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

const DAMAGED_HINT = 'the store is damaged: remove the image with `ci rmi` and pull or build it again';

interface BlobRefs {
  /** Blobs kept alive as they are: configs and layers. */
  blobs: Digest[];
  /** Manifests of an index (or a subject), read in turn. */
  manifests: Digest[];
}

/** What a stored manifest or index refers to, or undefined when it is neither. */
function blobRefs(doc: unknown): BlobRefs | undefined {
  if (!doc || typeof doc !== 'object') return undefined;
  const d = doc as { manifests?: unknown; layers?: unknown; config?: unknown; subject?: unknown };
  // An artifact's subject (OCI 1.1) is another manifest: kept alive by it, so followed too.
  const subject = d.subject === undefined ? [] : digestsOf([d.subject]);
  if (!subject) return undefined;
  if (d.manifests !== undefined) {
    const manifests = digestsOf(d.manifests);
    return manifests ? { blobs: [], manifests: [...manifests, ...subject] } : undefined;
  }
  const layers = digestsOf(d.layers);
  const config = digestOf(d.config);
  if (!layers || !config) return undefined;
  return { blobs: [config, ...layers], manifests: subject };
}

function digestOf(descriptor: unknown): Digest | undefined {
  const v = (descriptor as { digest?: unknown } | null)?.digest;
  return typeof v === 'string' && isDigest(v) ? v : undefined;
}

function digestsOf(list: unknown): Digest[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const out = list.map(digestOf);
  return out.every((d) => d !== undefined) ? (out as Digest[]) : undefined;
}

function gcBlocked(why: string, name: string, cause?: unknown): StoreError {
  return new StoreError('STORE_GC_BLOCKED', `no blob was freed, because ${why}`, {
    hint: `the store keeps every blob until each image's manifest is readable again: repair it, or remove ${name} with \`ci rmi\``,
    cause,
  });
}

/** Whether `path` exists; a failure to look (EACCES, ELOOP, EIO...) is an error, never "absent". */
async function present(path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch (err) {
    if (isAbsent(err)) return false;
    throw new StoreError('STORE_UNREADABLE', `cannot look up ${path}: ${ioMessage(err)}`, { hint: 'check the permissions of the store', cause: err });
  }
}

/** ENOENT, or ENOTDIR (a path component is a file): the thing is not there. Everything else is a real failure. */
function isAbsent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function ioMessage(err: unknown): string {
  return (err as Error | undefined)?.message ?? String(err);
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new StoreError('STORE_DAMAGED', `${what} is not valid JSON`, { hint: DAMAGED_HINT });
  }
}

function normalizeSafe(s: string): string | undefined {
  try {
    return normalizeReference(s);
  } catch {
    return undefined;
  }
}
