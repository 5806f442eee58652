/**
 * Where cloudimage keeps things on a host, and the shell it runs there to assemble a rootfs. Layers live in one
 * content-addressed store per host (shared by clusters); each cluster has its own rootfs and outputs.
 */
import { digestHex, type Digest } from '../digest.js';
import { shellQuote } from '../../providers/ssh/shell.js';

export const REMOTE_BASE = '/var/lib/cloudimage';

export function remoteLayerPath(d: Digest): string {
  return `${REMOTE_BASE}/layers/${digestHex(d)}.tar.gz`;
}

export function remoteClusterDir(cluster: string): string {
  return `${REMOTE_BASE}/clusters/${cluster}`;
}

export function remoteRootfs(cluster: string): string {
  return `${remoteClusterDir(cluster)}/rootfs`;
}

export function remoteOutputFile(cluster: string, hook: string): string {
  return `${remoteClusterDir(cluster)}/outputs/${hook}.env`;
}

/** Prints the digests (hex) of the given layers that the host already holds. */
export function listHeldLayersScript(layers: Digest[]): string {
  const paths = layers.map((d) => shellQuote(remoteLayerPath(d))).join(' ');
  return `for f in ${paths}; do [ -f "$f" ] && basename "$f" .tar.gz; done; true`;
}

/**
 * Builds the rootfs for an image from the host's layer store into a fresh directory, applying OCI whiteouts,
 * then swaps it in with renames so a half-built rootfs is never the current one.
 */
export function unpackScript(cluster: string, layers: Digest[]): string {
  const root = remoteRootfs(cluster);
  const files = layers.map((d) => shellQuote(remoteLayerPath(d))).join(' ');
  return [
    'set -eu',
    `root=${shellQuote(root)}`,
    'new="$root.new"; old="$root.old"',
    'rm -rf "$new" "$old"; mkdir -p "$new"',
    `for f in ${files}; do`,
    '  [ -f "$f" ] || { echo "layer $f is missing on this host" >&2; exit 3; }',
    "  tar -tzf \"$f\" | grep -E '(^|/)\\.wh\\.' | while IFS= read -r p; do",
    '    d=$(dirname "$p"); b=$(basename "$p"); t=${b#.wh.}',
    '    case "$t" in',
    '      .wh..opq) [ -d "$new/$d" ] && find "$new/$d" -mindepth 1 -maxdepth 1 -exec rm -rf {} + ;;',
    '      *) rm -rf "$new/$d/$t" ;;',
    '    esac',
    '  done',
    "  tar -xzf \"$f\" -C \"$new\" --no-same-owner --exclude='.wh.*'",
    'done',
    '[ -d "$root" ] && mv "$root" "$old"',
    'mv "$new" "$root"',
    'rm -rf "$old"',
  ].join('\n');
}

/** Runs a hook if the image has it; exit 0 with a marker line when it does not. Outputs are for root's eyes only. */
export function hookScript(cluster: string, hook: string): string {
  const out = remoteOutputFile(cluster, hook);
  const dir = `${remoteClusterDir(cluster)}/outputs`;
  return [
    `cd ${shellQuote(remoteRootfs(cluster))}`,
    `mkdir -p ${shellQuote(dir)} && chmod 0700 ${shellQuote(dir)}`,
    `(umask 077 && : > ${shellQuote(out)}) && chmod 0600 ${shellQuote(out)}`,
    `export CI_OUTPUT=${shellQuote(out)}`,
    `if [ ! -e hooks/${hook} ]; then echo __ci_no_hook__; exit 0; fi`,
    `if [ -x hooks/${hook} ]; then exec ./hooks/${hook}; else exec sh ./hooks/${hook}; fi`,
  ].join('\n');
}

/** Prints what a hook wrote to CI_OUTPUT and removes the file: from then on the outputs live sealed in the state. */
export function takeOutputsScript(cluster: string, hook: string): string {
  const out = shellQuote(remoteOutputFile(cluster, hook));
  return `if [ -f ${out} ]; then cat ${out}; rm -f ${out}; fi; true`;
}

export function cmdScript(cluster: string, cmd: string): string {
  return `cd ${shellQuote(remoteRootfs(cluster))} && exec sh -c ${shellQuote(cmd)}`;
}

/** Removes this cluster's files; the shared layer store goes too once no other cluster uses the host. */
export function removeFilesScript(cluster: string): string {
  return [
    `rm -rf ${shellQuote(remoteClusterDir(cluster))}`,
    `if [ -z "$(ls -A ${shellQuote(`${REMOTE_BASE}/clusters`)} 2>/dev/null)" ]; then rm -rf ${shellQuote(REMOTE_BASE)}; fi`,
  ].join('\n');
}

/** `KEY=VALUE` lines a hook wrote to CI_OUTPUT. */
export function parseOutputs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}
