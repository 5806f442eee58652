/** `ci apply` fetches the Clusterfile's image, and `ci build` its FROM image, when the local store lacks it, with the progress of `ci pull`. */
import { ensureImage, fetchRemoteImage, pullImage } from '../registry/pull.js';
import { ProgressView } from '../registry/progress.js';
import type { ImageStore } from '../image/store.js';
import type { BaseImageSource } from '../image/build.js';

export function ensureImageHook(tls: { insecure?: boolean; caFile?: string } = {}): (store: ImageStore, ref: string) => Promise<unknown> {
  return async (store, ref) => {
    const view = process.stderr.isTTY ? new ProgressView(process.stderr) : undefined;
    try {
      return await ensureImage(store, ref, { ...tls, ...(view ? { onProgress: view.update } : {}) });
    } finally {
      view?.finish();
    }
  };
}

/** `ci build`'s FROM images from their registries, with the TLS settings and progress of `ci pull`. */
export function registryBaseSource(store: ImageStore, tls: { insecure?: boolean; caFile?: string } = {}): BaseImageSource {
  return {
    describe: (ref, platform) => fetchRemoteImage(ref, { ...tls, platform }),
    pull: async (ref, platform, digest) => {
      const view = process.stderr.isTTY ? new ProgressView(process.stderr) : undefined;
      try {
        return await pullImage(store, ref, { ...tls, platform, expectedDigest: digest, ...(view ? { onProgress: view.update } : {}) });
      } finally {
        view?.finish();
      }
    },
  };
}
