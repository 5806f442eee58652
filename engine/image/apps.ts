/**
 * Apps in an image: where APP puts their files, how an app without APPCMDS is launched (decided from its files when
 * the image is built), the identity that makes a launch re-run exactly when the app changes, and the checks every
 * image's app metadata passes when it is read, since an image from a registry or an archive is untrusted input.
 */
import { canonicalJson, isDigest, sha256, type Digest } from '../kernel/digest.js';
import { ImageMetadataError } from '../kernel/errors.js';
import { APP_NAME_RE } from './kubefile-apps.js';
import type { LayerEntry } from './layer-writer.js';
import type { AppLaunch, AppRecord, CloudImageMeta, LaunchRecord } from './oci.js';
import { shellJoin } from './shell-words.js';

/** The folder of the rootfs that holds every app, one sub-folder per app (sealer's layout). */
export const APPS_DIR = 'application/apps';

export function appDir(name: string): string {
  return `${APPS_DIR}/${name}`;
}

const YAML = /\.ya?ml$/i;

/**
 * How an app's files say it is launched, from the entries APP packs (paths relative to the rootfs). A Helm chart
 * (Chart.yaml at the top, one folder holding one, or one .tgz) is installed with helm; files that are all YAML are
 * applied with kubectl; otherwise the top-level `*.sh` scripts run with sh, in name order. Undefined: none of these.
 */
export function detectLaunch(name: string, entries: LayerEntry[]): AppLaunch | undefined {
  const prefix = appDir(name) + '/';
  const inside = entries.filter((e) => e.path.startsWith(prefix)).map((e) => ({ ...e, rel: e.path.slice(prefix.length) }));
  const top = inside.filter((e) => !e.rel.includes('/')).sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  const has = (rel: string) => inside.some((e) => e.rel === rel && e.type !== 'dir');
  const helm = (chart: string): AppLaunch => ({ by: 'helm', cmds: [shellJoin(['helm', 'upgrade', '--install', name, chart])], needs: ['helm'] });
  if (has('Chart.yaml')) return helm('.');
  if (top.length === 1 && top[0].type === 'dir' && has(`${top[0].rel}/Chart.yaml`)) return helm(`./${top[0].rel}`);
  if (top.length === 1 && top[0].type === 'file' && /\.tgz$/i.test(top[0].rel)) return helm(`./${top[0].rel}`);
  const files = inside.filter((e) => e.type !== 'dir');
  if (files.length > 0 && files.every((e) => YAML.test(e.rel))) {
    const cmds = top.map((e) => shellJoin(e.type === 'dir' ? ['kubectl', 'apply', '-R', '-f', `./${e.rel}`] : ['kubectl', 'apply', '-f', `./${e.rel}`]));
    return { by: 'kubectl', cmds, needs: ['kubectl'] };
  }
  const scripts = top.filter((e) => e.type !== 'dir' && /\.sh$/.test(e.rel));
  if (scripts.length > 0) return { by: 'shell', cmds: scripts.map((e) => shellJoin(['sh', `./${e.rel}`])), needs: [] };
  return undefined;
}

/** What a launch is: the app, its files and its commands. Another app's change, or any other layer's, leaves it be. */
export function launchIdentity(app: AppRecord): Digest {
  return sha256(canonicalJson({ app: app.name, files: app.files, cmds: app.launch?.cmds ?? [] }));
}

const BY = new Set(['appcmds', 'shell', 'kubectl', 'helm']);
const TOOLS = new Set(['kubectl', 'helm']);
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_APPS = 1000;
const MAX_CMD = 64 * 1024;

/** A folder inside the rootfs: relative, normalised, no `..`, plain names only. */
function insideRootfs(dir: unknown): boolean {
  if (typeof dir !== 'string' || dir.length === 0 || dir.length > 4096) return false;
  return dir.split('/').every((s) => SEGMENT.test(s) && s !== '.' && s !== '..');
}

const isCmdList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((c) => typeof c === 'string' && c.length > 0 && c.length <= MAX_CMD && !c.includes('\0'));

/** Refuses app metadata that is malformed or points outside the rootfs. `image` names the image in the error. */
export function checkAppMeta(meta: CloudImageMeta | undefined, image: string): void {
  if (!meta) return;
  const fail = (m: string): never => {
    throw new ImageMetadataError(image, m);
  };
  const apps = meta.apps as unknown;
  const launch = meta.launch as unknown;
  if (apps !== undefined && (!Array.isArray(apps) || apps.length > MAX_APPS)) fail('its app list is not a list');
  if (launch !== undefined && (!Array.isArray(launch) || launch.length > MAX_APPS)) fail('its launch list is not a list');
  const byName = new Map<string, AppRecord>();
  for (const a of (apps ?? []) as unknown[]) {
    const app = a as Partial<AppRecord> | null;
    if (!app || typeof app !== 'object' || typeof app.name !== 'string' || !APP_NAME_RE.test(app.name)) {
      fail(`app name ${JSON.stringify(app && typeof app === 'object' ? app.name : app)} is not a valid app name`);
    }
    const name = app!.name as string;
    if (byName.has(name)) fail(`app ${name} is listed twice`);
    if (!insideRootfs(app!.dir)) fail(`app ${name} has folder ${JSON.stringify(app!.dir)}, which is not a plain path inside the rootfs`);
    if (typeof app!.files !== 'string' || !isDigest(app!.files)) fail(`app ${name} has no valid files digest`);
    const l = app!.launch as Partial<AppLaunch> | undefined;
    if (l !== undefined) {
      if (!l || typeof l !== 'object' || !BY.has(l.by as string)) fail(`app ${name} has an unknown launch kind`);
      if (!isCmdList(l!.cmds) || l!.cmds.length === 0) fail(`app ${name} has malformed launch commands`);
      if (!Array.isArray(l!.needs) || !l!.needs.every((t) => TOOLS.has(t))) fail(`app ${name} needs a tool cloudimage does not know`);
    }
    byName.set(name, app as AppRecord);
  }
  const seen = new Set<string>();
  for (const e of (launch ?? []) as unknown[]) {
    const entry = e as Partial<LaunchRecord> | null;
    const name = entry && typeof entry === 'object' ? entry.app : undefined;
    if (typeof name !== 'string' || !byName.has(name)) fail(`its launch list names ${JSON.stringify(name)}, which is not one of its apps`);
    if (seen.has(name!)) fail(`its launch list names app ${name} twice`);
    seen.add(name!);
    const app = byName.get(name!)!;
    if (!app.launch) fail(`its launch list names app ${name}, which has no launch commands`);
    if (entry!.identity !== launchIdentity(app)) fail(`the launch identity of app ${name} does not match its files and commands`);
  }
}
