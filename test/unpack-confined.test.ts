/**
 * The host's side of the unpack, on a real local host. First with the layer check bypassed (a check that missed
 * something, or a tar that reads a layer differently): layers that try every way out of the rootfs are unpacked by
 * the host's own script, and nothing outside the new rootfs changes. Then through `ci apply`: a legitimate image
 * with whiteouts, opaque directories, replacements, hard links and symlinks gives on the host exactly the tree the
 * operator's extractor builds from the same layers; set-ID bits are stripped unless the image allows them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256, type Digest } from '../engine/kernel/digest.js';
import type { CheckedImage } from '../engine/image/layer-check.js';
import { ImageStore } from '../engine/image/store.js';
import { WorkingRootfs } from '../engine/image/unpack.js';
import { incrementalPlanScript, remoteIncrementalPlan, remoteLayerPath, remoteRootfs, remoteUnpackPlan, unpackPlanScript, unpackScript } from '../engine/executor/remote-layout.js';
import { connectSsh, type SshSession } from '../providers/ssh/session.js';
import { shellQuote } from '../providers/ssh/shell.js';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { injectImage, rawLayer, type RawEntry } from './helpers/raw-layers.js';
import { cleanupHome, makeHome, describeRun, labExec, type E2eHome } from './helpers/e2e.js';
import { removeDir, tempDir } from './helpers/tmp.js';

const CANARIES = ['/etc/cloudimage-canary', '/root/cloudimage-canary', '/var/lib/cloudimage/cloudimage-canary', '/tmp/cloudimage-canary', '/usr/local/cloudimage-canary'];
const CLUSTER = 'confined';

interface Escape {
  name: string;
  layers: RawEntry[][];
  /** Removals a broken check might have let through, per layer. */
  remove?: string[][];
}

const link = (path: string, linkpath: string): RawEntry => ({ path, type: 'SymbolicLink', linkpath });
const write = (path: string): RawEntry => ({ path, content: 'pwned\n' });

const ESCAPES: Escape[] = [
  { name: 'write through a symlink made by an earlier layer', layers: [[link('evil', '/etc')], [write('evil/cloudimage-canary')]] },
  { name: 'write through a relative symlink that climbs out', layers: [[link('up', '../../../../../../..')], [write('up/etc/cloudimage-canary'), write('up/root/cloudimage-canary')]] },
  { name: 'write next to the rootfs through a short relative symlink', layers: [[link('vl', '../../..')], [write('vl/cloudimage-canary'), write('vl/layers/cloudimage-canary')]] },
  { name: 'hard link to a file outside through a symlink', layers: [[link('evil', '/etc')], [{ path: 'stolen', type: 'Link', linkpath: 'evil/cloudimage-canary' }]] },
  { name: 'hard link to an absolute path', layers: [[{ path: 'stolen', type: 'Link', linkpath: '/etc/cloudimage-canary' }]] },
  { name: 'absolute and ".." names', layers: [[write('/etc/cloudimage-canary'), write('../../../../../../etc/cloudimage-canary'), write('/usr/local/cloudimage-canary')]] },
  { name: 'symlink and file through it in one layer', layers: [[link('tmp', '/tmp'), write('tmp/cloudimage-canary')]] },
  {
    name: 'removals that leave the rootfs',
    layers: [[link('evil', '/etc')], [write('harmless')]],
    remove: [[], ['../../../../../../etc/cloudimage-canary', 'evil/cloudimage-canary', '../../../cloudimage-canary', '../../../../../../root']],
  },
  { name: 'device nodes', layers: [[{ path: 'mem', type: 'CharacterDevice', mode: 0o666 }, { path: 'disk', type: 'BlockDevice', mode: 0o666 }]] },
];

describe.skipIf(!labsAvailable())('the host unpack is confined even when the layer check is bypassed', () => {
  let t: TestLab;
  let s: SshSession;
  const results: { name: string; code: number | null; stderr: string }[] = [];

  const sh = async (cmd: string) => (await s.execChecked(cmd)).stdout;

  beforeAll(async () => {
    t = await openTestLab('ci-confined-');
    const host = await t.lab.addHost('h1', 'light');
    s = await connectSsh(t.lab.sshTarget('h1'), { pinnedHostKey: host.hostKey });
    await sh(`mkdir -p /var/lib/cloudimage/layers /var/lib/cloudimage/clusters/${CLUSTER} /usr/local && for f in ${CANARIES.join(' ')}; do echo canary > "$f"; chmod 0640 "$f"; done`);
    // Upload every layer first: the marker below must see only what unpacking does.
    const steps: { checked: CheckedImage; layers: Digest[]; name: string }[] = [];
    for (const e of ESCAPES) {
      const blobs = e.layers.map((l) => rawLayer(l));
      const layers = blobs.map((b) => sha256(b));
      for (const [i, b] of blobs.entries()) await s.upload(b, remoteLayerPath(layers[i]));
      steps.push({ name: e.name, layers, checked: { allowSetid: false, steps: layers.map((d, i) => ({ digest: d, compression: 'gzip', remove: e.remove?.[i] ?? [], setid: [], entries: 0 })) } });
    }
    await sh('touch /var/lib/cloudimage/.marker && sleep 1.1');
    for (const st of steps) {
      await s.upload(Buffer.from(unpackPlanScript(st.checked)), remoteUnpackPlan(CLUSTER), { mode: 0o600 });
      await s.exec(`rm -f ${remoteIncrementalPlan(CLUSTER)}`);
      const r = await s.exec(unpackScript(CLUSTER, st.layers, { image: st.layers[0], allowSetid: false }), { timeoutMs: 60_000 });
      results.push({ name: st.name, code: r.code, stderr: r.stderr });
    }
    // Incremental: the first layer is the rootfs in place (its links included), the others are unpacked on a
    // hard-linked copy of it. The full plan is made to fail at once, so only the incremental path can reach tar.
    for (const st of steps.filter((x) => x.layers.length > 1)) {
      const base = { allowSetid: false, steps: st.checked.steps.slice(0, 1) };
      await s.upload(Buffer.from(unpackPlanScript(base)), remoteUnpackPlan(CLUSTER), { mode: 0o600 });
      await s.exec(`rm -f ${remoteIncrementalPlan(CLUSTER)}`);
      const first = await s.exec(unpackScript(CLUSTER, st.layers.slice(0, 1), { image: st.layers[0], allowSetid: false }), { timeoutMs: 60_000 });
      expect(first.code, first.stderr).toBe(0);
      await s.upload(Buffer.from('exit 42\n'), remoteUnpackPlan(CLUSTER), { mode: 0o600 });
      const inc = { keep: 1, remove: [], modes: [], restore: [], steps: st.checked.steps.slice(1) };
      await s.upload(Buffer.from(incrementalPlanScript(st.checked, inc)), remoteIncrementalPlan(CLUSTER), { mode: 0o600 });
      const r = await s.exec(unpackScript(CLUSTER, st.layers, { image: st.layers[1], allowSetid: false }, { image: st.layers[0] }), { timeoutMs: 60_000 });
      results.push({ name: `${st.name} (incremental)`, code: r.code, stderr: r.stderr });
    }
  }, 180_000);

  afterAll(async () => {
    await s?.close().catch(() => undefined);
    await t?.cleanup();
  });

  it('leaves every canary outside the rootfs as it was: same content, mode and link count', async () => {
    expect(results).toHaveLength(ESCAPES.length + ESCAPES.filter((e) => e.layers.length > 1).length);
    for (const f of CANARIES) {
      expect(await sh(`cat ${f}`), f).toBe('canary\n');
      expect(await sh(`stat -c '%a %h' ${f}`), f).toBe('640 1\n');
    }
  });

  it('changes nothing outside the cluster directory: no file written, created, linked or removed', async () => {
    const changed = await sh(
      "find /etc /root /tmp /home /usr /opt /srv /var/lib -xdev \\( -newer /var/lib/cloudimage/.marker -o -cnewer /var/lib/cloudimage/.marker \\) " +
        `! -path '/var/lib/cloudimage/clusters/${CLUSTER}' ! -path '/var/lib/cloudimage/clusters/${CLUSTER}/*' -print`,
    );
    expect(changed.trim()).toBe('');
    expect(await sh('ls /etc/shadow /root')).toBeTruthy();
  });

  it('never leaves a device node in the rootfs, and reports every unpack that could not complete', async () => {
    // Writes that the sandbox stopped make tar fail, so the apply would stop there with tar's message.
    for (const r of results.filter((x) => !x.name.startsWith('removals that leave the rootfs'))) {
      expect(r.code, JSON.stringify(r)).not.toBe(0);
      expect(r.stderr, r.name).toMatch(/^tar: /m);
    }
    expect(await sh(`find ${remoteRootfs(CLUSTER)} \\( -type b -o -type c \\) -print`)).toBe('');
  });

  it('leaves no mount behind on the host', async () => {
    expect(await sh("grep -c cloudimage-unpack /proc/self/mountinfo || true")).toBe('0\n');
  });
});

/** One line per entry: type, mode, link count and size for non-directories, symlink target; sorted. */
const LISTING = "cd \"$1\" && { find . -mindepth 1 -type d -printf '%y %m %p\\n'; find . -mindepth 1 ! -type d -printf '%y %m %n %s %p -> %l\\n'; } | LC_ALL=C sort";

describe.skipIf(!labsAvailable())('ci apply unpacks legitimate layers exactly as the operator does', () => {
  let home: E2eHome;
  let clusterfile: string;
  const layers: RawEntry[][] = [
    [
      { path: 'etc/', type: 'Directory', mode: 0o755 },
      { path: 'etc/a.conf', content: 'a1\n' },
      { path: 'etc/b.conf', content: 'b1\n', mode: 0o600 },
      { path: 'opt/app/lib/old.so', content: 'old\n', mode: 0o755 },
      { path: 'opt/app/keep', content: 'keep\n' },
      { path: 'bin/tool', content: 'tool\n', mode: 0o755 },
      { path: 'bin/su', content: 'su\n', mode: 0o4755 },
      { path: 'lib', type: 'SymbolicLink', linkpath: 'usr/lib' },
      { path: 'data', type: 'Directory', mode: 0o700 },
      { path: 'data/x', content: 'x\n' },
      { path: 'tmp', type: 'Directory', mode: 0o1777 },
    ],
    [
      { path: 'etc/.wh.a.conf', content: '' },
      { path: 'etc/b.conf', content: 'b2\n', mode: 0o640 },
      { path: 'opt/app/lib/new.so', content: 'new\n', mode: 0o755 },
      { path: 'opt/app/lib/.wh..wh..opq', content: '' },
      { path: 'bin/tool2', type: 'Link', linkpath: 'bin/tool' },
      { path: 'lib', type: 'Directory', mode: 0o755 },
      { path: 'lib/libc.so', content: 'libc\n' },
      { path: 'data', content: 'now a file\n' },
    ],
    [{ path: 'opt/app/.wh.keep', content: '' }, { path: 'etc/hosts', type: 'SymbolicLink', linkpath: '/run/hosts' }],
  ];

  const hostListing = async (): Promise<string> => {
    const host = `${CLUSTER}-ok-master-1`;
    const r = await labExec(home.labDir(`${CLUSTER}-ok`), host, `sh -c ${shellQuote(LISTING)} listing ${remoteRootfs(`${CLUSTER}-ok`)}`);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };

  beforeAll(async () => {
    home = makeHome('ci-unpack-ok-');
    clusterfile = join(home.dir, 'Clusterfile');
    const store = new ImageStore(home.dir);
    await injectImage(store, 'layered:v1', layers.map((l) => rawLayer(l)));
    await injectImage(store, 'layered:setid', layers.map((l) => rawLayer(l)), { allowSetid: true });
  });

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 120_000);

  const apply = async (image: string) => {
    writeFileSync(
      clusterfile,
      `apiVersion: cloudimage.io/v1\nkind: Cluster\nmetadata: {name: ${CLUSTER}-ok}\nspec:\n  image: ${image}\n  provider: LOCAL\n  hosts:\n    - {count: 1, roles: [master]}\n`,
    );
    const args = ['apply', '-f', clusterfile, '--auto-approve'];
    const r = await home.ci(args);
    expect(r.code, describeRun(args, r)).toBe(0);
  };

  it('gives the same tree on the host (GNU tar in the sandbox) as on the operator (the tar package)', async () => {
    await apply('layered:v1');
    const store = new ImageStore(home.dir);
    const img = await store.resolve('layered:v1');
    const local = tempDir('ci-unpack-local-');
    try {
      const dir = join(local, 'rootfs');
      mkdirSync(dir);
      const w = new WorkingRootfs(store, dir);
      for (const l of img.manifest.layers) await w.apply(l.digest);
      const expected = execFileSync('sh', ['-c', LISTING, 'listing', dir], { encoding: 'utf8' });
      const onHost = await hostListing();
      expect(onHost).toBe(expected);
      // The semantics themselves: whiteout, opaque directory, replacement, hard link, symlink replaced by a directory.
      expect(onHost).not.toMatch(/\.\/etc\/a\.conf|old\.so|\.\/opt\/app\/keep|\.wh\./);
      expect(onHost).toContain('f 640 1 3 ./etc/b.conf -> \n');
      expect(onHost).toContain('f 755 1 4 ./opt/app/lib/new.so -> \n');
      expect(onHost).toContain('f 755 2 5 ./bin/tool2 -> \n');
      expect(onHost).toContain('d 755 ./lib\n');
      expect(onHost).toContain('f 644 1 11 ./data -> \n');
      expect(onHost).toContain('l 777 1 10 ./etc/hosts -> /run/hosts\n');
      expect(onHost).toContain('d 1777 ./tmp\n');
      // Set-ID bits are stripped on both sides.
      expect(onHost).toContain('f 755 1 3 ./bin/su -> \n');
    } finally {
      removeDir(local);
    }
  }, 180_000);

  it('keeps set-ID bits only for an image built to keep them', async () => {
    await apply('layered:setid');
    expect(await hostListing()).toContain('f 4755 1 3 ./bin/su -> \n');
  }, 180_000);
});
