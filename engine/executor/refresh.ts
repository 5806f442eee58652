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
import { sha256OfFound, shellQuote } from '../../providers/ssh/shell.js';
import type { ProviderRuntime } from '../../providers/contract.js';
import type { ClusterState, HostState } from '../../state/model.js';
import type { RefreshDepth } from '../../plans/actions.js';
import { hostsToRefresh, refreshState, type HostAnswer, type HostFound, type RefreshOutcome } from '../../plans/drift.js';
import { InternalError } from '../kernel/errors.js';
import { headText, markOf } from './host-claim.js';
import { REMOTE_BASE, remoteClusterDir, remoteHookMarkerDir, remoteLineageFile, remoteRootfs, remoteRootfsMarker } from './remote-layout.js';

export type RefreshMode = RefreshDepth | 'off';

export interface RefreshTuning {
  timeoutMs: number;
  parallelism: number;
}

export const DEFAULT_REFRESH: RefreshTuning = { timeoutMs: 10_000, parallelism: 32 };

const BEGIN = '__ci_refresh__ begin';
const END = '__ci_refresh__ end';

/** How much of each record file (the rootfs record, a hook record) the host prints. */
const RECORD_BYTES = 1000;
const HOOK_BYTES = 200;

/**
 * The one command a host runs. Plain POSIX sh plus GNU find (-printf) and coreutils, which the unpack needs anyway;
 * tagged lines, so nothing a login prints can be taken for an answer. It starts two programs whatever the host
 * holds (on a small host, starting programs is most of what the answer costs it): one `find` for the names, sizes,
 * times and inodes of the layer store and the cluster's directory, then one `head` for the records themselves
 * (lineage, rootfs record, hook records), each under a `==> name <==` header, names relative to the cluster's
 * directory. The tests are the shell's own: `-f` and `-d` follow links, as find's `-H` and `-xtype` do.
 */
export function refreshScript(cluster: string, depth: RefreshDepth): string {
  const find = `find "$s" -maxdepth 1 -type f -name '*.tar.gz'`;
  return [
    `echo '${BEGIN}'`,
    `s=${shellQuote(`${REMOTE_BASE}/layers`)}`,
    `d=${shellQuote(remoteClusterDir(cluster))}`,
    'set --',
    'for p in "$s" "$d"; do [ -d "$p" ] && set -- "$@" "$p"; done',
    // The store and the cluster directory are fixed paths without pattern characters (cluster names are DNS labels).
    'if [ $# -gt 0 ]; then',
    `  find -H "$@" -maxdepth 1 \\( -path "$s/*" -name '*.tar.gz' -type f -printf 'L %f %s %T@\\n' \\) \\`,
    `    -o \\( -path ${shellQuote(remoteRootfs(cluster))} -xtype d -printf 'R present %i\\n' \\) \\`,
    `    -o \\( -path ${shellQuote(remoteHookMarkerDir(cluster))} -xtype d -printf 'D\\n' \\)`,
    'fi',
    ...(depth === 'deep' ? [`if [ -d "$s" ]; then { ${sha256OfFound(find)}; } | sed 's/^/H /'; fi`] : []),
    `if [ -e "$d" ]; then echo 'C present'; fi`,
    'if [ -d "$d" ] && cd "$d"; then',
    '  set --',
    `  for f in ${shellQuote(RECORDS.lineage)} ${shellQuote(RECORDS.rootfs)} ${shellQuote(RECORDS.hooks)}/*; do [ -f "$f" ] && set -- "$@" "$f"; done`,
    // `head` ends the last record without a newline of its own when the file has none: the echo keeps END apart.
    `  if [ $# -gt 0 ]; then head -v -c ${RECORD_BYTES} -- "$@"; echo; fi`,
    'fi',
    `echo '${END}'`,
    'true',
  ].join('\n');
}

/** Where a record file lies inside the cluster's directory (remote-layout.ts places them), as the answer names it. */
function inClusterDir(path: (cluster: string) => string): string {
  const dir = `${remoteClusterDir('c')}/`;
  const p = path('c');
  if (!p.startsWith(dir)) throw new InternalError(`${p} is not inside ${dir}`);
  return p.slice(dir.length);
}

const RECORDS = { lineage: inClusterDir(remoteLineageFile), rootfs: inClusterDir(remoteRootfsMarker), hooks: inClusterDir(remoteHookMarkerDir) };
const HEX = /^[0-9a-f]{64}$/;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The header `head -v` prints before each record file, for the names refreshScript passes it. */
const RECORD_HEADER = new RegExp(`^==> (${escape(RECORDS.lineage)}|${escape(RECORDS.rootfs)}|${escape(RECORDS.hooks)}/([^/]+)) <==$`);

/** The host's answer as plain data; undefined when it is not a whole answer (cut short, or not our script's). */
export function parseRefreshAnswer(stdout: string): HostFound | undefined {
  const lines = stdout.split('\n');
  const start = lines.indexOf(BEGIN);
  const end = lines.indexOf(END, start + 1);
  if (start < 0 || end < 0) return undefined;
  const found: HostFound = { mark: { kind: 'none' }, layers: {}, rootfs: { present: false } };
  const hashes = new Map<string, string>();
  let clusterDir = false;
  // The records come last: every line after the first header belongs to a record.
  const records: { name: string; hook?: string; lines: string[] }[] = [];
  for (const line of lines.slice(start + 1, end)) {
    const header = RECORD_HEADER.exec(line);
    if (header) {
      records.push({ name: header[1], hook: header[2], lines: [] });
      continue;
    }
    if (records.length > 0) {
      records[records.length - 1].lines.push(line);
      continue;
    }
    const [tag, ...rest] = line.split(' ');
    if (tag === 'L' && rest.length >= 3) {
      const hex = rest[0].replace(/\.tar\.gz$/, '');
      if (HEX.test(hex)) found.layers[hex] = { size: Number(rest[1]), mtime: Math.floor(Number(rest[2])) };
    } else if (tag === 'H' && rest.length >= 2) {
      // `<hex>  <path>` (sha256sum: the split leaves an empty field between them) or `<hex> *<path>` (OpenSSL).
      const path = rest[rest.length - 1];
      const hex = /([0-9a-f]{64})\.tar\.gz$/.exec(path)?.[1];
      if (hex) hashes.set(hex, rest[0]);
    } else if (tag === 'R' && rest[0] === 'present') {
      found.rootfs = { present: true, ...(rest[1] ? { inode: rest[1] } : {}) };
    } else if (tag === 'C' && rest[0] === 'present') {
      clusterDir = true;
    } else if (tag === 'D' && rest.length === 0) {
      found.hooks ??= {};
    }
  }
  let lineage: string | undefined;
  for (const r of records) {
    // Between two files `head` prints an empty line: the lines up to it are the file, its own last newline included.
    const content = r.lines.join('\n');
    if (r.name === RECORDS.lineage) lineage = content;
    else if (r.hook !== undefined) (found.hooks ??= {})[r.hook] = headText(content, HOOK_BYTES);
    else found.marker = parseRootfsRecord(content);
  }
  found.mark = markOf(lineage, clusterDir);
  for (const [hex, sum] of hashes) if (found.layers[hex]) found.layers[hex].sha256 = sum;
  return found;
}

/** The rootfs record's `key value` lines (remoteRootfsMarker); keys this engine does not know are left out. */
function parseRootfsRecord(content: string): NonNullable<HostFound['marker']> {
  const marker: NonNullable<HostFound['marker']> = {};
  for (const line of content.split('\n')) {
    const [key, ...rest] = line.split(' ');
    if (rest.length === 0) continue;
    const v = rest.join(' ');
    if (key === 'image') marker.image = v;
    else if (key === 'config') marker.config = v === '-' ? undefined : v;
    else if (key === 'inode') marker.inode = v;
  }
  return marker;
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
