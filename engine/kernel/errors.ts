/**
 * One error base for the whole product. Every failure a user can meet is a subclass with a stable
 * code and a blame field, classified where it is thrown (never by matching message text later).
 * The CLI is the only place that turns these into exit codes and output.
 */
export type Blame = 'user' | 'external' | 'internal';

export interface Location {
  file: string;
  line?: number;
  column?: number;
}

export function formatLocation(loc: Location): string {
  let s = loc.file;
  if (loc.line !== undefined) s += `:${loc.line}`;
  if (loc.line !== undefined && loc.column !== undefined) s += `:${loc.column}`;
  return s;
}

export class CiError extends Error {
  readonly code: string;
  readonly source: Blame;
  /** What the user can do about it, shown on its own line. */
  readonly hint?: string;
  /** Exit code the CLI uses for this failure. */
  readonly exitCode: number = 1;

  constructor(code: string, message: string, opts: { source?: Blame; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.source = opts.source ?? 'user';
    this.hint = opts.hint;
  }
}

/** Bad user input located in a file: Kubefile, Clusterfile, plan file. */
export class InputError extends CiError {
  readonly location: Location;
  constructor(code: string, location: Location, message: string, hint?: string) {
    super(code, `${formatLocation(location)}: ${message}`, { source: 'user', hint });
    this.location = location;
  }
}

export class KubefileError extends InputError {
  constructor(location: Location, message: string, hint?: string) {
    super('KUBEFILE_INVALID', location, message, hint);
  }
}

/**
 * Several problems found in one Kubefile, reported together as a compiler does. `kubefileErrors` returns the one
 * error itself when there is only one, so a single problem reads exactly as before.
 */
export class KubefileErrors extends CiError {
  readonly errors: InputError[];
  constructor(readonly file: string, errors: InputError[]) {
    super('KUBEFILE_INVALID', `${errors.length} errors in ${file}; nothing was built\n` + errors.map((e) => e.message).join('\n'), { source: 'user' });
    this.errors = errors;
  }
}

export function kubefileErrors(file: string, errors: InputError[]): InputError | KubefileErrors {
  const sorted = [...errors].sort((a, b) => (a.location.line ?? 0) - (b.location.line ?? 0));
  return sorted.length === 1 ? sorted[0] : new KubefileErrors(file, sorted);
}

export class BuildStepError extends InputError {
  readonly output: string;
  readonly exitStatus: number | null;
  constructor(location: Location, instruction: string, exitStatus: number | null, output: string) {
    const tail = output.trimEnd().split('\n').slice(-40).join('\n');
    super(
      'BUILD_RUN_FAILED',
      location,
      `${instruction} failed with exit code ${exitStatus ?? 'signal'}` + (tail ? `\n${tail}` : ''),
    );
    this.output = output;
    this.exitStatus = exitStatus;
  }
}

export class ClusterfileError extends InputError {
  constructor(location: Location, message: string, hint?: string) {
    super('CLUSTERFILE_INVALID', location, message, hint);
  }
}

/** A `*.tmpl` file of an image that cannot be rendered with the cluster's env; located in the image's rootfs. */
export class TemplateError extends InputError {
  constructor(image: string, location: Location, message: string, hint = 'set the key in the Clusterfile\'s spec.env, or fix the template in the image and build it again') {
    super('IMAGE_TEMPLATE_INVALID', location, `in image ${image}: ${message}`, hint);
  }
}

export class ImageNotFoundError extends CiError {
  constructor(ref: string, hint = 'run `ci images` to list what the store holds, or `ci pull` it') {
    super('IMAGE_NOT_FOUND', `image ${ref} is not in the local store`, { hint });
  }
}

/** Removing an image by ID or digest would remove several names at once: done only when forced, as docker does. */
export class ImageInUseError extends CiError {
  readonly names: string[];
  constructor(idOrDigest: string, names: string[]) {
    super('IMAGE_IN_USE', `image ${idOrDigest} has ${names.length} names (${names.join(', ')}); removing it by ID would remove them all`, {
      hint: `remove the names one at a time (\`ci rmi ${names[0]}\`), or all of them with \`ci rmi --force ${idOrDigest}\``,
    });
    this.names = names;
  }
}

export class InvalidReferenceError extends CiError {
  /** What is wrong with it, without the reference itself (for messages that name it their own way). */
  readonly why: string;
  constructor(ref: string, why: string) {
    super('REFERENCE_INVALID', `invalid image reference "${ref}": ${why}`);
    this.why = why;
  }
}

export class DigestMismatchError extends CiError {
  constructor(what: string, expected: string, actual: string) {
    super('DIGEST_MISMATCH', `${what}: expected ${expected} but content hashes to ${actual}`, { source: 'external' });
  }
}

/** The local image store cannot be read, or holds something damaged. Never used for "not in the store". */
export class StoreError extends CiError {
  constructor(
    code: 'STORE_BLOB_MISSING' | 'STORE_UNREADABLE' | 'STORE_DAMAGED' | 'STORE_GC_BLOCKED',
    message: string,
    opts: { hint?: string; cause?: unknown } = {},
  ) {
    super(code, message, { source: 'external', hint: opts.hint, cause: opts.cause });
  }
}

export class StateLockError extends CiError {
  readonly holder: unknown;
  constructor(message: string, holder: unknown, hint?: string) {
    super('STATE_LOCKED', message, { hint });
    this.holder = holder;
  }
}

/** A compare-and-swap write lost: the stored state changed since it was read. Nothing was written. */
export class StateConflictError extends CiError {
  constructor(message: string, hint: string) {
    super('STATE_CONFLICT', message, { hint });
  }
}

export class StateError extends CiError {
  constructor(message: string, hint?: string) {
    super('STATE_INVALID', message, { hint });
  }
}

/**
 * The state does not match the cluster it is used for (another cluster's, another lineage, or missing while the
 * cluster exists). Raised before any plan is made, so nothing on a host is touched.
 */
export class StateIdentityError extends CiError {
  constructor(message: string, hint: string) {
    super('STATE_IDENTITY', message, { hint });
  }
}

/** A host holds files of this cluster that belong to another state (lineage); nothing is done on it. */
export class HostClaimedError extends CiError {
  readonly host: string;
  constructor(host: string, message: string, hint: string) {
    super('HOST_CLAIMED', `${host}: ${message}`, { hint });
    this.host = host;
  }
}

export class StalePlanError extends CiError {
  constructor(message: string, hint = 'run `ci plan` again and review the new plan') {
    super('PLAN_STALE', message, { hint });
  }
}

export class HostUnreachableError extends CiError {
  readonly host: string;
  constructor(host: string, message: string, cause?: unknown) {
    super('HOST_UNREACHABLE', `${host}: ${message}`, { source: 'external', cause });
    this.host = host;
  }
}

export class HostKeyMismatchError extends CiError {
  readonly host: string;
  /** `host` names the login (`user@addr:port`); `address` is the host's address as the state knows it. */
  constructor(host: string, expected: string, actual: string, address = host) {
    super(
      'HOST_KEY_CHANGED',
      `${host}: SSH host key changed (pinned ${expected}, host offered ${actual}); refusing to connect`,
      {
        hint:
          `if ${address} was really rebuilt, remove its pinned key with \`ci state rm-host-key ${address} -f Clusterfile\` ` +
          '(or --state PATH) and run the command again; otherwise someone may be intercepting the connection',
      },
    );
    this.host = host;
  }
}

export class RemoteCommandError extends CiError {
  readonly host: string;
  readonly exitStatus: number | null;
  readonly stderrTail: string;
  constructor(host: string, what: string, exitStatus: number | null, stderrTail: string) {
    super('REMOTE_COMMAND_FAILED', `${host}: ${what} exited with ${exitStatus ?? 'a signal'}` + (stderrTail ? `\n${stderrTail}` : ''), {
      source: 'external',
    });
    this.host = host;
    this.exitStatus = exitStatus;
    this.stderrTail = stderrTail;
  }
}

/** An image's own metadata (its apps, its launch list) is malformed or unsafe: the image is refused, whoever made it. */
export class ImageMetadataError extends CiError {
  constructor(image: string, message: string) {
    super('IMAGE_METADATA_INVALID', `image ${image}: ${message}`, {
      source: 'external',
      hint: 'the image was not made by `ci build` or was altered; nothing was run: rebuild it from its Kubefile',
    });
  }
}

/** A launched app needs a program (kubectl, helm) that master0 does not have; checked before anything of it runs. */
export class AppToolMissingError extends CiError {
  constructor(app: string, host: string, tool: string, by: string) {
    super('APP_TOOL_MISSING', `app ${app} on ${host}: it is launched with ${tool} (${by}), which is not installed on the host (not found on its PATH)`, {
      source: 'user',
      hint: `install ${tool} on ${host} (for instance with an init-host hook), or give the app its own commands with APPCMDS ${app} [...] and rebuild the image`,
    });
  }
}

export class PluginToolMissingError extends CiError {
  constructor(source: string, host: string, tool: string) {
    super('PLUGIN_TOOL_MISSING', `${source} sets Kubernetes node labels and taints with ${tool} on ${host}, which does not have it (not found on its PATH); nothing was changed`, {
      source: 'user',
      hint: `install ${tool} on ${host} (for instance with an init-host hook or a PreInit plugin), or remove the labels and taints from the Clusterfile`,
    });
  }
}

export class RegistryError extends CiError {
  readonly status?: number;
  constructor(code: string, message: string, opts: { status?: number; hint?: string; source?: Blame; cause?: unknown } = {}) {
    super(code, message, { source: opts.source ?? 'external', hint: opts.hint, cause: opts.cause });
    this.status = opts.status;
  }
}

export class AbortError extends CiError {
  constructor(message = 'cancelled') {
    super('ABORTED', message);
  }
}

/** The command line itself is wrong: a bad flag value, a missing or contradictory argument. */
export class UsageError extends CiError {
  override readonly exitCode = 64; // EX_USAGE, like commander's own usage errors
  constructor(message: string, hint?: string) {
    super('USAGE', message, { hint });
  }
}

/** A bug in cloudimage, found by a check of its own. */
export class InternalError extends CiError {
  override readonly exitCode = 70; // EX_SOFTWARE, like an unexpected exception
  constructor(message: string, cause?: unknown) {
    super('INTERNAL', message, { source: 'internal', cause });
  }
}

/** Errors that a retry may cure: connection resets, timeouts, throttling. Set where thrown. */
export class TransientError extends CiError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { source: 'external', cause });
  }
}
