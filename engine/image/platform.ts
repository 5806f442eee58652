/**
 * Image platforms (`os/arch[/variant]`) in OCI's names, this machine's platform, and the build arguments a
 * platform predefines (docker's TARGET* and BUILD* arguments, and sealer's ARCH).
 */
import { UsageError } from '../kernel/errors.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Node's process.arch to the GOARCH names OCI uses. */
const OCI_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le', // Node runs on little-endian POWER only
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

/** What `docker build` calls the same platform, so `linux/x86_64` or `linux/aarch64` mean what a user expects. */
const ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', i386: '386' };

/** This machine's platform; images are Linux images wherever they are built. */
export function hostPlatform(): Platform {
  const architecture = OCI_ARCH[process.arch] ?? process.arch;
  if (architecture === 'arm') {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    return { os: 'linux', architecture, variant: `v${typeof v === 'string' || typeof v === 'number' ? v : 7}` };
  }
  return { os: 'linux', architecture };
}

export function parsePlatform(text: string, flag = '--platform'): Platform {
  const parts = text.trim().toLowerCase().split('/');
  const ok = parts.length >= 2 && parts.length <= 3 && parts.every((p) => /^[a-z0-9_.-]+$/.test(p));
  if (!ok) throw new UsageError(`${flag} "${text}" is not os/arch[/variant]`, `e.g. ${flag} linux/amd64 or ${flag} linux/arm64/v8`);
  const [os, arch, variant] = parts;
  const architecture = ALIASES[arch] ?? arch;
  // arm64's only variant is v8, and docker leaves it out: linux/arm64/v8 and linux/arm64 are the same platform.
  const v = architecture === 'arm64' && variant === 'v8' ? undefined : variant;
  return v ? { os, architecture, variant: v } : { os, architecture };
}

export function formatPlatform(p: { os: string; architecture: string; variant?: string }): string {
  return [p.os, p.architecture, ...(p.variant ? [p.variant] : [])].join('/');
}

/** Whether an image of platform `have` runs where `want` is asked for; a missing variant matches any. */
export function platformMatches(have: { os?: string; architecture?: string; variant?: string }, want: Platform): boolean {
  const variant = (p: { architecture?: string; variant?: string }) => (p.architecture === 'arm64' && p.variant === 'v8' ? undefined : p.variant);
  if ((have.os ?? want.os) !== want.os || (have.architecture ?? want.architecture) !== want.architecture) return false;
  const a = variant(have);
  const b = variant(want);
  return !a || !b || a === b;
}

/** Build arguments set by the target platform, read by sealer Kubefiles (ARCH) and Dockerfiles (TARGET*). */
export const TARGET_ARGS = ['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'] as const;
export const BUILD_PLATFORM_ARGS = ['BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT'] as const;

export function platformArgs(target: Platform, build: Platform = hostPlatform()): Record<string, string> {
  return {
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? '',
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? '',
    ARCH: target.architecture,
  };
}
