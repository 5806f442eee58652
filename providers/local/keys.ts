import { promises as fs } from 'node:fs';
import { exists } from '../../engine/kernel/fsutil.js';
import { mustRun } from './run.js';

/** Creates an unencrypted ed25519 key pair at `path` (+ .pub) unless one is there; returns the public line. */
export async function ensureEd25519Key(path: string, comment: string): Promise<string> {
  if (!(await exists(path)) || !(await exists(`${path}.pub`))) {
    await fs.rm(path, { force: true });
    await fs.rm(`${path}.pub`, { force: true });
    await mustRun('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  }
  await fs.chmod(path, 0o600);
  return (await fs.readFile(`${path}.pub`, 'utf8')).trim();
}
