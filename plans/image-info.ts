import type { ResolvedImage } from '../engine/image/store.js';
import type { AppRecord, LaunchRecord } from '../engine/image/oci.js';
import type { ImageInfo, LaunchInfo } from './actions.js';

/** The plain image facts the planner needs, from a resolved store image. */
export function imageInfoFromResolved(img: ResolvedImage): ImageInfo {
  const meta = img.config.cloudimage;
  return {
    ref: img.ref,
    digest: img.digest,
    layers: img.manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, createdBy: meta?.layers[i]?.createdBy ?? '' })),
    cmds: (meta?.cmds ?? []).map((c) => ({ cmd: c.cmd, identity: c.identity })),
    ...(meta?.launch?.length ? { launch: meta.launch.map((l) => launchInfo(l, meta.apps ?? [])) } : {}),
  };
}

function launchInfo(l: LaunchRecord, apps: AppRecord[]): LaunchInfo {
  // The store checked that every launched app exists and has its commands (engine/image/apps.ts).
  const app = apps.find((a) => a.name === l.app)!;
  return { app: app.name, dir: app.dir, by: app.launch!.by, cmds: [...app.launch!.cmds], needs: [...app.launch!.needs], identity: l.identity };
}
