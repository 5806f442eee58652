/**
 * The Debian bookworm tree that systemd hosts boot from. Built once per machine with debootstrap (about a
 * minute) and shared read-only as the lower layer of every host's overlay.
 */
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import { exists } from '../../engine/kernel/fsutil.js';
import { mustRun } from './run.js';

export const ROOTFS_SUITE = 'bookworm';
export const ROOTFS_PACKAGES = ['systemd', 'systemd-sysv', 'dbus', 'openssh-server', 'iproute2', 'sudo', 'procps'];
const MIRROR = process.env.CI_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const MARKER = '.cloudimage-rootfs.json';

export function rootfsCacheDir(): string {
  return process.env.CI_ROOTFS_CACHE ?? `/var/cache/cloudimage/rootfs-${ROOTFS_SUITE}`;
}

/** Returns the cache path, building it first if needed. Concurrent callers wait for one builder. */
export async function ensureRootfs(cache = rootfsCacheDir()): Promise<string> {
  if (await exists(join(cache, MARKER))) return cache;
  await fs.mkdir(dirname(cache), { recursive: true });
  const release = await lockfile.lock(dirname(cache), {
    lockfilePath: `${cache}.lock`,
    realpath: false,
    stale: 30 * 60_000,
    update: 10_000,
    retries: { retries: 400, minTimeout: 1000, maxTimeout: 2000 },
  });
  try {
    if (await exists(join(cache, MARKER))) return cache;
    const partial = `${cache}.partial`;
    await fs.rm(partial, { recursive: true, force: true });
    await mustRun(
      'debootstrap',
      ['--variant=minbase', `--include=${ROOTFS_PACKAGES.join(',')}`, ROOTFS_SUITE, partial, MIRROR],
      { timeoutMs: 20 * 60_000, what: 'building the systemd host root filesystem' },
    );
    await prepareRootfs(partial);
    await fs.rm(cache, { recursive: true, force: true });
    await fs.rename(partial, cache);
  } finally {
    await release();
  }
  return cache;
}

/** Removes identity shared by every copy (host keys, machine id); each host gets its own in its upper layer. */
export async function prepareRootfs(root: string): Promise<void> {
  const sshDir = join(root, 'etc/ssh');
  for (const f of await fs.readdir(sshDir)) {
    if (f.startsWith('ssh_host_')) await fs.rm(join(sshDir, f), { force: true });
  }
  await fs.mkdir(join(sshDir, 'sshd_config.d'), { recursive: true });
  await fs.writeFile(join(sshDir, 'sshd_config.d/cloudimage-lab.conf'), 'HostKey /etc/ssh/ssh_host_ed25519_key\n');
  await fs.writeFile(join(root, 'etc/machine-id'), '');
  await fs.writeFile(
    join(root, MARKER),
    JSON.stringify({ suite: ROOTFS_SUITE, packages: ROOTFS_PACKAGES, mirror: MIRROR, createdAt: new Date().toISOString() }) + '\n',
  );
}
