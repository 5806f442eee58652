import { CiError } from '../../engine/kernel/errors.js';

/** A local test host could not be created, reached or removed. */
export class LocalHostError extends CiError {
  constructor(message: string, opts: { hint?: string; cause?: unknown; code?: string } = {}) {
    super(opts.code ?? 'LOCAL_HOST_FAILED', message, { source: 'external', hint: opts.hint, cause: opts.cause });
  }
}

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() === 0) return;
  throw new LocalHostError(`${what} needs root (network namespaces, mounts and veth links), but this process runs as uid ${process.getuid?.() ?? '?'}`, {
    code: 'LOCAL_NOT_ROOT',
    hint: 'run `ci` as root (for example with sudo) to use provider LOCAL, or use provider BAREMETAL with real hosts',
  });
}
