/**
 * Starting host processes detached, so they keep running after the creating process exits. The recorded
 * PID is the process that owns the host's namespaces: killing it takes everything of the host with it.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { LocalHostError } from './errors.js';
import { LIGHT_OVERLAY_DIRS, type HostPaths } from './host-dirs.js';
import { procRef, type ProcRef } from './procs.js';

// Runs as PID 1 of the host's own PID namespace, inside its own mount and UTS namespaces. Mount sources are
// relative to the host's directory, entered first: the lab may live under /root or /home (the default
// ~/.cloudimage as root), and binding the host's own /root or /home over it hides the absolute path. mount -c
// keeps the relative sources as they are (canonicalising would turn them back into the hidden path).
const LIGHT_INIT = `set -e
cd "$1"
for d in ${LIGHT_OVERLAY_DIRS.join(' ')}; do
  [ -d "/$d" ] || continue
  mount -c -t overlay "ci-$d" -o "lowerdir=/$d,upperdir=upper/$d,workdir=work/$d" "/$d"
done
mount -c --bind root /root
mount -c --bind home /home
mount -t tmpfs -o mode=0755 ci-run /run
mkdir -p /run/sshd
mount -t tmpfs -o mode=1777 ci-tmp /tmp
# Hosts never see the lab (its key and the other hosts' layers) where the mounts above left it visible.
if [ -e "$4/lab.json" ]; then mount -t tmpfs -o mode=0700,size=64k ci-lab "$4"; fi
cd /
hostname "$2"
exec /usr/sbin/sshd -D -e -h /etc/ssh/ssh_host_ed25519_key -o ListenAddress="$3" -o UsePAM=no \\
  -o PasswordAuthentication=yes -o PermitRootLogin="$5" -o MaxStartups=100:30:200 \\
  -o MaxSessions=50 -o PidFile=none
`;

// The overlay lives in a private mount namespace so it disappears with the container, even after a crash.
const SYSTEMD_INIT = `set -e
mount -t overlay ci-root -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged"
exec systemd-nspawn -q -D "$2/merged" -b --register=no --keep-unit --network-namespace-path="/run/netns/$3" \\
  -M "$4" --hostname="$5" --console=pipe
`;

function startDetached(cmd: string, args: string[], log: string): ProcRef {
  const fd = openSync(log, 'a');
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', () => undefined);
    child.unref();
    const ref = child.pid !== undefined ? procRef(child.pid) : undefined;
    if (!ref) throw new LocalHostError(`could not start \`${cmd} ${args.slice(0, 4).join(' ')} ...\` (see ${log})`);
    return ref;
  } finally {
    closeSync(fd);
  }
}

/** `rootPassword`: root may log in with the password set in the host's /etc/shadow, not only with keys. */
export function startLightHost(p: HostPaths, labDir: string, netns: string, hostname: string, ip: string, rootPassword = false): ProcRef {
  return startDetached(
    'ip',
    ['netns', 'exec', netns, 'unshare', '--mount', '--uts', '--pid', '--fork', '--kill-child', '--mount-proc',
      '--propagation', 'private', 'sh', '-c', LIGHT_INIT, 'ci-light-host', p.dir, hostname, ip, labDir,
      rootPassword ? 'yes' : 'prohibit-password'],
    p.log,
  );
}

export function startSystemdHost(p: HostPaths, rootfs: string, netns: string, machine: string, hostname: string): ProcRef {
  return startDetached(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', SYSTEMD_INIT, 'ci-systemd-host', rootfs, p.dir, netns, machine, hostname],
    p.log,
  );
}
