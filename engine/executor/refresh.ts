/**
 * The refresh before `ci plan` and `ci apply`: each host of the state is asked, over SSH with the host key pinned in
 * the state (never a new one), in parallel with a cap and a timeout, what it holds of the cluster, in ONE exec: the
 * layer store's names, sizes and mtimes (sha256 only when deep: a 5,000-layer store is not hashed on every plan),
 * the rootfs and what the last unpack recorded, the hook records. The answers are compared in plans/drift.ts; a
 * host that does not answer is reported and kept in the state as it was, never assumed gone.
 */
import pLimit from 'p-limit';
import { digestHex, type Digest } from '../kernel/digest.js';
import { connectSsh } from '../../providers/ssh/session.js';
import { shellQuote } from '../../providers/ssh/shell.js';
import type { ProviderRuntime } from '../../providers/contract.js';
import type { ClusterState, HostState } from '../../state/model.js';
import type { RefreshDepth } from '../../plans/actions.js';
import { hostsToRefresh, refreshState, type HostAnswer, type HostFound, type RefreshOutcome } from '../../plans/drift.js';
import { markScript, parseMark } from './host-claim.js';
import { REMOTE_BASE, remoteHookMarkerDir, remoteRootfs, remoteRootfsMarker } from './remote-layout.js';

export type RefreshMode = RefreshDepth | 'off';

export interface RefreshTuning {
  timeoutMs: number;
  parallelism: number;
}

export const DEFAULT_REFRESH: RefreshTuning = { timeoutMs: 10_000, parallelism: 32 };

const BEGIN = '__ci_refresh__ begin';
const END = '__ci_refresh__ end';

/**
 * The one command a host runs. Plain POSIX sh plus GNU find (-printf) and coreutils, which the unpack needs anyway;
 * tagged lines, so nothing a login prints can be taken for an answer.
 */
export function refreshScript(cluster: string, depth: RefreshDepth): string {
  const store = shellQuote(`${REMOTE_BASE}/layers`);
  const find = `find ${store} -maxdepth 1 -type f -name '*.tar.gz'`;
  return [
    `echo '${BEGIN}'`,
    markScript(cluster),
    `if [ -d ${store} ]; then`,
    `  ${find} -printf 'L %f %s %T@\\n'`,
    ...(depth === 'deep' ? [`  ${find} -exec sha256sum {} + | sed 's/^/H /'`] : []),
    'fi',
    `r=${shellQuote(remoteRootfs(cluster))}`,
    `if [ -d "$r" ]; then echo "R present $(stat -c %i "$r")"; else echo 'R absent'; fi`,
    `m=${shellQuote(remoteRootfsMarker(cluster))}`,
    `if [ -f "$m" ]; then head -c 1000 "$m" | sed 's/^/M /'; fi`,
    `h=${shellQuote(remoteHookMarkerDir(cluster))}`,
    'if [ -d "$h" ]; then',
    "  echo 'D'",
    '  for f in "$h"/*; do [ -f "$f" ] && printf \'D %s %s\\n\' "${f##*/}" "$(head -c 200 "$f" | tr -d \'\\n\')"; done',
    'fi',
    `echo '${END}'`,
    'true',
  ].join('\n');
}

const HEX = /^[0-9a-f]{64}$/;

/** The host's answer as plain data; undefined when it is not a whole answer (cut short, or not our script's). */
export function parseRefreshAnswer(stdout: string): HostFound | undefined {
  const lines = stdout.split('\n');
  const start = lines.indexOf(BEGIN);
  const end = lines.indexOf(END, start + 1);
  if (start < 0 || end < 0) return undefined;
  const body = lines.slice(start + 1, end);
  const mark = parseMark(body.join('\n'));
  if (!mark) return undefined;
  const found: HostFound = { mark, layers: {}, rootfs: { present: false } };
  const hashes = new Map<string, string>();
  for (const line of body) {
    const [tag, ...rest] = line.split(' ');
    if (tag === 'L' && rest.length >= 3) {
      const hex = rest[0].replace(/\.tar\.gz$/, '');
      if (HEX.test(hex)) found.layers[hex] = { size: Number(rest[1]), mtime: Math.floor(Number(rest[2])) };
    } else if (tag === 'H' && rest.length >= 2) {
      // `sha256sum` prints `<hex>  <path>`: the split leaves an empty field between them.
      const path = rest[rest.length - 1];
      const hex = /([0-9a-f]{64})\.tar\.gz$/.exec(path)?.[1];
      if (hex) hashes.set(hex, rest[0]);
    } else if (tag === 'R') {
      found.rootfs = rest[0] === 'present' ? { present: true, ...(rest[1] ? { inode: rest[1] } : {}) } : { present: false };
    } else if (tag === 'M' && rest.length >= 2) {
      const m = (found.marker ??= {});
      const v = rest.slice(1).join(' ');
      if (rest[0] === 'image') m.image = v;
      else if (rest[0] === 'config') m.config = v === '-' ? undefined : v;
      else if (rest[0] === 'inode') m.inode = v;
    } else if (tag === 'D') {
      found.hooks ??= {};
      if (rest.length >= 1 && rest[0]) found.hooks[rest[0]] = rest.slice(1).join(' ');
    }
  }
  for (const [hex, sum] of hashes) if (found.layers[hex]) found.layers[hex].sha256 = sum;
  return found;
}

export interface RefreshInput {
  state: ClusterState;
  provider: Pick<ProviderRuntime, 'target'>;
  depth: RefreshDepth;
  tuning?: Partial<RefreshTuning>;
  /** Size of a layer blob in the local store, when it is there. */
  sizeOf?: (d: Digest) => number | undefined;
}

/** Asks every host that holds something (one exec each, in parallel) and returns the refreshed state and the drift. */
export async function refreshHosts(input: RefreshInput): Promise<RefreshOutcome> {
  const tuning = { ...DEFAULT_REFRESH, ...input.tuning };
  const { ask, unpinned } = hostsToRefresh(input.state);
  const limit = pLimit(tuning.parallelism);
  const answers: HostAnswer[] = await Promise.all(ask.map((h) => limit(() => askHost(h, input, tuning))));
  for (const h of unpinned) answers.push({ host: h.key, error: 'the state pins no host key for it, and a refresh never pins one' });
  return refreshState(input.state, answers, { depth: input.depth, sizeOf: input.sizeOf });
}

async function askHost(h: HostState, input: RefreshInput, tuning: RefreshTuning): Promise<HostAnswer> {
  try {
    const target = await input.provider.target(h);
    const session = await connectSsh(target, { pinnedHostKey: h.hostKey, timeoutMs: tuning.timeoutMs, attempts: 1, keepaliveIntervalMs: tuning.timeoutMs });
    try {
      // Hashing a big store takes its time; the names and sizes alone answer at once.
      const timeoutMs = input.depth === 'deep' ? Math.max(tuning.timeoutMs, 600_000) : tuning.timeoutMs;
      const res = await session.execChecked(refreshScript(input.state.cluster, input.depth), { what: 'asking what the host holds', timeoutMs });
      const found = parseRefreshAnswer(res.stdout);
      return found ? { host: h.key, found } : { host: h.key, error: 'its answer was cut short or not understood' };
    } finally {
      await session.close().catch(() => undefined);
    }
  } catch (err) {
    return { host: h.key, error: (err as Error).message.split('\n')[0] };
  }
}

/** The layer sizes the comparison needs, read once from the local store (blobs it lacks are not size-checked). */
export async function layerSizes(state: ClusterState, blobSize: (d: Digest) => Promise<number>): Promise<(d: Digest) => number | undefined> {
  const all = [...new Set(Object.values(state.hosts).flatMap((h) => h.layers))];
  const sizes = new Map<string, number>();
  await Promise.all(
    all.map(async (d) => {
      try {
        sizes.set(digestHex(d), await blobSize(d));
      } catch {
        // Not in this machine's store (an image since removed): its name is still checked.
      }
    }),
  );
  return (d) => sizes.get(digestHex(d));
}
