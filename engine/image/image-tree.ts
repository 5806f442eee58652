/**
 * The tree an image's layers build so far, as COPY and ADD need it: what each path is (directory, file, symlink
 * and its target), with OCI semantics (whiteouts, opaque directories, replacement), and the content of a file on
 * demand (for the names of `--chown`). Paths are resolved the way a process chrooted into the rootfs sees them:
 * symlinks are followed inside the tree, absolute targets start at its root and `..` stops there.
 */
import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { canonicalName, classifyName } from './layer-tree.js';
import type { LayerEntry } from './layer-writer.js';

export interface TreeNode {
  kind: 'dir' | 'file' | 'symlink';
  target?: string;
  children?: Map<string, TreeNode>;
  /** Reads a file's content (files only). */
  read?: () => Promise<Buffer>;
}

export type Resolved =
  /** `path` is the resolved path ('' is the root); `node` is what is there, if anything. */
  | { ok: true; path: string; node?: TreeNode }
  /** A component on the way is a file (`at`), so nothing below it can exist. */
  | { ok: false; at: string; why: 'not-a-directory' | 'loop' };

const MAX_LINKS = 40;

/** Reads one entry's content out of a layer blob (the last entry of that name wins, as extraction does). */
function readFromLayer(file: string, name: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let found: Buffer | undefined;
    const parser = new Parser({ maxDecompressionRatio: Number.MAX_SAFE_INTEGER });
    parser.on('entry', (e: ReadEntry) => {
      let p: string;
      try {
        p = canonicalName(e.path);
      } catch {
        e.resume();
        return;
      }
      if (p !== name) return void e.resume();
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () => (found = Buffer.concat(chunks)));
    });
    parser.on('end', () => (found ? resolve(found) : reject(new Error(`${name} is not in the layer`))));
    parser.on('error', reject);
    const s = createReadStream(file);
    s.on('error', reject);
    s.pipe(parser as unknown as NodeJS.WritableStream);
  });
}

export class ImageTree {
  readonly root: TreeNode = { kind: 'dir', children: new Map() };

  /** The node at `path` without following any symlink (undefined when a component is missing or not a directory). */
  lookup(path: string): TreeNode | undefined {
    let node = this.root;
    for (const part of split(path)) {
      const next = node.children?.get(part);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  /**
   * Resolves `path` inside the tree. Every symlink among the parents is followed; the last component's only when
   * `followLast` is set. Missing components are kept as written, so the result says where a new entry would go.
   */
  resolve(path: string, followLast: boolean): Resolved {
    let pending = split(path);
    const done: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const [part, ...rest] = pending;
      pending = rest;
      if (part === '..') {
        done.pop();
        continue;
      }
      const dir = this.lookup(done.join('/'));
      if (dir && dir.kind !== 'dir') return { ok: false, at: done.join('/'), why: 'not-a-directory' };
      const node = dir?.children?.get(part);
      if (node?.kind === 'symlink' && (pending.length > 0 || followLast)) {
        if (++hops > MAX_LINKS) return { ok: false, at: [...done, part].join('/'), why: 'loop' };
        const t = node.target ?? '';
        if (t.startsWith('/')) done.length = 0;
        pending = [...split(t), ...pending];
        continue;
      }
      done.push(part);
    }
    const p = done.join('/');
    const parent = this.lookup(posix.dirname(p) === '.' ? '' : posix.dirname(p));
    if (p !== '' && parent && parent.kind !== 'dir') return { ok: false, at: posix.dirname(p), why: 'not-a-directory' };
    return { ok: true, path: p, node: this.lookup(p) };
  }

  /** A file's content, following symlinks; undefined when there is no such file. */
  async readFile(path: string): Promise<Buffer | undefined> {
    const r = this.resolve(path, true);
    if (!r.ok || r.node?.kind !== 'file' || !r.node.read) return undefined;
    return r.node.read();
  }

  private remove(path: string): void {
    const parent = this.lookup(posix.dirname(path) === '.' ? '' : posix.dirname(path));
    parent?.children?.delete(posix.basename(path));
  }

  /** Puts a node at `path`, making missing parents and replacing what was there (a directory merges). */
  private put(path: string, node: TreeNode): void {
    const parts = split(path);
    if (parts.length === 0) return;
    let dir = this.root;
    for (const part of parts.slice(0, -1)) {
      let next = dir.children!.get(part);
      if (!next || next.kind !== 'dir') {
        next = { kind: 'dir', children: new Map() };
        dir.children!.set(part, next);
      }
      dir = next;
    }
    const name = parts[parts.length - 1];
    const existing = dir.children!.get(name);
    if (node.kind === 'dir' && existing?.kind === 'dir') return;
    dir.children!.set(name, node);
  }

  /** Applies a layer blob (gzip or plain tar), whiteouts before entries, as an extractor does. */
  async applyLayer(file: string): Promise<void> {
    const members: { path: string; node: TreeNode; linkTo?: string }[] = [];
    const whiteouts: string[] = [];
    const opaques: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const parser = new Parser({ maxDecompressionRatio: Number.MAX_SAFE_INTEGER });
      parser.on('entry', (e: ReadEntry) => {
        e.resume();
        let path: string;
        try {
          path = canonicalName(e.path);
          const isFile = e.type === 'File' || e.type === 'OldFile' || e.type === 'ContiguousFile';
          const cls = classifyName(path, isFile);
          if (cls.kind === 'whiteout') return void whiteouts.push(cls.target);
          if (cls.kind === 'opaque') return void opaques.push(cls.dir);
          if (cls.kind !== 'member') return;
          let node: TreeNode | undefined;
          if (e.type === 'Directory') node = { kind: 'dir', children: new Map() };
          else if (e.type === 'SymbolicLink') node = { kind: 'symlink', target: e.linkpath ?? '' };
          else if (isFile) node = { kind: 'file', read: () => readFromLayer(file, path) };
          else if (e.type === 'Link') {
            // The content is the target's, found when the entry is applied (it may come from a lower layer).
            node = { kind: 'file' };
            members.push({ path, node, linkTo: canonicalName(e.linkpath ?? '') });
            return;
          }
          if (!node) return;
          members.push({ path, node });
        } catch {
          // The layer rules refuse such entries when the image is checked; the model only skips them.
        }
      });
      parser.on('end', () => resolve());
      parser.on('error', reject);
      const s = createReadStream(file);
      s.on('error', reject);
      s.pipe(parser as unknown as NodeJS.WritableStream);
    });
    for (const dir of opaques) this.lookup(dir)?.children?.clear();
    for (const w of whiteouts) this.remove(w);
    for (const { path, node, linkTo } of members) {
      if (linkTo !== undefined) node.read = this.lookup(linkTo)?.read;
      this.put(path, node);
    }
  }

  /** Applies the entries of a layer this build is about to write (COPY, ADD). */
  applyEntries(entries: LayerEntry[], read?: (e: LayerEntry) => (() => Promise<Buffer>) | undefined): void {
    for (const e of entries) {
      if (e.type === 'dir') this.put(e.path, { kind: 'dir', children: new Map() });
      else if (e.type === 'symlink') this.put(e.path, { kind: 'symlink', target: e.linkname });
      else this.put(e.path, { kind: 'file', read: read?.(e) });
    }
  }
}

function split(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}
