/**
 * `ci build`: Kubefile + context -> CloudImage in the local store. Every step that changes files yields one
 * reproducible layer; steps are cached by their full chain of inputs; the image is named only once all of its
 * blobs are stored, so an interrupted build leaves no half image.
 */
import { promises as fs } from 'node:fs';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { canonicalJson, sha256, type Digest } from '../kernel/digest.js';
import { BuildStepError, CiError, ImageNotFoundError, InputError, InvalidReferenceError, KubefileError, UsageError, formatLocation, kubefileErrors, type Location } from '../kernel/errors.js';
import { BuildCache } from './build-cache.js';
import { materializeArchives } from './add-archive.js';
import { chownNeedsNames, parseChmod, OwnerProblem } from './copy-owner.js';
import { planCopy, resolveSources, SourceProblem, type CopyPlan as SourcesPlan } from './copy-sources.js';
import { IgnoreFileError, loadIgnoreRules, type IgnoreRules } from './ignore-rules.js';
import { ImageTree } from './image-tree.js';
import { expandVars, parseKubefile, type Instruction } from './kubefile.js';
import { writeLayer, type LayerEntry } from './layer-writer.js';
import { MEDIA, type AppRecord, type CmdRecord, type HistoryEntry, type ImageConfig, type LaunchRecord, type Manifest } from './oci.js';
import { appDir, detectLaunch, launchIdentity } from './apps.js';
import { normalizeReference, parseReference } from './reference.js';
import { BUILD_PLATFORM_ARGS, TARGET_ARGS, formatPlatform, hostPlatform, platformArgs, platformMatches, type Platform } from './platform.js';
import { diffSnapshots, snapshot } from './snapshot.js';
import type { ImageStore, ResolvedImage } from './store.js';
import { checkStoredLayers } from './layer-check.js';
import { WorkingRootfs } from './unpack.js';
import { shellJoin } from './shell-words.js';

export interface BuildOptions {
  kubefile: string;
  context: string;
  tag: string;
  buildArgs?: Record<string, string>;
  noCache?: boolean;
  /** Keep set-user-ID and set-group-ID bits of the image's files when it is unpacked (stripped otherwise). */
  allowSetid?: boolean;
  /** The platform the image is for (its config's os/architecture/variant and the TARGET* and ARCH arguments); this machine's by default. */
  platform?: Platform;
  /** Look the FROM image up in its registry even when the store has it, and store what the registry has now. */
  pull?: boolean;
  /** Fetches a FROM image that has a registry host in its name; without one, only the store is looked in. */
  baseSource?: BaseImageSource;
  /** Image labels, set after (and over) the Kubefile's LABELs. */
  labels?: Record<string, string>;
  /** Annotations of the image manifest. */
  annotations?: Record<string, string>;
  /** Progress lines (`Step 2/5 : COPY …`) and RUN output. */
  onProgress?: (line: string) => void;
  onRunOutput?: (chunk: string) => void;
}

/** Where a FROM image comes from when the store lacks it (or `pull` is set): the caller's registry client. */
export interface BaseImageSource {
  /** The image's manifest digest and config for `platform`, read without storing anything. */
  describe(ref: string, platform: Platform): Promise<{ digest: Digest; config: ImageConfig }>;
  /** Stores the image (its layers checked as every pulled image's are), which must still be `digest`. */
  pull(ref: string, platform: Platform, digest: Digest): Promise<ResolvedImage>;
}

/** A FROM image as the pre-pass found it: in the store, or in its registry, to be pulled once the input is known good. */
type BasePlan = { local: ResolvedImage } | { remote: { digest: Digest; config: ImageConfig } };

export interface BuiltLayer {
  digest: Digest;
  diffId: Digest;
  size: number;
  createdBy: string;
  cached: boolean;
}

export interface BuildResult {
  ref: string;
  digest: Digest;
  layers: BuiltLayer[];
  cmds: CmdRecord[];
}

export function cmdIdentity(cmd: string, layersBefore: Digest[]): Digest {
  return sha256(canonicalJson({ cmd, layers: layersBefore }));
}

export { shellJoin };

interface BuildStateVars {
  layers: BuiltLayer[];
  env: Map<string, string>;
  labels: Map<string, string>;
  args: Map<string, string>;
  cmds: CmdRecord[];
  /** Apps of the base image, then this Kubefile's, in order. */
  apps: AppRecord[];
  launch: LaunchRecord[];
  history: HistoryEntry[];
  chain: Digest;
}

export async function buildImage(store: ImageStore, opts: BuildOptions): Promise<BuildResult> {
  const file = opts.kubefile;
  let source: string;
  try {
    source = await fs.readFile(file, 'utf8');
  } catch {
    throw new KubefileError({ file }, 'Kubefile not found', 'pass its path with -f, or put a Kubefile in the build context');
  }
  const contextStat = await fs.stat(opts.context).catch(() => undefined);
  if (!contextStat?.isDirectory()) throw new UsageError(`build context ${opts.context} is not a directory`);
  const instructions = parseKubefile(source, file);
  const ref = normalizeReference(opts.tag);
  const buildArgs = opts.buildArgs ?? {};
  const target = opts.platform ?? hostPlatform();
  const predefined = platformArgs(target);
  const declared = new Set(instructions.flatMap((i) => (i.op === 'ARG' ? [i.name] : [])));
  const undeclared = Object.keys(buildArgs).filter((name) => !declared.has(name) && !(name in predefined));
  if (undeclared.length > 0) {
    const names = undeclared.join(', ');
    throw new UsageError(`--build-arg ${names} ${undeclared.length > 1 ? 'are' : 'is'} not declared by any ARG in ${file}`, `add ${undeclared.map((n) => `"ARG ${n}"`).join(', ')} to the Kubefile or drop the flag`);
  }
  const args0 = startingArgs(predefined, buildArgs);

  // Everything that can be checked without writing is checked first, so bad input leaves the store untouched.
  const ignore = await loadIgnoreRules(opts.context).catch((err) => {
    if (err instanceof IgnoreFileError) throw new KubefileError({ file: join(opts.context, err.file), line: err.line }, err.reason, 'fix or remove that pattern');
    throw err;
  });
  const bases = new Map<Instruction, BasePlan>();
  const copies = await planAllCopies(store, instructions, opts.context, file, buildArgs, { args: args0, target, pull: !!opts.pull, source: opts.baseSource, bases }, ignore);
  await store.init();
  const cache = new BuildCache(store);
  const s: BuildStateVars = {
    layers: [],
    env: new Map(),
    labels: new Map(),
    args: new Map(args0),
    cmds: [],
    apps: [],
    launch: [],
    history: [],
    chain: sha256('cloudimage build v1'),
  };
  let rootfs: WorkingRootfs | undefined;
  const ensureRootfs = async (): Promise<WorkingRootfs> => {
    if (!rootfs) {
      const dir = await store.tempPath('rootfs');
      await fs.mkdir(dir, { recursive: true });
      rootfs = new WorkingRootfs(store, dir, !!opts.allowSetid);
      for (const l of s.layers) await rootfs.apply(l.digest);
    }
    return rootfs;
  };
  const vars = () => ({ ...Object.fromEntries(s.args), ...Object.fromEntries(s.env) });
  const tracker = new TreeTracker(store, ignore);

  try {
    let n = 0;
    for (const ins of instructions) {
      n++;
      const loc: Location = { file, line: ins.line };
      opts.onProgress?.(`Step ${n}/${instructions.length} : ${ins.text}`);
      const layer = await step(store, cache, s, ins, loc, opts, buildArgs, vars, ensureRootfs, () => rootfs, copies, bases, tracker);
      if (layer) {
        s.layers.push(layer);
        if (layer.cached && rootfs) await rootfs.apply(layer.digest);
        opts.onProgress?.(` ---> ${layer.cached ? 'cached ' : ''}${layer.digest.slice(7, 19)} (${layer.size} bytes)`);
      }
    }

    for (const [k, v] of Object.entries(opts.labels ?? {})) s.labels.set(k, v);
    const config: ImageConfig = {
      ...(process.env.SOURCE_DATE_EPOCH ? { created: new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000).toISOString() } : {}),
      architecture: target.architecture,
      os: target.os,
      ...(target.variant ? { variant: target.variant } : {}),
      config: {
        Env: [...s.env].map(([k, v]) => `${k}=${v}`),
        Labels: Object.fromEntries([...s.labels].sort(([a], [b]) => (a < b ? -1 : 1))),
      },
      rootfs: { type: 'layers', diff_ids: s.layers.map((l) => l.diffId) },
      history: s.history,
      cloudimage: {
        version: 1,
        layers: s.layers.map((l) => ({ createdBy: l.createdBy })),
        cmds: s.cmds,
        ...(s.apps.length > 0 ? { apps: s.apps } : {}),
        ...(s.launch.length > 0 ? { launch: s.launch } : {}),
        ...(opts.allowSetid ? { allowSetid: true } : {}),
      },
    };
    // The whole image, base layers included, obeys the layer rules before it gets a name.
    const checked = await checkStoredLayers(store, { ref, layers: s.layers.map((l) => l.digest), allowSetid: !!opts.allowSetid });
    const configBlob = await store.putBlob(JSON.stringify(config));
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: configBlob.digest, size: configBlob.size },
      // As stored: gzipped, or a plain tar when gzip was not worth it (and as a base image gave its layers).
      layers: s.layers.map((l, i) => ({ mediaType: checked.steps[i].compression === 'gzip' ? MEDIA.layerGzip : MEDIA.layerTar, digest: l.digest, size: l.size })),
      ...(opts.annotations && Object.keys(opts.annotations).length > 0 ? { annotations: { ...opts.annotations } } : {}),
    };
    const desc = await store.putManifest(manifest);
    await store.tag(ref, { ...desc, platform: { os: target.os, architecture: target.architecture, ...(target.variant ? { variant: target.variant } : {}) } });
    return { ref, digest: desc.digest, layers: s.layers, cmds: s.cmds };
  } finally {
    if (rootfs) await fs.rm(rootfs.dir, { recursive: true, force: true });
  }
}

async function step(
  store: ImageStore,
  cache: BuildCache,
  s: BuildStateVars,
  ins: Instruction,
  loc: Location,
  opts: BuildOptions,
  buildArgs: Record<string, string>,
  vars: () => Record<string, string>,
  ensureRootfs: () => Promise<WorkingRootfs>,
  currentRootfs: () => WorkingRootfs | undefined,
  copies: Map<Instruction, CopyPlan>,
  bases: Map<Instruction, BasePlan>,
  tracker: TreeTracker,
): Promise<BuiltLayer | undefined> {
  const chainWith = (...parts: unknown[]) => sha256(canonicalJson([s.chain, ...parts]));
  switch (ins.op) {
    case 'ARG': {
      const value = applyArg(ins, s.args, buildArgs, vars());
      s.chain = chainWith('ARG', ins.name, value ?? null);
      s.history.push({ created_by: ins.text, empty_layer: true });
      return undefined;
    }
    case 'FROM': {
      const image = expandVars(ins.image, vars());
      s.history.push({ created_by: ins.text, empty_layer: true });
      if (image === 'scratch') {
        s.chain = chainWith('FROM', 'scratch');
        return undefined;
      }
      const base = await baseImage(image, bases.get(ins)!, loc, opts);
      await checkStoredLayers(store, { ref: base.ref, layers: base.manifest.layers.map((l) => l.digest), allowSetid: base.config.cloudimage?.allowSetid });
      const meta = base.config.cloudimage;
      base.manifest.layers.forEach((l, i) =>
        s.layers.push({
          digest: l.digest,
          diffId: base.config.rootfs.diff_ids[i],
          size: l.size,
          createdBy: meta?.layers[i]?.createdBy ?? base.config.history.filter((h) => !h.empty_layer)[i]?.created_by ?? '',
          cached: true,
        }),
      );
      inheritEnv(base.config, s.env);
      for (const [k, v] of Object.entries(base.config.config.Labels ?? {})) s.labels.set(k, v);
      s.cmds.push(...(meta?.cmds ?? []));
      s.apps.push(...(meta?.apps ?? []).map((a) => structuredClone(a)));
      s.history.push(...base.config.history);
      s.chain = chainWith('FROM', base.digest);
      return undefined;
    }
    case 'ENV': {
      applyEnv(ins, s.env, vars);
      s.chain = chainWith('ENV', ins.pairs.map(([k]) => [k, s.env.get(k)]));
      s.history.push({ created_by: ins.text, empty_layer: true });
      return undefined;
    }
    case 'LABEL': {
      // Labels change metadata only, so they stay out of the chain: editing one never rebuilds layers.
      for (const [k, v] of ins.pairs) s.labels.set(expandVars(k, vars()), expandVars(v, vars()));
      s.history.push({ created_by: ins.text, empty_layer: true });
      return undefined;
    }
    case 'CMD': {
      const cmd = ins.exec ? shellJoin(ins.exec) : ins.shell!;
      s.cmds.push({ cmd, identity: cmdIdentity(cmd, s.layers.map((l) => l.digest)) });
      s.history.push({ created_by: ins.text, empty_layer: true });
      return undefined;
    }
    case 'CMDS':
    case 'APP':
    case 'APPCMDS':
    case 'LAUNCH':
      return appStep(store, cache, s, ins, loc, opts, currentRootfs, copies);
    case 'COPY':
    case 'ADD': {
      let plan = copies.get(ins)!;
      if (!plan.tree) {
        // A RUN or a base still to be pulled came before: where the sources go depends on the layers, known only now.
        plan = { ...plan, ...(await planCopy(opts.context, plan.sources, plan.dest, loc, { ...plan.flags, op: ins.op, ignore: tracker.ignore, tree: await tracker.at(s.layers) })) };
      }
      const key = chainWith(ins.op, plan.sources, plan.dest, plan.flags.chown ?? null, plan.flags.chmod ?? null, plan.contentDigest);
      return layerStep(store, cache, s, key, ins.text, opts.noCache, async () => {
        let staged: string | undefined;
        try {
          if (plan.fromArchive.size > 0) {
            staged = await store.tempPath('add');
            await materializeArchives(plan.entries, plan.fromArchive, staged);
          }
          const written = await writeLayer(store, plan.entries);
          await currentRootfs()?.apply(written.digest);
          return written;
        } finally {
          if (staged) await fs.rm(staged, { recursive: true, force: true });
        }
      });
    }
    case 'RUN': {
      const env = vars();
      const key = chainWith('RUN', ins.shell ?? ins.exec, env);
      return layerStep(store, cache, s, key, ins.text, opts.noCache, async () => {
        const working = await ensureRootfs();
        const root = working.dir;
        const before = await snapshot(root);
        await runCommand(ins, root, env, loc, opts.onRunOutput);
        const entries: LayerEntry[] = diffSnapshots(before, await snapshot(root), root);
        if (entries.length === 0) return undefined;
        const written = await writeLayer(store, entries);
        await working.record(written.digest);
        return written;
      });
    }
  }
}

/** sealer's application instructions: APP packs a layer like COPY; the others only add to the image's metadata. */
async function appStep(
  store: ImageStore,
  cache: BuildCache,
  s: BuildStateVars,
  ins: Extract<Instruction, { op: 'CMDS' | 'APP' | 'APPCMDS' | 'LAUNCH' }>,
  loc: Location,
  opts: BuildOptions,
  currentRootfs: () => WorkingRootfs | undefined,
  copies: Map<Instruction, CopyPlan>,
): Promise<BuiltLayer | undefined> {
  switch (ins.op) {
    case 'CMDS':
      for (const cmd of ins.cmds) s.cmds.push({ cmd, identity: cmdIdentity(cmd, s.layers.map((l) => l.digest)) });
      s.history.push({ created_by: ins.text, empty_layer: true });
      return undefined;
    case 'APP': {
      if (s.apps.some((a) => a.name === ins.name)) {
        throw new KubefileError(loc, `APP: app "${ins.name}" is already in the base image`, 'give this app another name (an app\'s files cannot be replaced by a later image)');
      }
      const plan = copies.get(ins)!;
      const key = sha256(canonicalJson([s.chain, 'APP', ins.name, plan.sources, plan.contentDigest]));
      const layer = await layerStep(store, cache, s, key, ins.text, opts.noCache, async () => {
        const written = await writeLayer(store, plan.entries);
        await currentRootfs()?.apply(written.digest);
        return written;
      });
      const launch = detectLaunch(ins.name, plan.entries);
      s.apps.push({ name: ins.name, dir: appDir(ins.name), files: plan.contentDigest, ...(launch ? { launch } : {}) });
      return layer;
    }
    case 'APPCMDS':
      s.apps.find((a) => a.name === ins.name)!.launch = { by: 'appcmds', cmds: [...ins.cmds], needs: [] };
      s.history.push({ created_by: ins.text, empty_layer: true });
      return undefined;
    case 'LAUNCH':
      for (const name of ins.apps) {
        const app = s.apps.find((a) => a.name === name);
        if (!app) {
          const known = s.apps.map((a) => a.name);
          throw new KubefileError(loc, `LAUNCH: unknown app "${name}"`, known.length ? `the image's apps are ${known.join(', ')}` : `define it first with APP ${name} local://<path>`);
        }
        if (!app.launch) {
          throw new KubefileError(
            loc,
            `LAUNCH: cannot tell how to launch app "${name}": its files are not a Helm chart, not all YAML, and hold no top-level *.sh script`,
            `give it its commands with APPCMDS ${name} ["command", ...] before LAUNCH`,
          );
        }
        s.launch.push({ app: name, identity: launchIdentity(app) });
      }
      s.history.push({ created_by: ins.text, empty_layer: true });
      return undefined;
  }
}

/** An APP's files, confined to the build context exactly as COPY's, under the app's folder. */
async function planApp(context: string, name: string, sources: string[], loc: Location, how: { ignore: IgnoreRules; tree?: ImageTree }): Promise<SourcesPlan> {
  try {
    return await planCopy(context, sources, appDir(name) + '/', loc, { op: 'COPY', ignore: how.ignore, tree: how.tree });
  } catch (err) {
    if (!(err instanceof KubefileError)) throw err;
    const prefix = `${formatLocation(loc)}: `;
    const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    throw new KubefileError(loc, `APP ${name}: ${message.replace(/^COPY /, '')}`, err.hint);
  }
}

async function layerStep(
  store: ImageStore,
  cache: BuildCache,
  s: BuildStateVars,
  key: Digest,
  createdBy: string,
  noCache: boolean | undefined,
  make: () => Promise<{ digest: Digest; diffId: Digest; size: number } | undefined>,
): Promise<BuiltLayer | undefined> {
  s.chain = key;
  const hit = noCache ? undefined : await cache.get(key);
  if (hit) {
    s.history.push(hit.layer ? { created_by: createdBy } : { created_by: createdBy, empty_layer: true });
    return hit.layer ? { ...hit.layer, createdBy, cached: true } : undefined;
  }
  const made = await make();
  await cache.put(key, made ? { layer: made } : {});
  s.history.push(made ? { created_by: createdBy } : { created_by: createdBy, empty_layer: true });
  return made ? { ...made, createdBy, cached: false } : undefined;
}

async function runCommand(
  ins: Extract<Instruction, { op: 'RUN' }>,
  cwd: string,
  vars: Record<string, string>,
  loc: Location,
  onOutput?: (chunk: string) => void,
): Promise<void> {
  const env = { PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env.HOME ?? '/root', ...vars };
  // A fixed umask, so the modes of files a RUN creates do not depend on the build machine's setting.
  const args = ins.exec ? ['-c', 'umask 022 && exec "$0" "$@"', ...ins.exec] : ['-c', `umask 022\n${ins.shell!}`];
  const cmd = '/bin/sh';
  let output = '';
  const code = await new Promise<number | null>((done) => {
    const child = spawn(cmd, args, { cwd: resolve(cwd), env, stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (b: Buffer) => {
      const t = b.toString('utf8');
      output = (output + t).slice(-64 * 1024);
      onOutput?.(t);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', (err) => {
      output += `${err.message}\n`;
      done(127);
    });
    child.on('close', (c) => done(c));
  });
  if (code !== 0) throw new BuildStepError(loc, `RUN ${ins.shell ?? JSON.stringify(ins.exec)}`, code, output);
}

/** A COPY or ADD after expansion; planned in full up front (`tree` set) unless a RUN comes before it. */
type CopyPlan = SourcesPlan & { sources: string[]; dest: string; flags: { chown?: string; chmod?: string }; tree?: ImageTree };

/** The image tree at the current step, read from the layers built so far (only when a COPY after a RUN needs it). */
class TreeTracker {
  private tree = new ImageTree();
  private applied = 0;
  constructor(
    private readonly store: ImageStore,
    readonly ignore: IgnoreRules,
  ) {}

  async at(layers: BuiltLayer[]): Promise<ImageTree> {
    for (; this.applied < layers.length; this.applied++) await this.tree.applyLayer(this.store.blobPath(layers[this.applied].digest));
    return this.tree;
  }
}

function applyArg(ins: Extract<Instruction, { op: 'ARG' }>, args: Map<string, string>, buildArgs: Record<string, string>, vars: Record<string, string>): string | undefined {
  const value = buildArgs[ins.name] ?? (ins.default !== undefined ? expandVars(ins.default, vars) : undefined);
  if (value !== undefined) args.set(ins.name, value);
  return value;
}

function applyEnv(ins: Extract<Instruction, { op: 'ENV' }>, env: Map<string, string>, vars: () => Record<string, string>): void {
  for (const [k, v] of ins.pairs) env.set(k, expandVars(v, vars()));
}

function inheritEnv(config: ImageConfig, env: Map<string, string>): void {
  for (const e of config.config.Env ?? []) {
    const eq = e.indexOf('=');
    env.set(e.slice(0, eq), e.slice(eq + 1));
  }
}

/**
 * The arguments every Kubefile starts with: those the platform predefines (TARGET*, BUILD*, ARCH), with a
 * `--build-arg` of one of those names in their place. An ARG of such a name then behaves as any ARG: its default,
 * when it has one, replaces the value, and a `--build-arg` replaces both.
 */
function startingArgs(predefined: Record<string, string>, buildArgs: Record<string, string>): Map<string, string> {
  const args = new Map(Object.entries(predefined));
  for (const name of [...TARGET_ARGS, ...BUILD_PLATFORM_ARGS, 'ARCH']) if (buildArgs[name] !== undefined) args.set(name, buildArgs[name]);
  return args;
}

/** The FROM image for the build step: as the pre-pass found it in the store, or pulled now. */
async function baseImage(image: string, plan: BasePlan, loc: Location, opts: BuildOptions): Promise<ResolvedImage> {
  if ('local' in plan) return plan.local;
  try {
    return await opts.baseSource!.pull(image, opts.platform ?? hostPlatform(), plan.remote.digest);
  } catch (err) {
    if (err instanceof CiError && !(err instanceof InputError)) throw new KubefileError(loc, `FROM ${image}: cannot pull it: ${err.message}`, err.hint);
    throw err;
  }
}

interface BaseLookup {
  target: Platform;
  pull: boolean;
  source?: BaseImageSource;
}

/**
 * Finds a FROM image without storing anything: in the store, or (when the store lacks it, or `pull` is set, and the
 * name has a registry host) in its registry. The image must be for the build's platform.
 */
async function planBase(store: ImageStore, image: string, loc: Location, how: BaseLookup): Promise<BasePlan> {
  if (image === '') throw new KubefileError(loc, 'FROM names no image once its variables are expanded', 'give the ARG a default or pass it with --build-arg');
  let registry: string | undefined;
  try {
    registry = parseReference(image).registry;
  } catch (err) {
    if (err instanceof InvalidReferenceError) throw new KubefileError(loc, `FROM "${image}" is not an image reference: ${err.why}`, 'write FROM scratch, FROM name:tag or FROM registry.example.com:5000/team/name:tag');
    throw err;
  }
  const wrongPlatform = (have: ImageConfig, where: string) => {
    const found = formatPlatform({ os: have.os, architecture: have.architecture, variant: have.variant });
    const wanted = formatPlatform(how.target);
    return new KubefileError(
      loc,
      `FROM ${image}: ${where} is for ${found}, but the build is for ${wanted}`,
      registry && where === 'the image in the store'
        ? `build with --platform ${found}, or add --pull to fetch ${wanted} from ${registry}`
        : `build with --platform ${found}, or use a base made for ${wanted}`,
    );
  };
  if (!how.pull || !registry) {
    try {
      const local = await store.resolve(image);
      if (!platformMatches(local.config, how.target)) throw wrongPlatform(local.config, 'the image in the store');
      return { local };
    } catch (err) {
      if (!(err instanceof ImageNotFoundError)) throw err;
      if (!registry || !how.source) {
        throw new KubefileError(
          loc,
          `FROM ${image}: image is not in the local store`,
          registry ? 'pull it first with `ci pull`' : 'build it first (`ci images` lists the store), or name it with its registry host, e.g. registry.example.com:5000/team/base:v1, so the build pulls it',
        );
      }
    }
  }
  let remote: { digest: Digest; config: ImageConfig };
  try {
    remote = await how.source!.describe(image, how.target);
  } catch (err) {
    if (err instanceof CiError && !(err instanceof InputError)) throw new KubefileError(loc, `FROM ${image}: cannot pull it: ${err.message}`, err.hint);
    throw err;
  }
  if (!platformMatches(remote.config, how.target)) throw wrongPlatform(remote.config, `the image in ${registry}`);
  return { remote };
}

/**
 * A read-only pass over the Kubefile: resolves FROM and every COPY/ADD with the variables in effect. Until the
 * first RUN the image tree is known (base layers and the COPYs before), so those are planned in full; after it
 * (or after a FROM still to be pulled) their sources and flags are checked here and their destinations when the
 * step runs. Every problem found is collected, and all of them are thrown together at the end.
 */
async function planAllCopies(
  store: ImageStore,
  instructions: Instruction[],
  context: string,
  file: string,
  buildArgs: Record<string, string>,
  base: BaseLookup & { args: Map<string, string>; bases: Map<Instruction, BasePlan> },
  ignore: IgnoreRules,
): Promise<Map<Instruction, CopyPlan>> {
  const args = new Map(base.args);
  const env = new Map<string, string>();
  const vars = () => ({ ...Object.fromEntries(args), ...Object.fromEntries(env) });
  const plans = new Map<Instruction, CopyPlan>();
  const problems: InputError[] = [];
  let tree: ImageTree | undefined = new ImageTree();
  // Base layers are read only when a COPY or ADD needs to know what the image holds.
  let unread: string[] = [];
  for (const ins of instructions) {
    const loc: Location = { file, line: ins.line };
    try {
      if (ins.op === 'ARG') applyArg(ins, args, buildArgs, vars());
      else if (ins.op === 'ENV') applyEnv(ins, env, vars);
      else if (ins.op === 'RUN') tree = undefined;
      else if (ins.op === 'FROM') {
        const image = expandVars(ins.image, vars());
        if (image !== 'scratch') {
          const plan = await planBase(store, image, loc, base);
          base.bases.set(ins, plan);
          if ('local' in plan) {
            inheritEnv(plan.local.config, env);
            unread = plan.local.manifest.layers.map((l) => store.blobPath(l.digest));
          } else {
            // Its layers come when the FROM step pulls it: destinations are decided then.
            inheritEnv(plan.remote.config, env);
            tree = undefined;
          }
        }
      } else if (ins.op === 'COPY' || ins.op === 'ADD') {
        const v = vars();
        const sources = ins.sources.map((x) => expandVars(x, v));
        const dest = expandVars(ins.dest, v);
        const flags = {
          ...(ins.chown !== undefined ? { chown: expandVars(ins.chown, v) } : {}),
          ...(ins.chmod !== undefined ? { chmod: expandVars(ins.chmod, v) } : {}),
        };
        if (tree) {
          for (const blob of unread.splice(0)) await tree.applyLayer(blob);
          const plan = await planCopy(context, sources, dest, loc, { ...flags, op: ins.op, ignore, tree });
          tree.applyEntries(plan.entries, (e) => (e.type === 'file' && e.source && !plan.fromArchive.has(e.path) ? () => fs.readFile(e.source!) : undefined));
          plans.set(ins, { ...plan, sources, dest, flags, tree });
        } else {
          try {
            if (flags.chmod !== undefined) parseChmod(flags.chmod);
            if (flags.chown !== undefined) chownNeedsNames(flags.chown);
            await resolveSources(context, sources, { op: ins.op, ignore });
          } catch (err) {
            if (err instanceof SourceProblem || err instanceof OwnerProblem) throw new KubefileError(loc, err.message, err.hint);
            throw err;
          }
          plans.set(ins, { entries: [], contentDigest: sha256(''), fromArchive: new Map(), sources, dest, flags });
        }
      } else if (ins.op === 'APP') {
        const v = vars();
        const sources = ins.sources.map((x) => expandVars(x, v));
        if (tree) for (const blob of unread.splice(0)) await tree.applyLayer(blob);
        const plan = await planApp(context, ins.name, sources, loc, { ignore, tree });
        tree?.applyEntries(plan.entries, (e) => (e.type === 'file' && e.source ? () => fs.readFile(e.source!) : undefined));
        plans.set(ins, { ...plan, sources, dest: appDir(ins.name) + '/', flags: {} });
      }
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push(err);
    }
  }
  if (problems.length > 0) throw kubefileErrors(file, problems);
  return plans;
}
