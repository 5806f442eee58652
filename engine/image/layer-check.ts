/**
 * Reads an image's layers with the tar package and checks them against the rules of layer-tree.ts, before any of
 * their content is written anywhere: when an image enters the store (build, load, pull, merge) and again before a
 * plan uses it. The result (one unpack step per layer) is what the operator's builder and every host's unpack
 * follow, and it is cached per layer list so the check costs one read of each layer per image.
 */
import { createReadStream, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { canonicalJson, digestHex, sha256, type Digest } from '../kernel/digest.js';
import { StateError } from '../kernel/errors.js';
import { writeFileAtomic } from '../kernel/fsutil.js';
import {
  canonicalName, classifyName, EntryRefused, LayerTree, TAR_KINDS, UnsafeLayerError, type LayerMember, type LayerStep, type ScannedLayer,
} from './layer-tree.js';

/** Bumped whenever a rule changes, so no cached verdict of older rules is trusted. */
const RULES_VERSION = 1;

export interface CheckedImage {
  /** Set-user-ID and set-group-ID bits are kept only for images built with an explicit allowance. */
  allowSetid: boolean;
  steps: LayerStep[];
}

const MAGIC: { bytes: number[]; name: string }[] = [
  { bytes: [0x28, 0xb5, 0x2f, 0xfd], name: 'zstd' },
  { bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], name: 'xz' },
  { bytes: [0x42, 0x5a, 0x68], name: 'bzip2' },
];

async function compressionOf(file: string, where: { layer: number; digest: Digest }): Promise<'gzip' | 'none'> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err: any) {
    if (err?.code === 'ENOENT') throw new StateError(`layer ${where.layer} (${where.digest}) is missing from the store`, 'pull, load or build the image again');
    throw new StateError(`cannot read layer ${where.layer} (${where.digest}) at ${file}: ${err?.message ?? err}`);
  }
  try {
    const head = Buffer.alloc(6);
    const { bytesRead } = await fh.read(head, 0, 6, 0);
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
    const other = MAGIC.find((m) => bytesRead >= m.bytes.length && m.bytes.every((b, i) => head[i] === b));
    if (other) throw new UnsafeLayerError(where, `the layer is compressed with ${other.name}; only gzip and uncompressed layers are supported`);
    return 'none';
  } finally {
    await fh.close();
  }
}

const REFUSED_TYPES: Record<string, string> = {
  CharacterDevice: 'a character device; device nodes are not allowed in an image',
  BlockDevice: 'a block device; device nodes are not allowed in an image',
  FIFO: 'a named pipe; special files are not allowed in an image',
};

/** Reads one layer blob entry by entry (content skipped) and checks each entry on its own. */
export async function scanLayer(file: string, digest: Digest, layer: number): Promise<ScannedLayer> {
  const compression = await compressionOf(file, { layer, digest });
  const members: LayerMember[] = [];
  const whiteouts: string[] = [];
  const opaques: string[] = [];
  let refused: UnsafeLayerError | undefined;
  const refuse = (entry: string | undefined, reason: string) => {
    refused ??= new UnsafeLayerError({ layer, digest, entry }, reason);
  };

  const onEntry = (e: ReadEntry) => {
    e.resume();
    if (refused) return;
    const raw = e.path;
    try {
      const gex = e.globalExtended as Record<string, unknown> | undefined;
      if (gex && (gex.path !== undefined || gex.linkpath !== undefined || gex.size !== undefined)) {
        throw new EntryRefused('a global pax header sets a name or a size for every entry; extractors disagree on what that means');
      }
      const special = REFUSED_TYPES[e.type];
      if (special) throw new EntryRefused(`the entry is ${special}`);
      const kind = TAR_KINDS[e.type];
      if (!kind) throw new EntryRefused(`entry type ${e.type} is not supported`);
      const path = canonicalName(raw);
      if (kind !== 'dir' && raw.endsWith('/')) throw new EntryRefused('a name ending in "/" must be a directory');
      const cls = classifyName(path, kind === 'file');
      if (cls.kind === 'skip' || cls.kind === 'root') return;
      if (cls.kind === 'whiteout') return void whiteouts.push(cls.target);
      if (cls.kind === 'opaque') return void opaques.push(cls.dir);
      const member: LayerMember = { path, kind, mode: (e.mode ?? 0o644) & 0o7777 };
      if (kind === 'symlink') {
        const target = e.linkpath ?? '';
        if (!target) throw new EntryRefused('the symlink has no target');
        if (/[\u0000-\u001f\u007f\ufffd]/.test(target)) throw new EntryRefused('the symlink target contains a control character or is not valid UTF-8');
        member.target = target;
      } else if (kind === 'hardlink') {
        const target = canonicalName(e.linkpath ?? '', 'hard link target');
        if (!target) throw new EntryRefused('the hard link points to the rootfs directory itself');
        member.target = target;
      }
      members.push(member);
    } catch (err) {
      if (err instanceof EntryRefused) refuse(raw, err.message);
      else throw err;
    }
  };

  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      // A legitimate layer may hold files of zeros; a bomb only costs this read, which streams.
      maxDecompressionRatio: Number.MAX_SAFE_INTEGER,
    });
    const stream = createReadStream(file);
    const fail = (err: unknown) => {
      stream.destroy();
      refuse(undefined, `the layer is not a valid tar archive: ${(err as Error)?.message ?? err}`);
      resolve();
    };
    parser.on('entry', onEntry);
    parser.on('ignoredEntry', (e: ReadEntry) => {
      e.resume();
      refuse(e.path, REFUSED_TYPES[e.type] ? `the entry is ${REFUSED_TYPES[e.type]}` : `entry type ${e.type} is not supported`);
    });
    parser.on('meta', (text: string) => {
      // GNU sparse files carry their real name in keys the tar package does not read: refuse, do not guess.
      if (/(^|\n)\d+ GNU\.sparse\./.test(text)) refuse(undefined, 'the layer holds a GNU sparse file, which extractors read differently');
    });
    parser.on('error', fail);
    parser.on('end', () => resolve());
    stream.on('error', reject);
    stream.pipe(parser as unknown as NodeJS.WritableStream);
  });
  if (refused) throw refused;
  return { digest, compression, members, whiteouts, opaques };
}

/** Checks the layers in order and returns the unpack step of each; throws UnsafeLayerError naming the first refusal. */
export async function checkLayers(
  blobPath: (d: Digest) => string,
  layers: Digest[],
  opts: { allowSetid?: boolean; scans?: LayerScanCache } = {},
): Promise<CheckedImage> {
  const tree = new LayerTree();
  const steps: LayerStep[] = [];
  for (let i = 0; i < layers.length; i++) {
    const scanned = (await opts.scans?.get(layers[i])) ?? (await scanLayer(blobPath(layers[i]), layers[i], i + 1));
    steps.push(tree.apply(scanned, { allowSetid: opts.allowSetid }));
    await opts.scans?.put(scanned);
  }
  return { allowSetid: !!opts.allowSetid, steps };
}

/**
 * What each layer holds (its entries' names, kinds and modes, its whiteouts), kept per layer digest once the layer
 * passed the checks of its own entries: an incremental unpack reads it to know what an old layer put in a rootfs
 * without reading the layer again. Only layers that were part of an image that passed are ever recorded.
 */
export class LayerScanCache {
  private readonly dir: string;
  constructor(home: string) {
    this.dir = join(home, 'cache', 'layer-scan');
  }

  private file(d: Digest): string {
    return join(this.dir, `${RULES_VERSION}-${digestHex(d)}.json`);
  }

  async get(d: Digest): Promise<ScannedLayer | undefined> {
    try {
      const s = JSON.parse(await fs.readFile(this.file(d), 'utf8')) as ScannedLayer;
      return s?.digest === d && Array.isArray(s.members) && Array.isArray(s.whiteouts) && Array.isArray(s.opaques) ? s : undefined;
    } catch {
      return undefined;
    }
  }

  async put(s: ScannedLayer): Promise<void> {
    await writeFileAtomic(this.file(s.digest), JSON.stringify(s), 0o600);
  }

  /** The scan of a layer, read from the store's blob when it is not recorded; undefined when neither is there. */
  async scan(blobPath: (d: Digest) => string, d: Digest): Promise<ScannedLayer | undefined> {
    const hit = await this.get(d);
    if (hit) return hit;
    try {
      const s = await scanLayer(blobPath(d), d, 1);
      await this.put(s);
      return s;
    } catch {
      // Missing from the store, or refused: no incremental unpack can rest on it.
      return undefined;
    }
  }
}

/** The cache of verdicts: only images that passed are recorded, keyed by their layer list and the rules' version. */
export class LayerCheckCache {
  private readonly dir: string;
  constructor(home: string) {
    this.dir = join(home, 'cache', 'layer-check');
  }

  private file(layers: Digest[], allowSetid: boolean): string {
    return join(this.dir, `${digestHex(sha256(canonicalJson({ v: RULES_VERSION, layers, allowSetid })))}.json`);
  }

  async get(layers: Digest[], allowSetid: boolean): Promise<CheckedImage | undefined> {
    try {
      const c = JSON.parse(await fs.readFile(this.file(layers, allowSetid), 'utf8')) as CheckedImage;
      const same = Array.isArray(c?.steps) && c.steps.length === layers.length && c.steps.every((s, i) => s.digest === layers[i]);
      return same ? c : undefined;
    } catch {
      return undefined;
    }
  }

  async put(layers: Digest[], checked: CheckedImage): Promise<void> {
    await writeFileAtomic(this.file(layers, checked.allowSetid), JSON.stringify(checked), 0o600);
  }
}

/**
 * The verdict on an image's layers as the store holds them (cached): what build, pull, merge and every plan ask
 * before they name or use an image. `ref` names the image in the refusal.
 */
export async function checkStoredLayers(
  store: { home: string; blobPath(d: Digest): string },
  image: { ref: string; layers: Digest[]; allowSetid?: boolean },
): Promise<CheckedImage> {
  const allowSetid = image.allowSetid === true;
  const cache = new LayerCheckCache(store.home);
  const hit = await cache.get(image.layers, allowSetid);
  if (hit) return hit;
  let checked: CheckedImage;
  try {
    checked = await checkLayers((d) => store.blobPath(d), image.layers, { allowSetid, scans: new LayerScanCache(store.home) });
  } catch (err) {
    if (err instanceof UnsafeLayerError) throw err.inImage(image.ref);
    throw err;
  }
  await cache.put(image.layers, checked);
  return checked;
}
