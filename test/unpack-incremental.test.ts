/**
 * Incremental unpack: the verdicts of the pure planner (engine/image/incremental.ts), then a property-style
 * comparison on a real local host. Random layer stacks (files, directories with modes, symlinks, hard links,
 * whiteouts, opaque directories, a file replaced by a directory and the reverse) are unpacked three ways by the
 * host's own confined scripts: the old image in full, then the new one incrementally on top of it, and the new
 * one in full in another cluster directory; both trees of the new image must be identical (type, mode, link
 * count, size, symlink target, content). A rootfs changed after it was recorded is never built on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { digestHex, sha256, type Digest } from '../engine/kernel/digest.js';
import { checkLayers, scanLayer, type CheckedImage } from '../engine/image/layer-check.js';
import { planIncremental } from '../engine/image/incremental.js';
import type { ScannedLayer } from '../engine/image/layer-tree.js';
import {
  incrementalPlanScript, prepareScript, remoteIncrementalPlan, remoteLayerPath, remoteRootfs, remoteStagedRootfs, remoteUnpackPlan, swapScript, unpackPlanScript, unpackScript,
} from '../engine/executor/remote-layout.js';
import { connectSsh, type SshSession } from '../providers/ssh/session.js';
import { shellQuote } from '../providers/ssh/shell.js';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { rawLayer, type RawEntry } from './helpers/raw-layers.js';
import { removeDir, tempDir } from './helpers/tmp.js';

interface Stack {
  dir: string;
  blobs: Map<Digest, Buffer>;
}

function stackOf(dir: string): Stack {
  mkdirSync(dir, { recursive: true });
  return { dir, blobs: new Map() };
}

function put(st: Stack, entries: RawEntry[]): Digest {
  const b = rawLayer(entries);
  const d = sha256(b);
  writeFileSync(join(st.dir, digestHex(d)), b);
  st.blobs.set(d, b);
  return d;
}

const blobPath = (st: Stack) => (d: Digest) => join(st.dir, digestHex(d));

async function scansOf(st: Stack, layers: Digest[]): Promise<Map<Digest, ScannedLayer>> {
  const m = new Map<Digest, ScannedLayer>();
  for (const d of layers) m.set(d, await scanLayer(blobPath(st)(d), d, 1));
  return m;
}

const f = (path: string, content = path, mode?: number): RawEntry => ({ path, content, ...(mode !== undefined ? { mode } : {}) });
const dir = (path: string, mode = 0o755): RawEntry => ({ path: `${path}/`, type: 'Directory', mode });
const sym = (path: string, linkpath: string): RawEntry => ({ path, type: 'SymbolicLink', linkpath });
const hard = (path: string, linkpath: string): RawEntry => ({ path, type: 'Link', linkpath });
const wh = (path: string): RawEntry => {
  const i = path.lastIndexOf('/');
  return { path: i < 0 ? `.wh.${path}` : `${path.slice(0, i)}/.wh.${path.slice(i + 1)}`, content: '' };
};
const opq = (d: string): RawEntry => ({ path: `${d}/.wh..wh..opq`, content: '' });

describe('incremental verdicts', () => {
  let st: Stack;
  let tmp: string;
  beforeAll(() => {
    tmp = tempDir('ci-incr-');
    st = stackOf(join(tmp, 'blobs'));
  });
  afterAll(() => removeDir(tmp));

  const verdict = async (lower: RawEntry[][], oldUpper: RawEntry[][], newUpper: RawEntry[][]) => {
    const low = lower.map((l) => put(st, l));
    const old = [...low, ...oldUpper.map((l) => put(st, l))];
    const next = [...low, ...newUpper.map((l) => put(st, l))];
    await checkLayers(blobPath(st), old);
    const checked = await checkLayers(blobPath(st), next);
    const scans = await scansOf(st, [...new Set([...old, ...next])]);
    return planIncremental(checked, old, (d) => scans.get(d));
  };

  it('takes out what the old upper layer added and re-moded, and keeps the shared layers', async () => {
    const v = await verdict([[dir('etc'), f('etc/a'), dir('opt', 0o700)]], [[f('etc/old'), dir('opt', 0o755), f('app/x'), dir('app/y')]], [[f('etc/new')]]);
    expect(v).toEqual({ plan: expect.objectContaining({ keep: 1, remove: ['app', 'etc/old'], modes: [{ path: 'opt', mode: 0o700 }] }) });
    expect('plan' in v && v.plan.steps).toHaveLength(1);
  });

  it('keeps everything when layers are only added', async () => {
    const v = await verdict([[f('a')]], [], [[f('b')]]);
    expect(v).toEqual({ plan: expect.objectContaining({ keep: 1, remove: [], modes: [] }) });
  });

  it('unpacks in full when an old upper layer removed, replaced or hid what the shared layers made', async () => {
    const low = [[dir('etc'), f('etc/a'), sym('l', 'etc')]];
    expect(await verdict(low, [[wh('etc/a')]], [[f('n')]])).toEqual({ full: expect.stringMatching(/removed "etc\/a"/) });
    expect(await verdict(low, [[opq('etc')]], [[f('n')]])).toEqual({ full: expect.stringMatching(/hid the content of "etc"/) });
    // A file over a file is no such case: taken out, and extracted alone again (see below).
    expect(await verdict(low, [[f('etc/a', 'changed')]], [[f('n')]])).toEqual({ plan: expect.objectContaining({ remove: ['etc/a'], restore: [expect.objectContaining({ paths: ['etc/a'] })] }) });
    expect(await verdict(low, [[dir('l')]], [[f('n')]])).toEqual({ full: expect.stringMatching(/replaced "l"/) });
    expect(await verdict([[f('d/x')]], [[dir('d', 0o700)]], [[f('n')]])).toEqual({ full: expect.stringMatching(/without listing it/) });
  });

  it('takes out a file the old upper layer wrote over when a new layer writes it again (a changed Config)', async () => {
    const low = [[dir('etc'), f('etc/a'), f('etc/b'), hard('etc/h', 'etc/a')]];
    const v = await verdict(low, [[f('etc/a', 'old config'), f('etc/extra')]], [[f('etc/a', 'new config')]]);
    expect(v).toEqual({ plan: expect.objectContaining({ keep: 1, remove: ['etc/a', 'etc/extra'], modes: [] }) });
    // Removed again by a whiteout, or hidden by an opaque directory, before anything reads it: as good as written.
    expect(await verdict(low, [[f('etc/b', 'old')]], [[wh('etc/b')]])).toEqual({ plan: expect.objectContaining({ remove: ['etc/b'] }) });
    expect(await verdict(low, [[f('etc/b', 'old')]], [[opq('etc'), f('etc/c')]])).toEqual({ plan: expect.objectContaining({ remove: ['etc/b'] }) });
    // A new hard link to it before it is written again would join the file taken out.
    expect(await verdict(low, [[f('etc/b', 'old')]], [[hard('x', 'etc/b'), f('etc/b', 'new')]])).toEqual({ full: expect.stringMatching(/links to it before writing it again/) });
    expect(await verdict(low, [[f('etc/b', 'old')]], [[f('etc/b', 'new'), hard('x', 'etc/b')]])).toEqual({ plan: expect.objectContaining({ remove: ['etc/b'] }) });
  });

  it('extracts a file the old upper layer wrote over alone from the shared layer that made it when no new layer writes it (a Config removed)', async () => {
    const lowEntries = [[dir('etc'), f('etc/a'), f('etc/b'), hard('etc/h', 'etc/a')], [f('etc/b', 'b from the second layer'), f('etc/c')]];
    const low = lowEntries.map((l) => put(st, l));
    // The Config wrote over files of both shared layers; the new image has no Config at all.
    const removed = await verdict(lowEntries, [[f('etc/b', 'config'), f('etc/c', 'config'), f('etc/extra')]], []);
    expect(removed).toEqual({
      plan: { keep: 2, remove: ['etc/b', 'etc/c', 'etc/extra'], modes: [], restore: [{ digest: low[1], compression: 'gzip', paths: ['etc/b', 'etc/c'] }], steps: [] },
    });
    // Not written again by the new layers (they only add): restored before them, so a new link to it finds it.
    const linked = await verdict(lowEntries, [[f('etc/c', 'old')]], [[hard('x', 'etc/c'), f('n')]]);
    expect(linked).toEqual({ plan: expect.objectContaining({ remove: ['etc/c'], restore: [{ digest: low[1], compression: 'gzip', paths: ['etc/c'] }] }) });
    expect('plan' in linked && linked.plan.steps).toHaveLength(1);
    // A file that shares its inode with another in a full unpack, or that the layer cannot give alone by name.
    expect(await verdict(lowEntries, [[f('etc/a', 'config')]], [])).toEqual({ full: expect.stringMatching(/replaced "etc\/a" .*no new layer writes it again: a layer below links to it/) });
    expect(await verdict([[dir('etc'), f('etc/a'), f('opt/etc/a')]], [[f('etc/a', 'config')]], [])).toEqual({
      full: expect.stringMatching(/cannot be extracted alone from .* \(its entry "opt\/etc\/a" would come along\)/),
    });
    expect(await verdict([[dir('etc'), f('etc/a'), f('x/etc/a/y')]], [[f('etc/a', 'config')]], [])).toEqual({ full: expect.stringMatching(/its entry "x\/etc\/a\/y" would come along/) });
    expect(await verdict([[f('l'), hard('m', 'l')]], [[f('m', 'config')]], [])).toEqual({ full: expect.stringMatching(/its entry "m" would come along/) });
    // The same name in a layer below the one it is restored from does not matter: only that layer is read.
    expect(await verdict([[f('opt/etc/a')], [dir('etc'), f('etc/a')]], [[f('etc/a', 'config')]], [])).toEqual({ plan: expect.objectContaining({ restore: [expect.objectContaining({ paths: ['etc/a'] })] }) });
  });

  it('restores many files with few reads of their layer: as many names per tar as a command line safely holds', () => {
    const digest = sha256('restore-source');
    const paths = Array.from({ length: 5000 }, (_, i) => `usr/share/some/deep/directory/file-${String(i).padStart(5, '0')}`);
    const inc = { keep: 1, remove: paths, modes: [], restore: [{ digest, compression: 'gzip' as const, paths }], steps: [] };
    const script = incrementalPlanScript({ steps: [], allowSetid: false } as unknown as CheckedImage, inc);
    const tars = script.split('\n').filter((l) => l.startsWith('tar -x') && l.includes('--no-anchored'));
    expect(tars.length).toBe(3);
    for (const t of tars) expect(Buffer.byteLength(t)).toBeLessThan(101_000);
    const named = tars.flatMap((t) => t.split(' -- ')[1].split(' ').map((q) => q.slice(1, -1)));
    expect(named).toEqual(paths);
  });

  it('unpacks in full when nothing is shared or an old layer is not known', async () => {
    const a = put(st, [f('a')]);
    const b = put(st, [f('b')]);
    const checked = await checkLayers(blobPath(st), [b]);
    expect(planIncremental(checked, [a], () => undefined)).toEqual({ full: expect.stringMatching(/no layer/) });
    const c2 = await checkLayers(blobPath(st), [a, b]);
    expect(planIncremental(c2, [a, sha256('gone')], (d) => (d === a ? { digest: a, compression: 'gzip', members: [], whiteouts: [], opaques: [] } : undefined))).toEqual({
      full: expect.stringMatching(/not known/),
    });
  });
});

/** A small PRNG so a failing case can be replayed from its seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const NAMES = ['a', 'b', 'c'];
const DIRS = ['d', 'd/e', 'g'];

/** A random layer over a small namespace, so whiteouts, replacements and links hit earlier entries often. */
function randomLayer(r: () => number, upper: boolean, tag: string, root = ''): RawEntry[] {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const out = new Map<string, RawEntry>();
  const files: string[] = [];
  const n = 2 + Math.floor(r() * 6);
  for (let i = 0; i < n; i++) {
    const where = r() < 0.3 ? '' : `${pick(DIRS)}/`;
    const p = `${root}${where}${pick(NAMES)}`;
    const x = r();
    if (out.has(p) || [...out.keys()].some((k) => k.startsWith(p + '/') || p.startsWith(k + '/'))) continue;
    if (x < 0.45) {
      out.set(p, f(p, `${tag}:${p}\n`, pick([0o644, 0o600, 0o755])));
      files.push(p);
    } else if (x < 0.6) out.set(p, dir(p, pick([0o755, 0o700, 0o750])));
    else if (x < 0.7) out.set(p, sym(p, pick(['/etc/hosts', 'a', '../b'])));
    else if (x < 0.78 && files.length) out.set(p, hard(p, pick(files)));
    else if (upper && x < 0.92) out.set(`wh:${p}`, wh(p));
    else if (upper) out.set(`opq:${p}`, opq(pick(DIRS)));
  }
  // Opaque markers and whiteouts go first, as image builders write them; dedupe by entry path.
  const entries = [...out.values()];
  const seen = new Set<string>();
  return entries.filter((e) => !seen.has(e.path) && (seen.add(e.path), true));
}

// Each entry's type, mode, link count, size and link target, and each regular file's content digest.
const LISTING =
  "cd \"$1\" && { find . -mindepth 1 -type d -printf '%y %m %p\\n'; find . -mindepth 1 ! -type d -printf '%y %m %n %s %p -> %l\\n'; find . -type f -exec sha256sum {} +; } | LC_ALL=C sort";

describe.skipIf(!labsAvailable())('an incremental unpack on a real host gives the tree of a full unpack', () => {
  let t: TestLab;
  let s: SshSession;
  let tmp: string;
  let st: Stack;
  const sh = async (cmd: string) => (await s.execChecked(cmd, { timeoutMs: 60_000 })).stdout;

  beforeAll(async () => {
    t = await openTestLab('ci-incr-');
    const host = await t.lab.addHost('h1', 'light');
    s = await connectSsh(t.lab.sshTarget('h1'), { pinnedHostKey: host.hostKey });
    await sh('mkdir -p /var/lib/cloudimage/layers /var/lib/cloudimage/clusters/inc /var/lib/cloudimage/clusters/ref');
    tmp = tempDir('ci-incr-host-');
    st = stackOf(join(tmp, 'blobs'));
  }, 120_000);

  afterAll(async () => {
    await s?.close().catch(() => undefined);
    await t?.cleanup();
    if (tmp) removeDir(tmp);
  });

  const upload = async (layers: Digest[]) => {
    for (const d of layers) await s.upload(st.blobs.get(d)!, remoteLayerPath(d));
  };

  /** A full unpack of `layers` as `image` into a cluster's rootfs (recorded, as the apply does). */
  const full = async (cluster: string, checked: CheckedImage, image: Digest) => {
    await s.upload(Buffer.from(unpackPlanScript(checked)), remoteUnpackPlan(cluster), { mode: 0o600 });
    await sh(`rm -f ${remoteIncrementalPlan(cluster)}`);
    const out = await sh(unpackScript(cluster, checked.steps.map((x) => x.digest), { image, allowSetid: false }));
    expect(out).toContain('cloudimage: rootfs unpacked in full');
  };

  const listing = (cluster: string) => sh(`sh -c ${shellQuote(LISTING)} listing ${remoteRootfs(cluster)}`);

  /**
   * One random case unpacked three ways; undefined when the layer rules refuse its stack, else whether the
   * unpack on top of the old image was incremental.
   */
  const compareCase = async (seed: number, lower: RawEntry[][], oldUp: RawEntry[][], newUp: RawEntry[][]): Promise<boolean | undefined> => {
    const low = lower.map((l) => put(st, l));
    const old = [...low, ...oldUp.map((l) => put(st, l))];
    const next = [...low, ...newUp.map((l) => put(st, l))];
    let oldChecked: CheckedImage;
    let checked: CheckedImage;
    try {
      oldChecked = await checkLayers(blobPath(st), old);
      checked = await checkLayers(blobPath(st), next);
    } catch {
      return undefined; // a stack the layer rules refuse is no case here
    }
    const scans = await scansOf(st, [...new Set([...old, ...next])]);
    const verdict = planIncremental(checked, old, (d) => scans.get(d));
    await upload([...new Set([...old, ...next])]);
    const oldImage = sha256(`old-${seed}-${old.join()}`);
    const newImage = sha256(`new-${seed}-${next.join()}`);
    await full('inc', oldChecked, oldImage);
    await full('ref', checked, newImage);
    await s.upload(Buffer.from(unpackPlanScript(checked)), remoteUnpackPlan('inc'), { mode: 0o600 });
    if ('plan' in verdict) await s.upload(Buffer.from(incrementalPlanScript(checked, verdict.plan)), remoteIncrementalPlan('inc'), { mode: 0o600 });
    else await sh(`rm -f ${remoteIncrementalPlan('inc')}`);
    const out = await sh(unpackScript('inc', next, { image: newImage, allowSetid: false }, { image: oldImage }));
    const how = 'plan' in verdict ? 'incrementally' : 'in full';
    expect(out, `seed ${seed}`).toContain(`cloudimage: rootfs unpacked ${how}`);
    expect(await listing('inc'), `seed ${seed}: ${JSON.stringify({ lower, oldUp, newUp })}`).toBe(await listing('ref'));
    // The old rootfs and its staging are gone; the record names the new rootfs.
    expect(await sh('ls -A /var/lib/cloudimage/clusters/inc')).not.toMatch(/rootfs\.(old|next)/);
    expect(await sh('cat /var/lib/cloudimage/clusters/inc/rootfs.id')).toContain(`image ${newImage}\n`);
    return 'plan' in verdict;
  };

  it('for random stacks with whiteouts, opaque directories, replacements and links', async () => {
    let incremental = 0;
    let tried = 0;
    for (let seed = 1; tried < 14 && seed < 400; seed++) {
      const r = rng(seed);
      const lower = [randomLayer(r, false, `l1-${seed}`), randomLayer(r, true, `l2-${seed}`)];
      // Every other case, the old upper layer only adds a tree of its own: the case an incremental unpack takes.
      const oldUp = [randomLayer(r, true, `o-${seed}`, seed % 2 === 0 ? 'u/' : '')];
      const newUp = [randomLayer(r, true, `n1-${seed}`), randomLayer(r, true, `n2-${seed}`)];
      const out = await compareCase(seed, lower, oldUp, newUp);
      if (out === undefined) continue;
      tried++;
      if (out) incremental++;
    }
    expect(tried).toBe(14);
    expect(incremental).toBeGreaterThanOrEqual(6);
  }, 600_000);

  it('for random stacks whose old top layer wrote over files below and whose new top layer writes them again (a changed Config)', async () => {
    let incremental = 0;
    let tried = 0;
    for (let seed = 1000; tried < 8 && seed < 1400; seed++) {
      const r = rng(seed);
      const lower = [randomLayer(r, false, `l1-${seed}`), randomLayer(r, true, `l2-${seed}`)];
      // A Config writes files only.
      const oldTop = randomLayer(r, false, `o-${seed}`).filter((e) => e.content !== undefined);
      // The new top layer writes every regular file of the old one again (new content, maybe a new mode), then a
      // random tail, so links and whiteouts can follow the rewrite.
      const again = oldTop.map((e) => f(e.path, `c-${seed}:${e.path}\n`, r() < 0.5 ? 0o600 : 0o644));
      if (again.length === 0) continue;
      const newUp = [randomLayer(r, true, `n1-${seed}`), [...again, ...randomLayer(r, true, `n2-${seed}`).filter((e) => !again.some((a) => a.path === e.path))]];
      const out = await compareCase(seed, lower, [oldTop], newUp);
      if (out === undefined) continue;
      tried++;
      if (out) incremental++;
    }
    expect(tried).toBe(8);
    expect(incremental).toBeGreaterThanOrEqual(3);
  }, 600_000);

  it('for random stacks whose old top layer wrote over files below and which the new image drops or leaves alone (a Config removed)', async () => {
    // Names tar would read as patterns or escapes if asked for them plainly.
    const odd = [dir('etc'), f('etc/a\\nb'), f('etc/c*d'), f('etc/[x]')];
    expect(await compareCase(1999, [odd.map((e) => (e.path === 'etc/c*d' ? { ...e, path: `./${e.path}` } : e))], [[f('etc/a\\nb', 'cfg'), f('etc/c*d', 'cfg'), f('etc/[x]', 'cfg')]], [])).toBe(true);
    let incremental = 0;
    let restored = 0;
    let tried = 0;
    for (let seed = 2000; tried < 10 && seed < 2400; seed++) {
      const r = rng(seed);
      // Writers differ: some name entries `./etc/a`, some `etc/a`; the restore must find either.
      const dotted = (l: RawEntry[]) => l.map((e) => (r() < 0.5 ? { ...e, path: `./${e.path}` } : e));
      const lower = [dotted(randomLayer(r, false, `l1-${seed}`)), dotted(randomLayer(r, true, `l2-${seed}`))];
      const oldTop = randomLayer(r, false, `o-${seed}`).filter((e) => e.content !== undefined);
      if (oldTop.length === 0) continue;
      // Half the cases drop the Config; the others add a layer that may write some of its files again, or not.
      const newUp = seed % 2 === 0 ? [] : [randomLayer(r, true, `n-${seed}`)];
      const low = lower.map((l) => sha256(rawLayer(l)));
      const next = [...low, ...newUp.map((l) => sha256(rawLayer(l)))];
      const out = await compareCase(seed, lower, [oldTop], newUp);
      if (out === undefined) continue;
      tried++;
      if (out) {
        incremental++;
        const scans = await scansOf(st, [...low, sha256(rawLayer(oldTop)), ...next]);
        const v = planIncremental(await checkLayers(blobPath(st), next), [...low, sha256(rawLayer(oldTop))], (d) => scans.get(d));
        if ('plan' in v && v.plan.restore.length > 0) restored++;
      }
    }
    expect(tried).toBe(10);
    expect(incremental).toBeGreaterThanOrEqual(3);
    expect(restored).toBeGreaterThanOrEqual(2);
  }, 600_000);

  it('never builds on a rootfs changed after it was recorded (a hook wrote into it)', async () => {
    const a = put(st, [dir('etc'), f('etc/a')]);
    const b1 = put(st, [f('app', 'v1\n')]);
    const b2 = put(st, [f('app', 'v2\n')]);
    await upload([a, b1, b2]);
    const old = await checkLayers(blobPath(st), [a, b1]);
    const next = await checkLayers(blobPath(st), [a, b2]);
    const scans = await scansOf(st, [a, b1, b2]);
    const verdict = planIncremental(next, [a, b1], (d) => scans.get(d));
    expect('plan' in verdict).toBe(true);
    const img1 = sha256('hooked-1');
    await full('inc', old, img1);
    await sh(`sleep 0.05; echo written-by-a-hook > ${remoteRootfs('inc')}/etc/extra`);
    await s.upload(Buffer.from(unpackPlanScript(next)), remoteUnpackPlan('inc'), { mode: 0o600 });
    if ('plan' in verdict) await s.upload(Buffer.from(incrementalPlanScript(next, verdict.plan)), remoteIncrementalPlan('inc'), { mode: 0o600 });
    const out = await sh(unpackScript('inc', [a, b2], { image: sha256('hooked-2'), allowSetid: false }, { image: img1 }));
    expect(out).toContain('cloudimage: rootfs unpacked in full');
    expect(await sh(`ls ${remoteRootfs('inc')}/etc`)).toBe('a\n');
  }, 120_000);

  it('resumes after a stop mid-prepare (an unrecorded stage is discarded) and mid-swap (the staged inode tells)', async () => {
    const a = put(st, [dir('etc'), f('etc/a')]);
    const b = put(st, [f('app', 'v3\n')]);
    await upload([a, b]);
    const checked = await checkLayers(blobPath(st), [a, b]);
    const target = { image: sha256('resume-2'), allowSetid: false };
    await full('inc', await checkLayers(blobPath(st), [a]), sha256('resume-1'));
    await s.upload(Buffer.from(unpackPlanScript(checked)), remoteUnpackPlan('inc'), { mode: 0o600 });
    await sh(`rm -f ${remoteIncrementalPlan('inc')}`);
    // Stopped mid-prepare: a half-made stage with no record.
    await sh(`mkdir -p ${remoteStagedRootfs('inc')} && echo partial > ${remoteStagedRootfs('inc')}/junk`);
    expect(await sh(swapScript('inc', target))).toContain('__ci_not_staged__');
    expect(await sh(prepareScript('inc', [a, b], target))).toContain('cloudimage: rootfs unpacked in full');
    expect(await sh(`ls ${remoteStagedRootfs('inc')}`)).toBe('app\netc\n');
    expect(await sh(prepareScript('inc', [a, b], target))).toContain('cloudimage: rootfs staged already');
    // Stopped mid-swap, after both renames and before the record: the swap finishes on the next run.
    const root = remoteRootfs('inc');
    await sh(`rm -f ${root}.id; mv ${root} ${root}.old && mv ${root}.next ${root}`);
    expect(await sh(prepareScript('inc', [a, b], target))).toContain('cloudimage: rootfs staged already');
    expect(await sh(swapScript('inc', target))).not.toContain('__ci_not_staged__');
    expect(await sh(`cat ${root}/app; ls -A /var/lib/cloudimage/clusters/inc`)).toBe('v3\nrootfs\nrootfs.id\nunpack.sh\n');
    expect(await sh(`sed -n 's/^inode //p' /var/lib/cloudimage/clusters/inc/rootfs.id`)).toBe(await sh(`stat -c %i ${root}`));
  }, 120_000);
});
