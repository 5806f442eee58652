/** Files that give each host its own identity, written into the host's writable layer before it starts. */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { exists, writeFileAtomic } from '../../engine/kernel/fsutil.js';
import { fingerprintOfPublicKeyLine } from '../ssh/fingerprint.js';
import { LocalHostError } from './errors.js';
import { ensureEd25519Key } from '../ssh/keys.js';

/** What a local host is: a light host (namespaces, an overlay of this machine's root, an sshd) or a systemd container. */
export const HOST_KINDS = ['light', 'systemd'] as const;
export type HostKind = (typeof HOST_KINDS)[number];

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

/** Who may log in as root besides the lab's own key. */
export interface RootAccess {
  /** Public key lines (OpenSSH format) accepted for root. */
  authorizedKeys?: string[];
  /**
   * crypt(3) hash of a password root may log in with over SSH. Without it, root logs in with keys only and the
   * host's /etc/shadow is left as it is.
   */
  rootPasswordHash?: string;
}

/** Drop-in read by the sshd of systemd hosts (Debian's sshd_config includes sshd_config.d first). */
const ROOT_PASSWORD_DROP_IN = 'etc/ssh/sshd_config.d/cloudimage-root-password.conf';

/**
 * Creates the layer directories and identity files; returns the host key fingerprint. Idempotent.
 * `lowerEtc` is the /etc the host's overlay starts from (the machine's, or the systemd root filesystem's).
 */
export async function seedHost(
  p: HostPaths,
  kind: HostKind,
  hostname: string,
  operatorPublicKey: string,
  access: RootAccess = {},
  lowerEtc = '/etc',
): Promise<string> {
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
  const keys = [operatorPublicKey, ...(access.authorizedKeys ?? []).map((k) => k.trim()).filter(Boolean)];
  await fs.writeFile(join(p.rootHome, '.ssh/authorized_keys'), keys.join('\n') + '\n', { mode: 0o600 });
  if (access.rootPasswordHash !== undefined) await seedRootPassword(p, access.rootPasswordHash, lowerEtc);
  if (kind === 'systemd') {
    const dropIn = join(p.upper, ROOT_PASSWORD_DROP_IN);
    if (access.rootPasswordHash !== undefined) {
      await fs.mkdir(dirname(dropIn), { recursive: true });
      await fs.writeFile(dropIn, 'PermitRootLogin yes\n');
    } else {
      await fs.rm(dropIn, { force: true });
    }
  }
  // Light hosts share the machine's shell startup files otherwise; keep logins quiet and predictable.
  for (const f of ['.bashrc', '.profile']) await fs.writeFile(join(p.rootHome, f), '', { flag: 'a' });
  return fingerprintOfPublicKeyLine(pub);
}

/**
 * Sets root's password hash in the host's own /etc/shadow (its upper layer): the host's current copy if it has one,
 * else a copy of the lower one, with the lower file's owner and mode. Other entries are kept as they are.
 */
async function seedRootPassword(p: HostPaths, hash: string, lowerEtc: string): Promise<void> {
  if (!/^\$[0-9a-z]+\$[^:\n]+$/.test(hash)) throw new LocalHostError('the root password hash is not a crypt(3) hash');
  const lower = join(lowerEtc, 'shadow');
  const upper = join(p.upper, 'etc/shadow');
  const from = (await exists(upper)) ? upper : lower;
  const st = await fs.stat(from);
  const lines = (await fs.readFile(from, 'utf8')).replace(/\n+$/, '').split('\n');
  const fields = (l: string) => l.split(':');
  const i = lines.findIndex((l) => fields(l)[0] === 'root');
  const days = String(Math.floor(Date.now() / 86_400_000));
  if (i >= 0) {
    const f = fields(lines[i]);
    f[1] = hash;
    f[2] = days;
    lines[i] = f.join(':');
  } else {
    lines.unshift(`root:${hash}:${days}:0:99999:7:::`);
  }
  await writeFileAtomic(upper, lines.join('\n') + '\n', st.mode & 0o777);
  await fs.chown(upper, st.uid, st.gid);
}
