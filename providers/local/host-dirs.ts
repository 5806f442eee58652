/** Files that give each host its own identity, written into the host's writable layer before it starts. */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fingerprintOfPublicKeyLine } from '../ssh/fingerprint.js';
import { ensureEd25519Key } from '../ssh/keys.js';

export type HostKind = 'light' | 'systemd';

/** Directories a light host sees through its own overlay (lower = the machine's own directory). */
export const LIGHT_OVERLAY_DIRS = ['etc', 'var', 'opt', 'usr', 'srv'];

export interface HostPaths {
  dir: string;
  upper: string;
  work: string;
  /** Where /root lives: its own bind-mounted dir for light hosts, inside the overlay for systemd hosts. */
  rootHome: string;
  merged: string;
  log: string;
}

export function hostPaths(hostDir: string, kind: HostKind): HostPaths {
  const upper = join(hostDir, 'upper');
  return {
    dir: hostDir,
    upper,
    work: join(hostDir, 'work'),
    rootHome: kind === 'light' ? join(hostDir, 'root') : join(upper, 'root'),
    merged: join(hostDir, 'merged'),
    log: join(hostDir, 'host.log'),
  };
}

/** Creates the layer directories and identity files; returns the host key fingerprint. Idempotent. */
export async function seedHost(p: HostPaths, kind: HostKind, hostname: string, operatorPublicKey: string): Promise<string> {
  if (kind === 'light') {
    for (const d of LIGHT_OVERLAY_DIRS) {
      await fs.mkdir(join(p.upper, d), { recursive: true });
      await fs.mkdir(join(p.work, d), { recursive: true });
    }
    await fs.mkdir(join(p.dir, 'home'), { recursive: true });
  } else {
    await fs.mkdir(p.upper, { recursive: true });
    await fs.mkdir(p.work, { recursive: true });
    await fs.mkdir(p.merged, { recursive: true });
    const machineId = join(p.upper, 'etc/machine-id');
    await fs.mkdir(join(p.upper, 'etc'), { recursive: true });
    await fs.writeFile(machineId, randomBytes(16).toString('hex') + '\n', { flag: 'wx' }).catch(() => undefined);
  }
  const etc = join(p.upper, 'etc');
  await fs.mkdir(join(etc, 'ssh'), { recursive: true });
  await fs.writeFile(join(etc, 'hostname'), hostname + '\n');
  await fs.writeFile(
    join(etc, 'hosts'),
    `127.0.0.1\tlocalhost\n127.0.1.1\t${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  );
  const pub = await ensureEd25519Key(join(etc, 'ssh/ssh_host_ed25519_key'), `root@${hostname}`);
  await fs.mkdir(join(p.rootHome, '.ssh'), { recursive: true, mode: 0o700 });
  await fs.chmod(p.rootHome, 0o700);
  await fs.chmod(join(p.rootHome, '.ssh'), 0o700);
  await fs.writeFile(join(p.rootHome, '.ssh/authorized_keys'), operatorPublicKey + '\n', { mode: 0o600 });
  // Light hosts share the machine's shell startup files otherwise; keep logins quiet and predictable.
  for (const f of ['.bashrc', '.profile']) await fs.writeFile(join(p.rootHome, f), '', { flag: 'a' });
  return fingerprintOfPublicKeyLine(pub);
}
