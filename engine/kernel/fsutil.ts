/** The one atomic file writer: temp file in the same directory, fsync, rename, fsync the directory. */
import { promises as fs, constants } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

export async function fsyncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await fs.open(dir, constants.O_RDONLY);
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

/** A complete, synced copy of `data` in a fresh temp file next to `path`, with `mode`; the caller puts it in place. */
async function writeSyncedTemp(path: string, data: string | Uint8Array, mode: number): Promise<string> {
  await fs.mkdir(dirname(path), { recursive: true });
  const tmp = tempSibling(path);
  const fh = await fs.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await fs.chmod(tmp, mode);
  return tmp;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await writeFilesAtomic([{ path, data, mode }]);
}

/**
 * Files put in place each as writeFileAtomic puts one, with their temps written and synced at once (two copies of
 * a large state cost about as much as one on a disk with a queue), then renamed in the order given: a crash leaves
 * every earlier file of the list new and every later one old, never the other way round.
 */
export async function writeFilesAtomic(files: { path: string; data: string | Uint8Array; mode?: number }[]): Promise<void> {
  const written = await Promise.allSettled(files.map((f) => writeSyncedTemp(f.path, f.data, f.mode ?? 0o644)));
  const temps = written.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
  let renamed = 0;
  try {
    const failed = written.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    // Each rename is made durable before the next: only then does the order hold on every filesystem.
    for (; renamed < files.length; renamed++) {
      await fs.rename(temps[renamed]!, files[renamed].path);
      await fsyncDir(dirname(files[renamed].path));
    }
  } catch (err) {
    await Promise.all(temps.slice(renamed).map((t) => t && fs.rm(t, { force: true })));
    throw err;
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates `path` with `data` only if nothing is there yet, complete or not at all: the content is written and synced
 * in a temp file first and then linked into place (link(2) fails when the name exists). Returns false when another
 * writer was first; its file is left untouched.
 */
export async function createFileExclusive(path: string, data: string | Uint8Array, mode = 0o600): Promise<boolean> {
  const tmp = await writeSyncedTemp(path, data, mode);
  try {
    await fs.link(tmp, path);
  } catch (err: any) {
    if (err?.code === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
  await fsyncDir(dirname(path));
  return true;
}
