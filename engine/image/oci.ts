/** OCI image-spec data shapes used by the store, the builder and the registry client. */
import type { Digest } from '../kernel/digest.js';

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export const REF_NAME = 'org.opencontainers.image.ref.name';
/** Local-store only (index.json), never part of an image digest: when this machine stored the image. */
export const STORED_AT = 'io.cloudimage.stored';

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

export interface Manifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  empty_layer?: boolean;
  comment?: string;
}

/** A CMD recorded by the Kubefile: run at apply time on the first master, re-run when identity changes. */
export interface CmdRecord {
  cmd: string;
  /** sha256 over the CMD text and every layer digest before it. */
  identity: Digest;
}

/** What a launched app needs on master0 besides `sh`. */
export type AppTool = 'kubectl' | 'helm';

/** How an app is launched: its APPCMDS, or the commands its files imply (decided when the image is built). */
export interface AppLaunch {
  by: 'appcmds' | 'shell' | 'kubectl' | 'helm';
  /** Run in order with `sh -c`, in the app's folder on master0. */
  cmds: string[];
  needs: AppTool[];
}

/** An APP of the Kubefile: files under `dir` in the rootfs. */
export interface AppRecord {
  name: string;
  /** The app's folder, relative to the rootfs: `application/apps/<name>`. */
  dir: string;
  /** Digest over the app's files (paths, modes, contents) as the APP packed them. */
  files: Digest;
  /** Absent when neither APPCMDS nor the app's files say how to launch it: it can then not be listed in LAUNCH. */
  launch?: AppLaunch;
}

/** One entry of LAUNCH: run on master0 after the joins, again whenever `identity` changes. */
export interface LaunchRecord {
  app: string;
  /** sha256 over the app's name, its files' digest and its launch commands. */
  identity: Digest;
}

/** Our metadata, carried in the standard image config under one extra key. */
export interface CloudImageMeta {
  version: 1;
  /** One entry per layer, in order: the instruction that made it. */
  layers: { createdBy: string }[];
  cmds: CmdRecord[];
  /** The image's apps, its base image's included (absent: none). */
  apps?: AppRecord[];
  /** The apps its LAUNCH runs, in order (absent: none). A base image's LAUNCH is not inherited. */
  launch?: LaunchRecord[];
  /**
   * Set only by `ci build --allow-setuid`: set-user-ID and set-group-ID bits of the image's files are kept when
   * it is unpacked (they are stripped otherwise).
   */
  allowSetid?: boolean;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  os: string;
  variant?: string;
  config: { Env?: string[]; Labels?: Record<string, string>; Cmd?: string[] };
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history: HistoryEntry[];
  cloudimage?: CloudImageMeta;
}
