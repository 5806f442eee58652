/** SSH key pairs made with the system's ssh-keygen: host keys of local hosts, the relay's key, a cluster's login key. */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import { CiError } from '../../engine/kernel/errors.js';
import { exists } from '../../engine/kernel/fsutil.js';

const run = promisify(execFile);

/** Creates an unencrypted ed25519 key pair at `path` (+ .pub) unless one is there; returns the public line. */
export async function ensureEd25519Key(path: string, comment: string): Promise<string> {
  if (!(await exists(path)) || !(await exists(`${path}.pub`))) {
    await fs.rm(path, { force: true });
    await fs.rm(`${path}.pub`, { force: true });
    try {
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path], { timeout: 60_000 });
    } catch (err: any) {
      throw new CiError('SSH_KEYGEN_FAILED', `cannot make an SSH key at ${path}: ${(err?.stderr || err?.message || String(err)).trim()}`, {
        source: 'external',
        hint: err?.code === 'ENOENT' ? 'install ssh-keygen (Debian: openssh-client)' : undefined,
      });
    }
  }
  await fs.chmod(path, 0o600);
  return (await fs.readFile(`${path}.pub`, 'utf8')).trim();
}
