/**
 * `ci build`: Kubefile + context -> CloudImage in the local store. Every step that changes files yields one
 * reproducible layer; steps are cached by their full chain of inputs; the image is named only once all of its
 * blobs are stored, so an interrupted build leaves no half image.
 */
import { promises as fs } from 'node:fs';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { canonicalJson, sha256, type Digest } from '../kernel/digest.js';
import { BuildStepError, ImageNotFoundError, KubefileError, UsageError, type Location } from '../kernel/errors.js';
import { BuildCache } from './build-cache.js';
import { materializeArchives } from './add-archive.js';
import { chownNeedsNames, parseChmod, OwnerProblem } from './copy-owner.js';
import { planCopy, resolveSources, SourceProblem, type CopyPlan as SourcesPlan } from './copy-sources.js';
import { IgnoreFileError, loadIgnoreRules, type IgnoreRules } from './ignore-rules.js';
import { ImageTree } from './image-tree.js';
import { expandVars, parseKubefile, type Instruction } from './kubefile.js';
import { writeLayer, type LayerEntry } from './layer-writer.js';
import { MEDIA, type CmdRecord, type HistoryEntry, type ImageConfig, type Manifest } from './oci.js';
import { normalizeReference } from './reference.js';
import { diffSnapshots, snapshot } from './snapshot.js';
import type { ImageStore, ResolvedImage } from './store.js';
import { checkStoredLayers } from './layer-check.js';
import { WorkingRootfs } from './unpack.js';

export interface BuildOptions {
  kubefile: string;
  context: string;
  tag: string;
  buildArgs?: Record<string, string>;
  noCache?: boolean;
  /** Keep set-user-ID and set-group-ID bits of the image's files when it is unpacked (stripped otherwise). */
  allowSetid?: boolean;
  /** Progress lines (`Step 2/5 : COPY …`) and RUN output. */
  onProgress?: (line: string) => void;
  onRunOutput?: (chunk: string) => void;
}

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

/** Shell form of an exec-form array, quoted so `sh -c` runs exactly those words. */
export function shellJoin(words: string[]): string {
  return words.map((w) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}

interface BuildStateVars {
  layers: BuiltLayer[];
  env: Map<string, string>;
  labels: Map<string, string>;
  args: Map<string, string>;
  cmds: CmdRecord[];
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
  const declared = new Set(instructions.flatMap((i) => (i.op === 'ARG' ? [i.name] : [])));
  for (const name of Object.keys(buildArgs)) {
    if (!declared.has(name)) throw new UsageError(`--build-arg ${name} is not declared by any ARG in ${file}`, `add "ARG ${name}" to the Kubefile or drop the flag`);
  }

  // Everything that can be checked without writing is checked first, so bad input leaves the store untouched.
  const ignore = await loadIgnoreRules(opts.context).catch((err) => {
    if (err instanceof IgnoreFileError) throw new KubefileError({ file: join(opts.context, err.file), line: err.line }, err.reason, 'fix or remove that pattern');
    throw err;
  });
  const copies = await planAllCopies(store, instructions, opts.context, file, buildArgs, ignore);
  await store.init();
  const cache = new BuildCache(store);
  const s: BuildStateVars = {
    layers: [],
    env: new Map(),
    labels: new Map(),
    args: new Map(),
    cmds: [],
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
      const layer = await step(store, cache, s, ins, loc, opts, buildArgs, vars, ensureRootfs, () => rootfs, copies, tracker);
      if (layer) {
        s.layers.push(layer);
        if (layer.cached && rootfs) await rootfs.apply(layer.digest);
        opts.onProgress?.(` ---> ${layer.cached ? 'cached ' : ''}${layer.digest.slice(7, 19)} (${layer.size} bytes)`);
      }
    }

    const config: ImageConfig = {
      ...(process.env.SOURCE_DATE_EPOCH ? { created: new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000).toISOString() } : {}),
      architecture: 'amd64',
      os: 'linux',
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
        ...(opts.allowSetid ? { allowSetid: true } : {}),
      },
    };
    // The whole image, base layers included, obeys the layer rules before it gets a name.
    await checkStoredLayers(store, { ref, layers: s.layers.map((l) => l.digest), allowSetid: !!opts.allowSetid });
    const configBlob = await store.putBlob(JSON.stringify(config));
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: configBlob.digest, size: configBlob.size },
      layers: s.layers.map((l) => ({ mediaType: MEDIA.layerGzip, digest: l.digest, size: l.size })),
    };
    const desc = await store.putManifest(manifest);
    await store.tag(ref, desc);
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
      const base = await resolveBase(store, image, loc);
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
      inheritEnv(base, s.env);
      for (const [k, v] of Object.entries(base.config.config.Labels ?? {})) s.labels.set(k, v);
      s.cmds.push(...(meta?.cmds ?? []));
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
    case 'COPY':
    case 'ADD': {
      let plan = copies.get(ins)!;
      if (!plan.tree) {
        // A RUN came before: where the sources go depends on what it made, known only now.
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

function inheritEnv(base: ResolvedImage, env: Map<string, string>): void {
  for (const e of base.config.config.Env ?? []) {
    const eq = e.indexOf('=');
    env.set(e.slice(0, eq), e.slice(eq + 1));
  }
}

async function resolveBase(store: ImageStore, image: string, loc: Location): Promise<ResolvedImage> {
  try {
    return await store.resolve(image);
  } catch (err) {
    if (err instanceof ImageNotFoundError) {
      throw new KubefileError(loc, `FROM ${image}: image is not in the local store`, 'build or pull it first (`ci images` lists the store)');
    }
    throw err;
  }
}

/**
 * A read-only pass over the Kubefile: resolves FROM and every COPY/ADD with the variables in effect. Until the
 * first RUN the image tree is known (base layers and the COPYs before), so those are planned in full; after it
 * their sources and flags are checked here and their destinations when the step runs.
 */
async function planAllCopies(
  store: ImageStore,
  instructions: Instruction[],
  context: string,
  file: string,
  buildArgs: Record<string, string>,
  ignore: IgnoreRules,
): Promise<Map<Instruction, CopyPlan>> {
  const args = new Map<string, string>();
  const env = new Map<string, string>();
  const vars = () => ({ ...Object.fromEntries(args), ...Object.fromEntries(env) });
  const plans = new Map<Instruction, CopyPlan>();
  let tree: ImageTree | undefined = new ImageTree();
  // Base layers are read only when a COPY or ADD needs to know what the image holds.
  let unread: string[] = [];
  for (const ins of instructions) {
    const loc: Location = { file, line: ins.line };
    if (ins.op === 'ARG') applyArg(ins, args, buildArgs, vars());
    else if (ins.op === 'ENV') applyEnv(ins, env, vars);
    else if (ins.op === 'RUN') tree = undefined;
    else if (ins.op === 'FROM') {
      const image = expandVars(ins.image, vars());
      if (image !== 'scratch') {
        const base = await resolveBase(store, image, loc);
        inheritEnv(base, env);
        unread = base.manifest.layers.map((l) => store.blobPath(l.digest));
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
    }
  }
  return plans;
}
