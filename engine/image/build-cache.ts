/**
 * Build cache: one small JSON record per step key under `$CI_HOME/cache/build`. A key covers the parent chain,
 * the instruction after expansion, build args and env in effect, and for COPY the content of its sources.
 * A record is only trusted while the layer blob it names is still in the store.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { digestHex, type Digest } from '../kernel/digest.js';
import { writeFileAtomic } from '../kernel/fsutil.js';
import type { ImageStore } from './store.js';

export interface CachedStep {
  /** Absent when the step changed no files (an empty RUN): no layer. */
  layer?: { digest: Digest; diffId: Digest; size: number };
}

export class BuildCache {
  private readonly dir: string;
  constructor(private readonly store: ImageStore) {
    this.dir = join(store.home, 'cache', 'build');
  }

  async get(key: Digest): Promise<CachedStep | undefined> {
    let rec: CachedStep;
    try {
      rec = JSON.parse(await fs.readFile(join(this.dir, digestHex(key) + '.json'), 'utf8')) as CachedStep;
    } catch {
      return undefined;
    }
    if (rec.layer && !(await this.store.hasBlob(rec.layer.digest))) return undefined;
    return rec;
  }

  async put(key: Digest, rec: CachedStep): Promise<void> {
    await writeFileAtomic(join(this.dir, digestHex(key) + '.json'), JSON.stringify(rec));
  }
}
