/**
 * The per-cluster config layer: the image's rootfs as the Clusterfile's Configs and the image's `*.tmpl` files
 * (rendered with the cluster's env) change it, written as one extra layer by the build's layer writer and checked
 * by the same layer rules. Hosts receive it like any layer and unpack it last. Only the files it needs are read
 * from the image (directories, symlinks, the Configs' files and the templates).
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { canonicalJson, digestHex, sha256, type Digest } from '../kernel/digest.js';
import { ClusterfileError, TemplateError } from '../kernel/errors.js';
import { writeFileAtomic } from '../kernel/fsutil.js';
import { checkStoredLayers, type CheckedImage } from '../image/layer-check.js';
import { comparePaths, writeLayer, type LayerEntry } from '../image/layer-writer.js';
import type { ImageStore } from '../image/store.js';
import { applyStep } from '../image/unpack.js';
import { confine, ConfineError } from './confine.js';
import { maskedDiff } from './masked-diff.js';
import { mergeInto, mergeSecret } from './merge.js';
import { processData, ProcessError } from './process.js';
import type { ConfigSpec } from '../clusterfile/config-spec.js';
import { renderTemplate, TemplateError as RenderError, TEMPLATE_SUFFIX } from './template.js';

/** A file the layer changes, as the plan shows it: masked unified diff from what hosts have now. */
export interface ConfigFileChange {
  path: string;
  /** Who writes it: `Config <name>` or `template <path>.tmpl`, in order. */
  by: string[];
  diff: string;
}

export interface ConfigLayerInfo {
  digest: Digest;
  size: number;
  /** Every file the layer holds. */
  files: string[];
  /** Files that differ from the previous config layer (or from the image, when there was none). */
  changes: ConfigFileChange[];
}

export interface BuiltConfigLayer {
  info: ConfigLayerInfo;
  /** The image's layers and the config layer, checked together: what the unpack follows. */
  checked: CheckedImage;
}

export interface ConfigLayerInput {
  store: ImageStore;
  image: { ref: string; layers: Digest[]; allowSetid?: boolean };
  checked: CheckedImage;
  configs: ConfigSpec[];
  env: Record<string, string>;
  /** The config layer the cluster's hosts have now (from state), for the diff. */
  previous?: Digest;
}

const TEMPLATES_CACHE_VERSION = 1;

/** Builds the layer, or returns undefined when nothing changes the image (no Config, no template). */
export async function buildConfigLayer(input: ConfigLayerInput): Promise<BuiltConfigLayer | undefined> {
  const { store, image, configs } = input;
  const cacheFile = join(store.home, 'cache', 'config-layer', `templates-${digestHex(sha256(canonicalJson({ v: TEMPLATES_CACHE_VERSION, layers: image.layers })))}.json`);
  const knownTemplates = await fs.readFile(cacheFile, 'utf8').then((t) => JSON.parse(t) as string[], () => undefined);
  if (configs.length === 0 && knownTemplates?.length === 0) return undefined;

  const previousFiles = input.previous && (await store.hasBlob(input.previous)) ? await layerFiles(store.blobPath(input.previous)) : new Map<string, Buffer>();
  const wanted = new Set([...configs.map((c) => c.path), ...previousFiles.keys()]);
  const wantedNames = new Set([...wanted].map(baseName));
  const root = await store.tempPath('config-rootfs');
  await fs.mkdir(root, { recursive: true });
  try {
    const seenTemplates = new Set<string>();
    for (const step of input.checked.steps) {
      await applyStep(store, step, root, (p, type) => {
        if (type === 'Directory' || type === 'SymbolicLink') return true;
        if (type !== 'File' && type !== 'OldFile' && type !== 'ContiguousFile') return false;
        if (p.endsWith(TEMPLATE_SUFFIX)) seenTemplates.add(p);
        // By base name too: a Config's path may reach its file through a symlinked directory.
        return p.endsWith(TEMPLATE_SUFFIX) || wanted.has(p) || wantedNames.has(baseName(p));
      });
    }
    if (knownTemplates === undefined) await writeFileAtomic(cacheFile, JSON.stringify([...seenTemplates].sort()), 0o600);
    const templates: string[] = [];
    for (const t of [...seenTemplates].sort(comparePaths)) if ((await fs.lstat(join(root, t)).catch(() => undefined))?.isFile()) templates.push(t);
    if (configs.length === 0 && templates.length === 0) return undefined;

    const files = new Map<string, { text: string; mode: number; by: string[] }>();
    const base = async (p: string): Promise<{ text: string; mode: number } | undefined> => {
      const st = await fs.lstat(join(root, p)).catch(() => undefined);
      if (!st?.isFile()) return undefined;
      return { text: await fs.readFile(join(root, p), 'utf8'), mode: st.mode & 0o7777 };
    };
    const current = async (p: string) => files.get(p) ?? (await base(p));
    const write = async (p: string, text: string, by: string, modeIfNew = 0o644) => {
      const prev = await current(p);
      files.set(p, { text, mode: prev?.mode ?? modeIfNew, by: [...(files.get(p)?.by ?? []), by] });
    };

    for (const t of templates) {
      const out = t.slice(0, -TEMPLATE_SUFFIX.length);
      let real: string;
      try {
        real = await confine(root, out);
      } catch (err) {
        if (err instanceof ConfineError) throw new TemplateError(image.ref, { file: t }, `cannot write ${out}: ${err.message}`, 'rebuild the image so the rendered file stays inside the rootfs');
        throw err;
      }
      try {
        // A rendered file the image lacks gets its template's mode (an executable script stays executable).
        const tmpl = (await base(t))!;
        await write(real, renderTemplate(tmpl.text, input.env), `template ${t}`, tmpl.mode);
      } catch (err) {
        if (err instanceof RenderError) throw new TemplateError(image.ref, { file: t, line: err.line }, err.message);
        throw err;
      }
    }

    for (const c of configs) {
      const fail = (why: string, hint?: string): never => {
        throw new ClusterfileError(c.at, `Config ${c.name}: spec.path ${c.path}: ${why}`, hint);
      };
      let real = '';
      try {
        real = await confine(root, c.path);
      } catch (err) {
        if (err instanceof ConfineError) fail(err.message, 'give a path inside the image rootfs that reaches its file without leaving it');
        throw err;
      }
      const existing = await current(real);
      try {
        const out = processData(c.data, c.process);
        if (out.kind === 'values' && out.secret) {
          if (!existing) fail('toSecret writes into an existing Secret file, and the image has no such file', 'check the path, or write the Secret with strategy: overwrite and no toSecret');
          await write(real, mergeSecret(existing!.text, out.values), `Config ${c.name}`);
        } else if (c.strategy === 'merge') {
          if (!existing) fail('strategy merge needs the file in the image, and it has no such file', 'check the path, or use strategy: overwrite to create it');
          const data = out.kind === 'values' ? out.values : parseYaml(out.text);
          await write(real, mergeInto(real, existing!.text, data), `Config ${c.name}`);
        } else {
          await write(real, out.kind === 'values' ? stringifyYaml(out.values) : out.text, `Config ${c.name}`);
        }
      } catch (err) {
        if (err instanceof ProcessError) fail(err.message);
        if (err instanceof Error && err.name === 'YAMLParseError') fail(`the processed data is not valid YAML or JSON, so it cannot be merged (${err.message.split('\n')[0]})`);
        throw err;
      }
    }

    // Files the layer would write as the image has them already are left out.
    const changed: string[] = [];
    for (const [p, f] of files) if ((await base(p))?.text !== f.text) changed.push(p);
    changed.sort(comparePaths);
    if (changed.length === 0) return undefined;

    const entries: LayerEntry[] = [];
    const contents = new Map<string, Buffer>();
    const dirs = new Set<string>();
    for (const p of changed) {
      const parts = p.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (dirs.has(d)) continue;
        dirs.add(d);
        if (!(await fs.lstat(join(root, d)).catch(() => undefined))) entries.push({ type: 'dir', path: d, mode: 0o755 });
      }
      const buf = Buffer.from(files.get(p)!.text, 'utf8');
      contents.set(p, buf);
      entries.push({ type: 'file', path: p, mode: files.get(p)!.mode, size: buf.length });
    }
    entries.sort((a, b) => comparePaths(a.path, b.path));
    const written = await writeLayer(store, entries, contents);
    const checked = await checkStoredLayers(store, { ref: image.ref, layers: [...image.layers, written.digest], allowSetid: image.allowSetid });

    const changes: ConfigFileChange[] = [];
    if (input.previous !== written.digest) {
      const paths = [...new Set([...changed, ...previousFiles.keys()])].sort(comparePaths);
      for (const p of paths) {
        const imageText = (await base(p))?.text;
        const before = previousFiles.has(p) ? previousFiles.get(p)!.toString('utf8') : imageText;
        const after = files.has(p) && changed.includes(p) ? files.get(p)!.text : imageText;
        const diff = maskedDiff(p, before, after);
        if (diff) changes.push({ path: p, by: files.get(p)?.by ?? ['(no longer written)'], diff });
      }
    }
    return { info: { digest: written.digest, size: written.size, files: changed, changes }, checked };
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** The regular files of a layer the store holds, by path (a config layer: a few small files). */
async function layerFiles(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({ strict: true });
    parser.on('entry', (e: ReadEntry) => {
      if (e.type !== 'File') return void e.resume();
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () => out.set(e.path.replace(/^\.\//, ''), Buffer.concat(chunks)));
    });
    parser.on('error', reject);
    parser.on('end', () => resolve());
    fs.readFile(file).then((b) => parser.end(b), reject);
  });
  return out;
}
