/**
 * Where cloudimage keeps things on a host, and the shell it runs there to assemble a rootfs. Layers live in one
 * content-addressed store per host (shared by clusters); each cluster has its own rootfs and outputs.
 */
import { digestHex, type Digest } from '../kernel/digest.js';
import { shellQuote } from '../../providers/ssh/shell.js';
import type { CheckedImage } from '../image/layer-check.js';
import type { IncrementalPlan } from '../image/incremental.js';
import type { LayerStep } from '../image/layer-tree.js';

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

/** The Clusterfile's documents of other kinds as hooks get them (CI_CLUSTER_DOCUMENTS), secrets masked. */
export function remoteDocumentsFile(cluster: string): string {
  return `${remoteClusterDir(cluster)}/documents.yaml`;
}

/** Writes stdin to the documents file, for root's eyes only from its first byte, or removes it when there are none. */
export function writeDocumentsScript(cluster: string, present: boolean): string {
  const file = shellQuote(remoteDocumentsFile(cluster));
  if (!present) return `rm -f ${file}`;
  const tmp = shellQuote(`${remoteDocumentsFile(cluster)}.tmp`);
  return `umask 077 && mkdir -p ${shellQuote(remoteClusterDir(cluster))} && cat > ${tmp} && chmod 0600 ${tmp} && mv -f ${tmp} ${file}`;
}

/** Prints the digests (hex) of the given layers that the host already holds. */
export function listHeldLayersScript(layers: Digest[]): string {
  const paths = layers.map((d) => shellQuote(remoteLayerPath(d))).join(' ');
  return `for f in ${paths}; do [ -f "$f" ] && basename "$f" .tar.gz; done; true`;
}

/**
 * What the last unpack put in the rootfs: its image, its config layer and the rootfs directory's inode, written
 * only once the new rootfs is in place. A refresh compares it with the state; the inode tells a rootfs that was
 * removed and made again by hand (same name, another directory) from the one unpacked.
 */
export function remoteRootfsMarker(cluster: string): string {
  return `${remoteClusterDir(cluster)}/rootfs.id`;
}

/** Where a hook that completed on the host is recorded (the image it ran for), beside the state's own record. */
export function remoteHookMarker(cluster: string, hook: string): string {
  return `${remoteHookMarkerDir(cluster)}/${hook}`;
}

export function remoteHookMarkerDir(cluster: string): string {
  return `${remoteClusterDir(cluster)}/done`;
}

/** Where the unpack plan of the image being installed is uploaded before the unpack runs. */
export function remoteUnpackPlan(cluster: string): string {
  return `${remoteClusterDir(cluster)}/unpack.sh`;
}

/**
 * The host's side of the unpack is confined by the kernel, not by trusting tar: it runs in a private mount
 * namespace, chrooted into an empty read-only tmpfs that holds only the host's own programs (read-only), the
 * layer store (read-only) and the new rootfs (the only writable place). Whatever an entry names or links to, it
 * resolves inside that tree, so nothing outside the new rootfs can be written, linked or removed.
 */
const SANDBOX = `set -eu
new=$1 layers=$2 plan=$3 sb=$4
trap 'echo "cloudimage: cannot confine the unpack on this host: it needs root, mount namespaces (unshare), tmpfs, bind mounts and chroot" >&2' EXIT
mount --make-rprivate /
mount -t tmpfs -o mode=0755,size=64m,nosuid,nodev cloudimage-unpack "$sb"
for d in bin sbin lib lib32 lib64 libx32 usr; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$sb/$d"
  elif [ -d "/$d" ]; then mkdir "$sb/$d"; mount --bind "/$d" "$sb/$d"; mount -o remount,bind,ro,nosuid,nodev "$sb/$d"; fi
done
mkdir "$sb/etc" "$sb/target" "$sb/layers"
if [ -f /etc/ld.so.cache ]; then
  : > "$sb/etc/ld.so.cache"; mount --bind /etc/ld.so.cache "$sb/etc/ld.so.cache"; mount -o remount,bind,ro,nosuid,nodev "$sb/etc/ld.so.cache"
fi
mount --bind "$new" "$sb/target"
mount --bind "$layers" "$sb/layers"; mount -o remount,bind,ro,nosuid,nodev,noexec "$sb/layers"
cp "$plan" "$sb/plan.sh"
mount -o remount,ro,nosuid,nodev "$sb"
trap - EXIT
exec chroot "$sb" /bin/sh /plan.sh`;

/**
 * Builds the rootfs for an image from the host's layer store (staged, as prepareScript does: in full, or from the
 * current rootfs when `base` allows it) and swaps it in, in one exec: what an unpack does on a host where nothing
 * was staged before. A half-built rootfs is never the current one.
 */
export function unpackScript(cluster: string, layers: Digest[], target: RootfsRecord, base?: { image: Digest; config?: Digest }): string {
  // Not `( ... ) || exit`: the shell ignores set -e inside anything on the left of || or &&.
  return `set -eu\n(\n${prepareScript(cluster, layers, target, base)}\n)\n${swapScript(cluster, target)}`;
}

/** Bytes of names on one command line of a plan (rm, a restoring tar): far below Linux's 2 MB for arguments. */
const ARGS_BYTES = 100_000;

/** Quoted words joined into lines of at most `bytes` bytes each (a longer word gets a line of its own). */
function argumentBatches(words: string[], bytes: number): string[] {
  const out: string[] = [];
  let line: string[] = [];
  let size = 0;
  for (const w of words) {
    const n = Buffer.byteLength(w) + 1;
    if (line.length > 0 && size + n > bytes) {
      out.push(line.join(' '));
      line = [];
      size = 0;
    }
    line.push(w);
    size += n;
  }
  if (line.length > 0) out.push(line.join(' '));
  return out;
}

function removeLines(paths: string[]): string[] {
  return argumentBatches(paths.map((p) => shellQuote(`/target/${p}`)), ARGS_BYTES).map((names) => `rm -rf -- ${names}`);
}

/** The tar command that extracts a layer (or, with names after it, some of its entries) into the new rootfs. */
function extractLine(layer: Digest, compression: 'gzip' | 'none'): string {
  const z = compression === 'gzip' ? ' -z' : '';
  // 1 MiB records instead of tar's 10 KiB: a hundredth of the reads and writes (a third of the CPU for a big file,
  // which every host spends at once after the last byte); tar reads archives of any record size this way.
  return `tar -x${z} -b 2048 -f ${shellQuote(`/layers/${digestHex(layer)}.tar.gz`)} -C /target --no-same-owner --numeric-owner --exclude='.wh.*'`;
}

/** The plan's lines for some layers (`first` is the 0-based index of the first), then the rules for every entry. */
function planLines(steps: LayerStep[], first: number, total: number, allowSetid: boolean, prelude: string[] = []): string {
  const lines = [
    'set -eu',
    // No /dev in the sandbox: nothing here may redirect to /dev/null.
    "tar --version | head -n 1 | grep -q 'GNU tar' || { echo 'cloudimage: unpacking needs GNU tar on the host' >&2; exit 6; }",
    ...prelude,
  ];
  steps.forEach((step, i) => {
    lines.push(`# layer ${first + i + 1} of ${total}: ${step.digest}`);
    lines.push(...removeLines(step.remove));
    lines.push(extractLine(step.digest, step.compression));
  });
  lines.push("find /target -xdev \\( -type b -o -type c -o -type p -o -type s \\) -exec rm -f -- {} +");
  if (!allowSetid) lines.push('find /target -xdev -perm /6000 ! -type l -exec chmod ug-s -- {} +');
  return lines.join('\n') + '\n';
}

/**
 * The unpack plan: runs chrooted in the sandbox, where the layers are under /layers and the new rootfs is /target.
 * Each layer's removals were computed by the layer check (whiteouts, replaced entries); the host never reads a
 * whiteout itself. Device nodes never survive, and set-ID bits only when the image was built to keep them.
 */
export function unpackPlanScript(checked: CheckedImage): string {
  return planLines(checked.steps, 0, checked.steps.length, checked.allowSetid);
}

/**
 * The incremental plan, in the same sandbox: /target starts as a hard-linked copy of the current rootfs. What the
 * old image's upper layers made is taken out, the modes they changed are set back, the files they wrote over that
 * no new layer writes again are extracted alone from the shared layers, then only the new upper layers are unpacked
 * (see engine/image/incremental.ts for when this gives exactly the tree of a full unpack).
 */
export function incrementalPlanScript(checked: CheckedImage, inc: IncrementalPlan): string {
  const prelude = [`# the old upper layers, taken out: the rootfs of the ${inc.keep} shared layers remains`, ...removeLines(inc.remove)];
  for (const m of inc.modes) prelude.push(`chmod ${m.mode.toString(8).padStart(4, '0')} -- ${shellQuote(`/target/${m.path}`)}`);
  for (const r of inc.restore) {
    prelude.push(`# files the old upper layers wrote over, extracted alone from ${r.digest}`);
    // Unanchored, a name also matches the `./`-prefixed form writers emit; the plan was made only where no other
    // entry of the layer matches it (incremental.ts). No wildcards and no unquoting: a name is itself, `*` and `\`
    // included. Names are arguments, not a list file: `--verbatim-files-from` is missing from older GNU tar.
    // Each command reads the whole layer, so the names go in as few as a command line holds.
    for (const names of argumentBatches(r.paths.map(shellQuote), ARGS_BYTES)) {
      prelude.push(`${extractLine(r.digest, r.compression)} --no-wildcards --no-unquote --no-anchored -- ${names}`);
    }
  }
  return planLines(inc.steps, inc.keep, checked.steps.length, checked.allowSetid, prelude);
}

/** What a rootfs record says besides the directory's inode: the image, its config layer, the set-ID rule. */
export interface RootfsRecord {
  image: Digest;
  config?: Digest;
  allowSetid: boolean;
}

function recordLines(r: RootfsRecord): string {
  return `image ${r.image}\nconfig ${r.config ?? '-'}\nsetid ${r.allowSetid ? 'kept' : 'stripped'}`;
}

/** `printf` of a record file for the directory `dirVar` names, written whole (renamed into place). */
function writeRecord(file: string, r: RootfsRecord, dirVar: string): string[] {
  return [
    `printf '%s\\ninode %s\\n' ${shellQuote(recordLines(r))} "$(stat -c %i "${dirVar}")" > ${shellQuote(`${file}.tmp`)}`,
    `mv -f ${shellQuote(`${file}.tmp`)} ${shellQuote(file)}`,
  ];
}

/** The record's lines other than the inode, as the host compares them. */
const RECORD_BODY = (file: string) => `"$(grep -v '^inode ' ${shellQuote(file)} 2>/dev/null || true)"`;
const RECORD_INODE = (file: string) => `"$(sed -n 's/^inode //p' ${shellQuote(file)} 2>/dev/null || true)"`;

/** Where the next rootfs is staged beside the current one before the roll swaps it in, and its record. */
export function remoteStagedRootfs(cluster: string): string {
  return `${remoteRootfs(cluster)}.next`;
}

export function remoteStagedMarker(cluster: string): string {
  return `${remoteClusterDir(cluster)}/rootfs.next.id`;
}

export function remoteIncrementalPlan(cluster: string): string {
  return `${remoteClusterDir(cluster)}/unpack-incremental.sh`;
}

/** What the staging prints last: how the rootfs was made, or that it was staged already. */
export const STAGED_LINE = /^cloudimage: rootfs (staged already|unpacked in full|unpacked incrementally)$/m;

/**
 * Stages the rootfs for `target` beside the current one (rootfs.next), confined as above, and records it
 * (rootfs.next.id, written last: a staged rootfs without it is discarded by the next run). With `base` (what the
 * host's current rootfs should be) and an incremental plan uploaded, the stage starts from a hard-linked copy of
 * the current rootfs, but only when the host's record says it is exactly that rootfs, made with the same set-ID
 * rule, and nothing in it changed since it was recorded (no entry's status changed after the record was written);
 * otherwise it is unpacked in full. The current rootfs is never written.
 */
export function prepareScript(cluster: string, layers: Digest[], target: RootfsRecord, base?: { image: Digest; config?: Digest }): string {
  const dir = remoteClusterDir(cluster);
  const files = layers.map((d) => shellQuote(remoteLayerPath(d))).join(' ');
  const staged = remoteStagedMarker(cluster);
  const marker = remoteRootfsMarker(cluster);
  const incr = remoteIncrementalPlan(cluster);
  return [
    'set -eu',
    `root=${shellQuote(remoteRootfs(cluster))}`,
    `next=${shellQuote(remoteStagedRootfs(cluster))}`,
    `sb=${shellQuote(`${dir}/.unpack-root`)}`,
    `ino=${RECORD_INODE(staged)}`,
    // Staged by an earlier run for the same rootfs (and maybe already swapped in by a run that was stopped).
    `if [ ${RECORD_BODY(staged)} = ${shellQuote(recordLines(target))} ] && [ -n "$ino" ] && { { [ -d "$next" ] && [ "$(stat -c %i "$next")" = "$ino" ]; } || { [ -d "$root" ] && [ "$(stat -c %i "$root")" = "$ino" ]; }; }; then`,
    "  echo 'cloudimage: rootfs staged already'; exit 0",
    'fi',
    `for f in ${files}; do`,
    '  [ -f "$f" ] || { echo "layer $f is missing on this host" >&2; exit 3; }',
    'done',
    'command -v unshare >/dev/null 2>&1 || { echo "cloudimage: this host has no unshare (util-linux), so the rootfs cannot be unpacked confined" >&2; exit 5; }',
    'mode=full',
    ...(base
      ? [
          `if [ -f ${shellQuote(incr)} ] && [ -d "$root" ] && [ ! -L "$root" ] && [ ${RECORD_BODY(marker)} = ${shellQuote(recordLines({ ...base, allowSetid: target.allowSetid }))} ] \\`,
          `  && [ "$(stat -c %i "$root")" = ${RECORD_INODE(marker)} ] && [ -z "$(find "$root" -cnewer ${shellQuote(marker)} -print -quit)" ]; then mode=incremental; fi`,
        ]
      : []),
    `rm -f ${shellQuote(staged)}`,
    'rm -rf "$next"',
    'if [ "$mode" = incremental ]; then',
    // Hard links: no content is read or copied; every file the new layers write is unlinked first by tar.
    `  cp -al "$root" "$next"; plan=${shellQuote(incr)}`,
    `else mkdir -p "$next"; plan=${shellQuote(remoteUnpackPlan(cluster))}; fi`,
    'mkdir -p "$sb"',
    `unshare --mount sh -c ${shellQuote(SANDBOX)} cloudimage-unpack "$next" ${shellQuote(`${REMOTE_BASE}/layers`)} "$plan" "$sb"`,
    'rmdir "$sb" 2>/dev/null || true',
    ...writeRecord(staged, target, '$next'),
    'if [ "$mode" = incremental ]; then echo "cloudimage: rootfs unpacked incrementally"; else echo "cloudimage: rootfs unpacked in full"; fi',
  ].join('\n');
}

export const NOT_STAGED = '__ci_not_staged__';

/**
 * Swaps the staged rootfs in with renames (the staged directory keeps its inode, which its record names), removes
 * the old one, and only then writes rootfs.id for the rootfs now in place. Prints NOT_STAGED, changing nothing,
 * when no rootfs is staged for `target`. Safe to run again after a stop at any point.
 */
export function swapScript(cluster: string, target: RootfsRecord): string {
  const staged = remoteStagedMarker(cluster);
  const marker = remoteRootfsMarker(cluster);
  return [
    'set -eu',
    `root=${shellQuote(remoteRootfs(cluster))}`,
    `next=${shellQuote(remoteStagedRootfs(cluster))}`,
    'old="$root.old"',
    `ino=${RECORD_INODE(staged)}`,
    `[ ${RECORD_BODY(staged)} = ${shellQuote(recordLines(target))} ] && [ -n "$ino" ] || { echo ${NOT_STAGED}; exit 0; }`,
    'if [ -d "$next" ] && [ "$(stat -c %i "$next")" = "$ino" ]; then',
    // Gone first: a rootfs half swapped in is never described as the one recorded.
    `  rm -f ${shellQuote(marker)}`,
    '  rm -rf "$old"',
    '  if [ -d "$root" ]; then mv "$root" "$old"; fi',
    '  mv "$next" "$root"',
    'elif [ -d "$root" ] && [ "$(stat -c %i "$root")" = "$ino" ]; then :',
    `else echo ${NOT_STAGED}; exit 0; fi`,
    'rm -rf "$old"',
    ...writeRecord(marker, target, '$root'),
    `rm -f ${shellQuote(staged)}`,
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

/**
 * Prints what a hook wrote to CI_OUTPUT and removes the file: from then on the outputs live sealed in the state.
 * With `done` (the hook succeeded), records on the host that it ran for that image, in the same round trip.
 */
export function takeOutputsScript(cluster: string, hook: string, done?: Digest): string {
  const out = shellQuote(remoteOutputFile(cluster, hook));
  const take = `if [ -f ${out} ]; then cat ${out}; rm -f ${out}; fi`;
  if (!done) return `${take}; true`;
  const m = shellQuote(remoteHookMarker(cluster, hook));
  return `${take}; mkdir -p ${shellQuote(remoteHookMarkerDir(cluster))} && printf '%s\\n' ${shellQuote(done)} > ${m}.tmp && mv -f ${m}.tmp ${m}; true`;
}

export function cmdScript(cluster: string, cmd: string): string {
  return `cd ${shellQuote(remoteRootfs(cluster))} && exec sh -c ${shellQuote(cmd)}`;
}

/** Prints, one a line, the programs of `tools` the host cannot find on its PATH. */
export function missingToolsScript(tools: string[]): string {
  return `for t in ${tools.map(shellQuote).join(' ')}; do command -v "$t" >/dev/null 2>&1 || echo "$t"; done; true`;
}

/**
 * Runs an app's launch commands in order, in its folder of the rootfs; the first that fails stops the launch and
 * says which one it was.
 */
export function launchScript(cluster: string, app: string, dir: string, cmds: string[]): string {
  const lines = [`cd ${shellQuote(`${remoteRootfs(cluster)}/${dir}`)} || exit 1`];
  cmds.forEach((c, i) => {
    // App names are DNS labels, so the message needs no quoting beyond the double quotes.
    lines.push(`sh -c ${shellQuote(c)} || { s=$?; echo "cloudimage: app ${app}: command ${i + 1} of ${cmds.length} exited with $s" >&2; exit $s; }`);
  });
  return lines.join('\n');
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

/** Names the state (by lineage) that owns this cluster's files on the host; inside the cluster's own directory. */
export function remoteLineageFile(cluster: string): string {
  return `${remoteClusterDir(cluster)}/lineage`;
}

/** Runs a SHELL plugin's script with sh in the cluster's directory on the host. */
export function pluginScript(cluster: string, data: string): string {
  const dir = shellQuote(remoteClusterDir(cluster));
  return `mkdir -p ${dir} && cd ${dir} && exec sh -c ${shellQuote(data)} cloudimage-plugin`;
}

export const HOSTS_FILE = '/etc/hosts';

/** The lines that open and close a cluster's block of /etc/hosts. */
export function hostsBlockMarkers(cluster: string): { begin: string; end: string } {
  return { begin: `# BEGIN cloudimage cluster ${cluster} hostAliases`, end: `# END cloudimage cluster ${cluster} hostAliases` };
}

/**
 * Replaces the cluster's marked block of /etc/hosts with `lines` (none: removes it), leaving every other line as it
 * is. The file is rewritten in place (not renamed over) so a bind-mounted /etc/hosts keeps working, and only when
 * its content changes.
 */
export function hostsBlockScript(cluster: string, lines: string[], file = HOSTS_FILE, dir = remoteClusterDir(cluster)): string {
  const { begin, end } = hostsBlockMarkers(cluster);
  const block = lines.length ? `printf '%s\\n' ${[begin, ...lines, end].map(shellQuote).join(' ')} >> "$t"` : ':';
  return [
    'set -eu',
    `f=${shellQuote(file)}`,
    `mkdir -p ${shellQuote(dir)}`,
    `t=${shellQuote(`${dir}/hosts.new`)}`,
    'if [ -f "$f" ]; then',
    `  awk -v b=${shellQuote(begin)} -v e=${shellQuote(end)} '$0==b{skip=1;next} skip&&$0==e{skip=0;next} !skip' "$f" > "$t"`,
    'else : > "$t"; fi',
    block,
    'if [ -f "$f" ] && command -v cmp >/dev/null 2>&1 && cmp -s "$t" "$f"; then :; else cat "$t" > "$f"; fi',
    'rm -f "$t"',
  ].join('\n');
}

/** Sets labels and taints on one node with kubectl (run on master0 in the rootfs, as CMDs are). */
export function nodeMetaScript(cluster: string, node: string, labels: string[], taints: string[]): string {
  const lines = [`cd ${shellQuote(remoteRootfs(cluster))}`, 'set -e'];
  if (labels.length) lines.push(`kubectl label node --overwrite ${shellQuote(node)} ${labels.map(shellQuote).join(' ')}`);
  if (taints.length) lines.push(`kubectl taint node --overwrite ${shellQuote(node)} ${taints.map(shellQuote).join(' ')}`);
  return lines.join('\n');
}
