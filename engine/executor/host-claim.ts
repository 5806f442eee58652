/**
 * Which state owns a host. The first contact of an apply writes the state's lineage into the cluster's own
 * directory on the host (`.../clusters/<cluster>/lineage`); every contact checks it before anything else runs
 * there. So a lost, replaced or foreign state can never run a hook on, or remove the files of, hosts that
 * belong to another state of the same cluster name. Nothing outside the cluster's directory is read or written.
 */
import { HostClaimedError } from '../kernel/errors.js';
import { shellQuote } from '../../providers/ssh/shell.js';
import type { HostState } from '../../state/model.js';
import { remoteClusterDir, remoteLineageFile } from './remote-layout.js';

/** What a host holds of one cluster. */
export type HostMark =
  | { kind: 'none' }
  /** The cluster's directory, made before hosts were marked, or by a state that was lost before it marked it. */
  | { kind: 'unmarked' }
  | { kind: 'marked'; lineage: string };

const TAG = '__ci_mark__';

/** How much of the lineage file is read: a lineage is a UUID; anything longer is not this engine's. */
export const MARK_BYTES = 200;

/**
 * The mark from what the host showed: the head of its lineage file (read only when it is a regular file), else
 * whether the cluster's directory exists. The same judgement markScript makes on the host, for an answer that
 * carries the file itself (the refresh reads it with the other records in one `head`).
 */
export function markOf(lineageHead: string | undefined, dirExists: boolean): HostMark {
  if (lineageHead !== undefined) return { kind: 'marked', lineage: headText(lineageHead, MARK_BYTES) };
  return dirExists ? { kind: 'unmarked' } : { kind: 'none' };
}

/** The first `bytes` bytes of a record file, its newlines dropped: what `head -c N | tr -d '\n'` prints. */
export function headText(content: string, bytes: number): string {
  const buf = Buffer.from(content, 'utf8');
  return (buf.length > bytes ? buf.subarray(0, bytes).toString('utf8') : content).replace(/\n/g, '');
}

/**
 * One round trip: optionally claims the host (when it holds nothing of the cluster, or holds an unmarked directory
 * and `adopt` is set), then reports the mark as it now is. The marker is created with noclobber, so of two states
 * claiming the same host at once, one wins and the other sees the winner's lineage.
 */
export function markScript(cluster: string, claim?: { lineage: string; adopt: boolean }): string {
  const lines = [`d=${shellQuote(remoteClusterDir(cluster))}`, `m=${shellQuote(remoteLineageFile(cluster))}`];
  if (claim) {
    lines.push(
      `if [ ! -e "$d" ] || { [ ! -f "$m" ] && [ ${claim.adopt ? 1 : 0} = 1 ]; }; then`,
      `  mkdir -p "$d" && (set -C; printf '%s\\n' ${shellQuote(claim.lineage)} > "$m") 2>/dev/null || true`,
      'fi',
    );
  }
  lines.push(
    `if [ -f "$m" ]; then printf '${TAG} marked %s\\n' "$(head -c ${MARK_BYTES} "$m" | tr -d '\\n')"`,
    `elif [ -e "$d" ]; then echo '${TAG} unmarked'`,
    `else echo '${TAG} none'; fi`,
  );
  return lines.join('\n');
}

export function parseMark(stdout: string): HostMark | undefined {
  const line = stdout.split('\n').find((l) => l.startsWith(`${TAG} `));
  if (!line) return undefined;
  const [, kind, ...rest] = line.split(' ');
  if (kind === 'none') return { kind: 'none' };
  if (kind === 'unmarked') return { kind: 'unmarked' };
  if (kind === 'marked') return { kind: 'marked', lineage: rest.join(' ') };
  return undefined;
}

/**
 * Whether the state has worked on this host before: then an unmarked cluster directory there is its own (made by
 * a ci that did not mark hosts yet) and is adopted. A bare entry (made just before the first contact) does not count.
 */
export function stateKnowsHost(h: HostState | undefined): boolean {
  return !!h && (!!h.hostKey || h.layers.length > 0 || !!h.rootfsImage || Object.keys(h.hooks).length > 0);
}

/**
 * The refusal for a host's mark, or undefined when the state (of `lineage`; undefined for a state not made yet)
 * may work on it.
 */
export function judgeMark(host: string, cluster: string, mark: HostMark, lineage: string | undefined, known: boolean): HostClaimedError | undefined {
  const dir = remoteClusterDir(cluster);
  if (mark.kind === 'none') return undefined;
  if (mark.kind === 'marked' && mark.lineage === lineage) return undefined;
  if (mark.kind === 'unmarked' && known) return undefined;
  const ours = lineage ? `this state (lineage ${lineage})` : 'this cluster, which has no state';
  const what =
    mark.kind === 'marked'
      ? `holds files of cluster ${cluster} that belong to another state (lineage ${mark.lineage || '(empty)'}), not to ${ours}`
      : `holds files of cluster ${cluster} (${dir}) that no state here knows about`;
  return new HostClaimedError(
    host,
    `${what}; refusing to touch it`,
    `if this cluster's state was lost or replaced, put it back with \`ci state restore\` (or pass the right one with --state); ` +
      `if the cluster that owns the host is really gone, remove ${dir} on the host yourself, then run the command again`,
  );
}
