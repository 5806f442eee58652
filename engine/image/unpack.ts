/** Applies layers to a directory in order, honouring OCI whiteouts, the way a host's rootfs is assembled. */
import { rmSync } from 'node:fs';
import { join, posix } from 'node:path';
import { extract } from 'tar';
import type { Digest } from '../digest.js';
import type { ImageStore } from './store.js';
import { WHITEOUT_PREFIX } from './layer-writer.js';

const OPAQUE = '.wh..wh..opq';

export async function applyLayer(store: ImageStore, layer: Digest, dir: string): Promise<void> {
  await extract({
    file: store.blobPath(layer),
    cwd: dir,
    preserveOwner: false,
    strict: true,
    filter: (path) => {
      const clean = path.replace(/\/+$/, '');
      const base = posix.basename(clean);
      if (!base.startsWith(WHITEOUT_PREFIX)) return true;
      const parent = posix.dirname(clean);
      const parentAbs = parent === '.' ? dir : join(dir, parent);
      if (base === OPAQUE) {
        rmSync(parentAbs, { recursive: true, force: true });
      } else {
        rmSync(join(parentAbs, base.slice(WHITEOUT_PREFIX.length)), { recursive: true, force: true });
      }
      return false;
    },
  });
}

export async function applyLayers(store: ImageStore, layers: Digest[], dir: string): Promise<void> {
  for (const l of layers) await applyLayer(store, l, dir);
}
