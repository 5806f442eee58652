import type { ResolvedImage } from '../engine/image/store.js';
import type { ImageInfo } from './actions.js';

/** The plain image facts the planner needs, from a resolved store image. */
export function imageInfoFromResolved(img: ResolvedImage): ImageInfo {
  const meta = img.config.cloudimage;
  return {
    ref: img.ref,
    digest: img.digest,
    layers: img.manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, createdBy: meta?.layers[i]?.createdBy ?? '' })),
    cmds: (meta?.cmds ?? []).map((c) => ({ cmd: c.cmd, identity: c.identity })),
  };
}
