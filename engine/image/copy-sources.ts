/**
 * Resolves the sources of a COPY or ADD inside the build context, then places them in the image (copy-dest.ts).
 * Sources are read the way Docker reads its context: relative to the context's root (a leading `/` too), `..`
 * may not climb out of it, a source that is a symlink is followed inside the context (an absolute target starts
 * at the context's root, as if the context were `/`), symlinks inside copied directories are copied as symlinks,
 * and whatever the ignore file (.kubefileignore, else .dockerignore) excludes is not there.
 */
import { promises as fs, createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, posix } from 'node:path';
import fg from 'fast-glob';
import type { Digest } from '../kernel/digest.js';
import { KubefileError, type Location } from '../kernel/errors.js';
import { archiveKind, ArchiveProblem, scanArchive } from './add-archive.js';
import { placeSources, PlaceProblem, type ArchiveRef, type SourceItem, type SourceMember } from './copy-dest.js';
import { OwnerProblem, parseChmod, resolveOwner } from './copy-owner.js';
import { IgnoreFileError, IgnoreRules, loadIgnoreRules } from './ignore-rules.js';
import { ImageTree } from './image-tree.js';
import { comparePaths, type LayerEntry } from './layer-writer.js';

export interface CopyPlan {
  entries: LayerEntry[];
  /** Digest over every entry's path, type, mode, owner and content: the cache key's view of the step. */
  contentDigest: Digest;
  /** Entries whose content is read out of an ADDed archive when the layer is written. */
  fromArchive: Map<string, ArchiveRef>;
}

export interface CopyOptions {
  op?: 'COPY' | 'ADD';
  /** The image built so far (empty: FROM scratch). */
  tree?: ImageTree;
  /** The context's ignore rules; read from the context when not given. */
  ignore?: IgnoreRules;
  chown?: string;
  chmod?: string;
}

const GLOB_CHARS = /[*?[\]]/;
const URL_RE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const MAX_LINKS = 40;

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/**
 * Follows `rel` inside the context as a process chrooted into it would: symlinks are followed (all of them, the
 * last one included), absolute targets start at the context's root and `..` stops there. Returns the path
 * relative to the context; it may not exist.
 */
async function resolveInContext(ctx: string, rel: string): Promise<{ rel: string; viaLink: boolean } | { loop: true }> {
  let pending = rel.split('/').filter((p) => p && p !== '.');
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const [part, ...rest] = pending;
    pending = rest;
    if (part === '..') {
      done.pop();
      continue;
    }
    const st = await fs.lstat(join(ctx, ...done, part)).catch(() => undefined);
    if (st?.isSymbolicLink()) {
      if (++hops > MAX_LINKS) return { loop: true };
      const t = await fs.readlink(join(ctx, ...done, part));
      if (t.startsWith('/')) done.length = 0;
      pending = [...t.split('/').filter((p) => p && p !== '.'), ...pending];
      continue;
    }
    done.push(part);
    if (!st) {
      done.push(...pending.filter((p) => p !== '..'));
      break;
    }
  }
  return { rel: done.join('/'), viaLink: hops > 0 };
}

export class SourceProblem extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** The context's view of the sources: one item per source (globs expanded), each with its members. */
export async function resolveSources(context: string, sources: string[], opts: { op?: 'COPY' | 'ADD'; ignore: IgnoreRules }): Promise<SourceItem[]> {
  const op = opts.op ?? 'COPY';
  const ignore = opts.ignore;
  const ctx = await fs.realpath(context);
  const named: { path: string; shown: string }[] = [];
  for (const src of sources) {
    if (URL_RE.test(src)) {
      throw new SourceProblem(
        `${op} source "${src}" is a URL; nothing is downloaded during a build`,
        'download it into the build context first, then COPY it from there',
      );
    }
    const norm = posix.normalize(src.replace(/\\/g, '/')).replace(/^\/+/, '');
    if (norm === '..' || norm.startsWith('../')) throw new SourceProblem(`${op} source "${src}" is outside the build context ${context}`, 'sources are paths inside the build context');
    const path = norm.replace(/\/+$/, '') || '.';
    if (GLOB_CHARS.test(path)) {
      const found = (
        await fg(path, { cwd: ctx, dot: true, onlyFiles: false, followSymbolicLinks: false, unique: true, braceExpansion: false, extglob: false, caseSensitiveMatch: true })
      )
        .filter((p) => !ignore.excludes(p))
        .sort(comparePaths);
      if (found.length === 0) {
        throw new SourceProblem(
          `${op} source "${src}" matches nothing in the build context ${context}${ignore.file ? ` (or only what ${ignore.file} excludes)` : ''}`,
          'check the pattern: it is matched from the context root, and * and ? never match /',
        );
      }
      named.push(...found.map((p) => ({ path: p, shown: p })));
    } else {
      if (path !== '.' && ignore.excludes(path) && !(ignore.mayIncludeBelow(path) && (await fs.lstat(join(ctx, path)).catch(() => undefined))?.isDirectory())) {
        // An excluded directory still counts when an exception names something inside it.
        throw new SourceProblem(`${op} source "${src}" is not in the build context: ${ignore.file} excludes it`, `remove its pattern from ${ignore.file}, or add an exception (!${path})`);
      }
      named.push({ path, shown: src });
    }
  }

  const items: SourceItem[] = [];
  for (const { path, shown } of named) {
    const r = await resolveInContext(ctx, path);
    if ('loop' in r) throw new SourceProblem(`${op} source "${shown}" is a symlink loop`, 'point the symlink at a file or directory of the build context');
    const abs = r.rel ? join(ctx, r.rel) : ctx;
    const st = await fs.lstat(abs).catch(() => undefined);
    if (!st) {
      throw new SourceProblem(
        `${op} source "${shown}" does not exist in the build context ${context}` +
          (r.viaLink ? ` (it is a symlink; followed inside the context it leads to "${r.rel || '.'}", which does not exist)` : ''),
        r.viaLink
          ? 'symlinks in the build context are followed inside it: an absolute target starts at the context, and nothing outside it can be copied'
          : 'sources are paths relative to the build context (a leading / is its root): check the name, or put the file there',
      );
    }
    if (r.rel && r.rel !== path && ignore.excludes(r.rel)) {
      throw new SourceProblem(`${op} source "${shown}" leads to "${r.rel}", which ${ignore.file} excludes`, `add an exception (!${r.rel}) to ${ignore.file}, or name another source`);
    }
    const name = posix.basename(path === '.' ? ctx : path);
    if (st.isDirectory()) {
      items.push({ kind: 'dir', shown, name, members: await walk(ctx, r.rel, ignore, shown, op) });
    } else if (st.isFile()) {
      if (op === 'ADD') {
        const kind = await archiveKind(abs);
        if (kind && typeof kind === 'object') throw new SourceProblem(`ADD source "${shown}" is ${kind.refused}`, 'a .tar or .tar.gz of the same files is unpacked as it is');
        if (kind) {
          try {
            items.push({ kind: 'archive', shown, name, members: await scanArchive(abs) });
          } catch (err) {
            if (err instanceof ArchiveProblem) throw new SourceProblem(`ADD archive "${shown}": ${err.message}`, err.hint ?? 'nothing was written; fix or rebuild the archive');
            throw err;
          }
          continue;
        }
      }
      items.push({ kind: 'file', shown, name, members: [{ rel: '', kind: 'file', mode: st.mode & 0o7777, size: st.size, source: abs, hash: await hashFile(abs) }] });
    } else {
      throw new SourceProblem(`${op} source "${shown}" is a device, socket or pipe; only files, directories and symlinks can be copied`, 'name a file or a directory');
    }
  }
  return items;
}

/** A directory's members, in byte order, without what the ignore rules exclude. */
async function walk(ctx: string, root: string, ignore: IgnoreRules, shown: string, op: string): Promise<SourceMember[]> {
  const out: SourceMember[] = [];
  const visit = async (rel: string) => {
    const names = (await fs.readdir(rel ? join(ctx, root, rel) : join(ctx, root))).sort(comparePaths);
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const inCtx = root ? `${root}/${r}` : r;
      const abs = join(ctx, inCtx);
      const st = await fs.lstat(abs);
      if (!ignore.empty && ignore.excludes(inCtx)) {
        // Entered only when an exception names something inside; the directory itself stays out.
        if (st.isDirectory() && ignore.mayIncludeBelow(inCtx)) await visit(r);
        continue;
      }
      if (st.isSymbolicLink()) out.push({ rel: r, kind: 'symlink', mode: 0o777, linkname: await fs.readlink(abs) });
      else if (st.isDirectory()) {
        out.push({ rel: r, kind: 'dir', mode: st.mode & 0o7777 });
        await visit(r);
      } else if (st.isFile()) out.push({ rel: r, kind: 'file', mode: st.mode & 0o7777, size: st.size, source: abs, hash: await hashFile(abs) });
      else throw new SourceProblem(`${op} source "${posix.join(shown, r)}" is a device, socket or pipe; only files, directories and symlinks can be copied`, 'exclude it in .dockerignore, or move it out of the build context');
    }
  };
  await visit('');
  return out;
}

/**
 * Plans one COPY (or ADD): its sources in the context, where they go in the image built so far, and the layer
 * entries that result. Read-only; throws KubefileError at `loc` for anything wrong.
 */
export async function planCopy(context: string, sources: string[], dest: string, loc: Location, opts: CopyOptions = {}): Promise<CopyPlan> {
  const op = opts.op ?? 'COPY';
  try {
    const ignore = opts.ignore ?? (await loadIgnoreRules(context));
    const tree = opts.tree ?? new ImageTree();
    const chmod = opts.chmod !== undefined ? parseChmod(opts.chmod) : undefined;
    const owner = opts.chown !== undefined ? await resolveOwner(opts.chown, tree) : undefined;
    const items = await resolveSources(context, sources, { op, ignore });
    const placed = placeSources(tree, items, dest, { op, owner, chmod });
    return { entries: placed.entries, contentDigest: placed.contentDigest, fromArchive: placed.fromArchive };
  } catch (err) {
    if (err instanceof SourceProblem || err instanceof PlaceProblem || err instanceof OwnerProblem) throw new KubefileError(loc, err.message, err.hint);
    if (err instanceof IgnoreFileError) throw new KubefileError({ file: join(context, err.file), line: err.line }, err.reason, 'fix or remove that pattern');
    throw err;
  }
}
