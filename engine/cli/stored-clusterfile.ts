/**
 * Where `ci run` keeps the Clusterfile it writes, and how `ci run`, `ci join` and `ci delete` put a new text in
 * place: only once its plan is made and approved (as Terraform keeps a configuration apart from what ran), so a
 * refused, cancelled or invalid change leaves the file as it was.
 */
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { ciHome } from '../kernel/home.js';
import { ClusterfileError, UsageError } from '../kernel/errors.js';
import { writeFileAtomic } from '../kernel/fsutil.js';
import { NAME_RE } from '../clusterfile/rules.js';

export const DEFAULT_CLUSTER = 'my-cluster';

/** `$CI_HOME/clusters/<name>/Clusterfile`, beside the cluster's state. */
export function storedClusterfilePath(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new UsageError(`--name "${name}" is not a valid cluster name`, 'use lower-case letters, digits and "-" (at most 63), e.g. my-cluster');
  }
  return join(ciHome(), 'clusters', name, 'Clusterfile');
}

/** A new file: mode 0600 in a 0700 directory, as it may hold an SSH password. A file that exists keeps its mode. */
export async function writeClusterfileText(path: string, text: string): Promise<void> {
  await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const mode = await fs.stat(path).then((s) => s.mode & 0o777, () => 0o600);
  await writeFileAtomic(path, text, mode);
}

export async function readClusterfileText(path: string, name: string | undefined): Promise<string> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err: any) {
    if (err?.code !== 'ENOENT') throw err;
    throw new UsageError(
      name ? `cluster ${name} has no Clusterfile at ${path}` : `no Clusterfile at ${path}`,
      name ? `make the cluster with \`ci run IMAGE --name ${name} -m IPS\`, or give its Clusterfile with -f` : 'pass the right path with -f',
    );
  }
}

export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err: any) {
    if (err?.code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Puts `next` in place of `read` (undefined: no file), under the state lock the apply holds by then. Another
 * `ci join` or `ci delete` that changed the file meanwhile (while this one waited for the lock) is not overwritten.
 */
export async function replaceClusterfileText(path: string, read: string | undefined, next: string): Promise<void> {
  if ((await readIfExists(path)) !== read) {
    throw new ClusterfileError({ file: path }, 'the Clusterfile changed while this command waited: nothing was applied', 'run the command again, on the file as it is now');
  }
  if (next !== read) await writeClusterfileText(path, next);
}
