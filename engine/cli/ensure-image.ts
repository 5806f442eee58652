/** `ci apply` fetches the Clusterfile's image when the local store lacks it, with the same progress as `ci pull`. */
import { ensureImage } from '../registry/pull.js';
import { ProgressView } from '../registry/progress.js';
import type { ImageStore } from '../image/store.js';

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
