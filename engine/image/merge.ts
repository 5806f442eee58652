/**
 * `ci merge A B … -t C`: one image whose layers are A's then B's (a layer already present is kept once, at its
 * first position) and whose CMDs are A's then B's. A CMD keeps the identity it was built with, so a cluster
 * that already ran B's CMDs does not run them again just because they now come after A's layers; the same
 * CMD (same identity) reached through two inputs runs once.
 */
import { CiError } from '../kernel/errors.js';
import { canonicalJson, type Digest } from '../kernel/digest.js';
import { MEDIA, type AppRecord, type CmdRecord, type LaunchRecord, type Descriptor, type HistoryEntry, type ImageConfig, type Manifest } from './oci.js';
import type { ImageStore, ResolvedImage } from './store.js';
import { checkStoredLayers } from './layer-check.js';

export const MERGED_FROM = 'io.cloudimage.merged-from';

export class MergeError extends CiError {
  constructor(message: string, hint?: string) {
    super('MERGE_INVALID', message, { hint });
  }
}

interface LayerPart {
  desc: Descriptor;
  diffId: Digest;
  createdBy: string;
  history: HistoryEntry;
}

/** The layers of an image with what made each one, lined up from config history and our metadata. */
function layerParts(img: ResolvedImage): LayerPart[] {
  const { manifest, config } = img;
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw new MergeError(`image ${img.ref} has ${manifest.layers.length} layers but its config lists ${diffIds.length} diff ids`, 'rebuild or pull the image again');
  }
  const layerHistory = (config.history ?? []).filter((h) => !h.empty_layer);
  return manifest.layers.map((desc, i) => {
    const createdBy = config.cloudimage?.layers?.[i]?.createdBy ?? layerHistory[i]?.created_by ?? '';
    return { desc, diffId: diffIds[i], createdBy, history: layerHistory[i] ?? { created_by: createdBy } };
  });
}

function mergeEnv(lists: (string[] | undefined)[]): string[] | undefined {
  const env = new Map<string, string>();
  for (const list of lists) for (const kv of list ?? []) env.set(kv.split('=')[0], kv);
  return env.size ? [...env.values()] : undefined;
}

export interface MergeResult {
  ref: string;
  digest: Digest;
  layers: number;
  cmds: number;
}

export async function mergeImages(store: ImageStore, refs: string[], tag: string): Promise<MergeResult> {
  if (refs.length < 2) throw new MergeError(`merge needs at least two images, got ${refs.length}`, 'name two or more images, e.g. `ci merge A B -t C`');
  const images = await Promise.all(refs.map((r) => store.resolve(r)));
  const first = images[0];
  for (const img of images.slice(1)) {
    if (img.config.os !== first.config.os || img.config.architecture !== first.config.architecture) {
      throw new MergeError(
        `cannot merge ${first.ref} (${first.config.os}/${first.config.architecture}) with ${img.ref} (${img.config.os}/${img.config.architecture})`,
        'merge images built for the same platform',
      );
    }
  }

  const layers: LayerPart[] = [];
  const seenLayers = new Set<string>();
  const cmds: CmdRecord[] = [];
  const seenCmds = new Set<string>();
  const apps: AppRecord[] = [];
  const launch: LaunchRecord[] = [];
  for (const img of images) {
    for (const part of layerParts(img)) {
      if (seenLayers.has(part.desc.digest)) continue;
      seenLayers.add(part.desc.digest);
      layers.push(part);
    }
    for (const c of img.config.cloudimage?.cmds ?? []) {
      if (seenCmds.has(c.identity)) continue;
      seenCmds.add(c.identity);
      cmds.push(c);
    }
    // Apps and launches: the same app (same files) from two inputs is one app; two different apps of one name clash.
    for (const a of img.config.cloudimage?.apps ?? []) {
      const known = apps.find((x) => x.name === a.name);
      if (known && canonicalJson(known) !== canonicalJson(a)) {
        throw new MergeError(`cannot merge: ${img.ref} and an earlier image both have an app named ${a.name}, with different files or commands`, 'rename the app in one of the Kubefiles and rebuild it');
      }
      if (!known) apps.push(a);
    }
    for (const l of img.config.cloudimage?.launch ?? []) if (!launch.some((x) => x.app === l.app)) launch.push(l);
  }

  const labels = Object.assign({}, ...images.map((i) => i.config.config?.Labels ?? {})) as Record<string, string>;
  const created = images.map((i) => i.config.created).filter((c): c is string => !!c).sort().at(-1);
  const config: ImageConfig = {
    // The newest input's time, not now: merging the same inputs twice gives the same digest.
    ...(created ? { created } : {}),
    architecture: first.config.architecture,
    os: first.config.os,
    config: {
      ...(mergeEnv(images.map((i) => i.config.config?.Env)) ? { Env: mergeEnv(images.map((i) => i.config.config?.Env)) } : {}),
      ...(Object.keys(labels).length ? { Labels: labels } : {}),
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => l.history),
    cloudimage: {
      version: 1,
      layers: layers.map((l) => ({ createdBy: l.createdBy })),
      cmds,
      ...(apps.length ? { apps } : {}),
      ...(launch.length ? { launch } : {}),
    },
  };
  // Each input passed the layer rules alone; together they may not (a symlink in A, a file through it in B).
  const allowSetid = images.every((i) => i.config.cloudimage?.allowSetid === true);
  if (allowSetid) config.cloudimage!.allowSetid = true;
  await checkStoredLayers(store, { ref: tag, layers: layers.map((l) => l.desc.digest), allowSetid });
  const cfg = await store.putBlob(JSON.stringify(config));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: cfg.digest, size: cfg.size },
    layers: layers.map((l) => ({ mediaType: l.desc.mediaType, digest: l.desc.digest, size: l.desc.size })),
    annotations: { [MERGED_FROM]: images.map((i) => `${i.ref}@${i.digest}`).join(',') },
  };
  const desc = await store.putManifest(manifest);
  const ref = await store.tag(tag, desc);
  return { ref, digest: desc.digest, layers: layers.length, cmds: cmds.length };
}
