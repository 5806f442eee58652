/** The JSON `ci inspect` prints: what a user or script needs to know about an image, from the store alone. */
import type { Digest } from '../kernel/digest.js';
import type { AppRecord, CmdRecord, LaunchRecord } from './oci.js';
import type { ResolvedImage } from './store.js';

export interface ImageSummary {
  name: string;
  digest: Digest;
  layers: { digest: Digest; size: number; createdBy: string }[];
  cmds: CmdRecord[];
  /** The image's apps (APP) and the ones its LAUNCH runs, in order. */
  apps: AppRecord[];
  launch: LaunchRecord[];
  env: Record<string, string>;
  labels: Record<string, string>;
  /** Present (true) only when the image keeps set-user-ID and set-group-ID bits on hosts. */
  allowSetuid?: true;
}

export function summarizeImage(img: ResolvedImage): ImageSummary {
  const meta = img.config.cloudimage;
  const layerHistory = img.config.history.filter((h) => !h.empty_layer);
  return {
    name: img.ref,
    digest: img.digest,
    layers: img.manifest.layers.map((l, i) => ({
      digest: l.digest,
      size: l.size,
      createdBy: meta?.layers[i]?.createdBy ?? layerHistory[i]?.created_by ?? '',
    })),
    cmds: meta?.cmds ?? [],
    apps: meta?.apps ?? [],
    launch: meta?.launch ?? [],
    env: Object.fromEntries(
      (img.config.config.Env ?? []).map((e) => {
        const eq = e.indexOf('=');
        return [e.slice(0, eq), e.slice(eq + 1)];
      }),
    ),
    labels: img.config.config.Labels ?? {},
    ...(meta?.allowSetid === true ? { allowSetuid: true as const } : {}),
  };
}
