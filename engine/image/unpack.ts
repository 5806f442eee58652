/**
 * Applies checked layers to a directory on this machine, the way a host assembles its rootfs: each layer's
 * removals first (whiteouts and replaced entries, as the layer check computed them), then its entries. Used by the
 * builder for the working copy that RUN steps see.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { extract } from 'tar';
import type { Digest } from '../kernel/digest.js';
import { scanLayer } from './layer-check.js';
import { canonicalName, classifyName, LayerTree, type LayerStep } from './layer-tree.js';
import type { ImageStore } from './store.js';

/** Only rootfs entries are extracted: whiteouts and aufs bookkeeping were turned into removals by the check. */
function isRootfsEntry(path: string, type: string | undefined): boolean {
  try {
    return classifyName(canonicalName(path), type === 'File' || type === 'OldFile' || type === 'ContiguousFile').kind === 'member';
  } catch {
    return false;
  }
}

/** `only`: extract just the entries it accepts (a partial rootfs, for reading a few files). */
export async function applyStep(store: ImageStore, step: LayerStep, dir: string, only?: (path: string, type: string) => boolean): Promise<void> {
  // Checked names: canonical, relative, and every parent a real directory, so join() cannot leave `dir`.
  for (const p of step.remove) await fs.rm(join(dir, p), { recursive: true, force: true });
  await extract({
    file: store.blobPath(step.digest),
    cwd: dir,
    preserveOwner: false,
    // The check already refused every name and link that leaves `dir`; left to itself the tar package would also
    // rewrite absolute symlink targets (`/run/x` -> `run/x`), which a rootfs must keep as they are.
    preservePaths: true,
    // Modes exactly as the layer says, as a host's tar -p gives them, whatever this process's umask is.
    chmod: true,
    umask: 0,
    // Directories the layer does not list itself, as tar makes them under the usual umask.
    dmode: 0o755,
    strict: true,
    maxDecompressionRatio: Number.MAX_SAFE_INTEGER,
    filter: (path, entry) => {
      const type = (entry as { type?: string }).type;
      return isRootfsEntry(path, type) && (!only || only(canonicalName(path), type ?? ''));
    },
  });
  for (const p of step.setid) {
    const st = await fs.lstat(join(dir, p)).catch(() => undefined);
    if (st?.isFile()) await fs.chmod(join(dir, p), st.mode & 0o1777);
  }
}

/** A directory built up layer by layer, each layer checked against the ones below before it is applied. */
export class WorkingRootfs {
  private readonly tree = new LayerTree();

  constructor(
    private readonly store: ImageStore,
    readonly dir: string,
    private readonly allowSetid = false,
  ) {}

  async apply(layer: Digest): Promise<void> {
    await applyStep(this.store, await this.check(layer), this.dir);
  }

  /** A layer made from this directory's own changes (a RUN step): the model learns it, nothing is extracted. */
  async record(layer: Digest): Promise<void> {
    await this.check(layer);
  }

  private async check(layer: Digest): Promise<LayerStep> {
    const scanned = await scanLayer(this.store.blobPath(layer), layer, this.tree.layers + 1);
    return this.tree.apply(scanned, { allowSetid: this.allowSetid });
  }
}
