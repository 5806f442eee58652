/**
 * The refresh's pure half with plain data: a host's answer parsed, compared with the state (drift items and the
 * refreshed state), and what the planner and the saved-plan check make of it.
 */
import { describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compareHost, hostsToRefresh, refreshState, type HostAnswer, type HostFound } from '../plans/drift.js';
import { parseRefreshAnswer, refreshScript } from '../engine/executor/refresh.js';
import { parseClusterfile } from '../engine/clusterfile/parse.js';
import { plan } from '../plans/planner.js';
import { checkPlanFresh } from '../plans/planfile.js';
import { renderPlanJson, renderRefreshText } from '../plans/render/index.js';
import { StalePlanError } from '../engine/kernel/errors.js';
import type { ImageInfo, SendLayersAction } from '../plans/actions.js';
import type { ClusterState, HostState } from '../state/model.js';

const GOLDEN = join(import.meta.dirname, 'golden', 'no-changes');
const desired = parseClusterfile(readFileSync(join(GOLDEN, 'desired.yaml'), 'utf8'), 'desired.yaml', { SSH_PASSWORD: 'pw' });
const image = JSON.parse(readFileSync(join(GOLDEN, 'image.json'), 'utf8')) as ImageInfo;
const state = JSON.parse(readFileSync(join(GOLDEN, 'state.json'), 'utf8')) as ClusterState;
for (const h of Object.values(state.hosts)) h.hostKey = 'SHA256:pinned';
const sizes = new Map(image.layers.map((l) => [l.digest, l.size]));
const sizeOf = (d: string) => sizes.get(d as `sha256:${string}`);
const hex = (d: string) => d.slice('sha256:'.length);

/** What a host that holds exactly what the state says answers. */
function intact(hs: HostState): HostFound {
  return {
    mark: { kind: 'marked', lineage: state.lineage },
    layers: Object.fromEntries(hs.layers.map((d) => [hex(d), { size: sizes.get(d) ?? 1, mtime: 1_700_000_000 }])),
    rootfs: { present: true, inode: '42' },
    marker: { image: hs.rootfsImage, inode: '42' },
    hooks: Object.fromEntries(Object.entries(hs.hooks).map(([k, v]) => [k, v!])),
  };
}

const m1 = state.hosts['10.0.0.2'];

describe('a host answer', () => {
  test('is parsed from the tagged lines and the record files of the one command', () => {
    const [a, b] = m1.layers.map(hex);
    const stdout = [
      'Welcome to the host (a login banner)',
      '__ci_refresh__ begin',
      `L ${a}.tar.gz 1234 1700000000.5`,
      `L ${b}.tar.gz 99 1700000001.0`,
      'L not-a-layer.tar.gz 5 1',
      'R present 9876',
      'D',
      `H ${a}  /var/lib/cloudimage/layers/${a}.tar.gz`,
      // OpenSSL's form of the line.
      `H ${b} */var/lib/cloudimage/layers/${b}.tar.gz`,
      'C present',
      // What `head -v` prints for the record files, each under its header, an empty line between two files.
      '==> lineage <==',
      state.lineage,
      '',
      '==> rootfs.id <==',
      `image ${m1.rootfsImage}`,
      'config -',
      'setid stripped',
      'inode 9876',
      '',
      '==> done/init-host <==',
      // A record without a last newline: the next header (or the echo before the end) follows on its own line.
      `${m1.rootfsImage}`,
      '==> done/join-node <==',
      `${'x'.repeat(300)}`,
      '',
      '__ci_refresh__ end',
    ].join('\n');
    const found = parseRefreshAnswer(stdout)!;
    expect(found.mark).toEqual({ kind: 'marked', lineage: state.lineage });
    expect(found.layers).toEqual({ [a]: { size: 1234, mtime: 1_700_000_000, sha256: a }, [b]: { size: 99, mtime: 1_700_000_001, sha256: b } });
    expect(found.rootfs).toEqual({ present: true, inode: '9876' });
    expect(found.marker).toEqual({ image: m1.rootfsImage, config: undefined, inode: '9876' });
    // A hook record counts as far as its first 200 bytes, as the host's `head -c 200` read it before.
    expect(found.hooks).toEqual({ 'init-host': m1.rootfsImage, 'join-node': 'x'.repeat(200) });
  });

  test('the mark: a lineage record, else a cluster directory without one, else nothing of the cluster', () => {
    const answer = (...lines: string[]) => parseRefreshAnswer(['__ci_refresh__ begin', ...lines, '__ci_refresh__ end'].join('\n'))!;
    expect(answer('C present', '==> lineage <==', 'multi', 'line', '').mark).toEqual({ kind: 'marked', lineage: 'multiline' });
    expect(answer('C present', '==> lineage <==', '').mark).toEqual({ kind: 'marked', lineage: '' });
    expect(answer('C present', 'D').mark).toEqual({ kind: 'unmarked' });
    const none = answer(`L ${hex(m1.layers[0])}.tar.gz 1 1`);
    expect(none.mark).toEqual({ kind: 'none' });
    expect(none.rootfs).toEqual({ present: false });
    expect(none.marker).toBeUndefined();
    expect(none.hooks).toBeUndefined();
    // An empty record directory is a host that keeps records and has none.
    expect(answer('C present', 'D').hooks).toEqual({});
  });

  test('cut short is no answer', () => {
    expect(parseRefreshAnswer('__ci_refresh__ begin\nC present\nL x 1 1\n')).toBeUndefined();
    expect(parseRefreshAnswer('')).toBeUndefined();
  });

  test('the command hashes layers only when deep', () => {
    expect(refreshScript('demo', 'shallow')).not.toMatch(/sha256|openssl/);
    // OpenSSL's digest when the host has it (several times faster with SHA instructions), else coreutils'.
    expect(refreshScript('demo', 'deep')).toContain('openssl dgst -sha256 -r');
    expect(refreshScript('demo', 'deep')).toContain('sha256sum');
    expect(refreshScript('demo', 'shallow')).toContain("-printf 'L %f %s %T@\\n'");
  });
});

describe('comparison', () => {
  test('a host holding what the state says has no drift', () => {
    const { items, host } = compareHost(m1, intact(m1), { depth: 'shallow', sizeOf });
    expect(items).toEqual([]);
    expect(host).toEqual(m1);
  });

  test('a deleted layer is missing and leaves the refreshed state', () => {
    const found = intact(m1);
    delete found.layers[hex(m1.layers[1])];
    const { items, host } = compareHost(m1, found, { depth: 'shallow', sizeOf });
    expect(items).toEqual([expect.objectContaining({ kind: 'layer-missing', reason: 'drift: layer missing on host', layers: [m1.layers[1]] })]);
    expect(host.layers).toEqual([m1.layers[0], m1.layers[2]]);
    expect(m1.layers).toHaveLength(3); // the state given is not changed
  });

  test('a file of another size is changed; its content only counts when deep', () => {
    const found = intact(m1);
    found.layers[hex(m1.layers[0])].size += 1;
    found.layers[hex(m1.layers[1])].sha256 = 'f'.repeat(64);
    const shallow = compareHost(m1, found, { depth: 'shallow', sizeOf });
    expect(shallow.items.map((i) => [i.kind, i.layers])).toEqual([['layer-changed', [m1.layers[0]]]]);
    const deep = compareHost(m1, found, { depth: 'deep', sizeOf });
    expect(deep.items.map((i) => [i.kind, i.layers])).toEqual([['layer-changed', [m1.layers[0], m1.layers[1]]]]);
    expect(deep.host.layers).toEqual([m1.layers[2]]);
  });

  test('rootfs: gone, no marker, another image, a replaced directory', () => {
    const cases: [Partial<HostFound>, string, RegExp][] = [
      [{ rootfs: { present: false } }, 'rootfs-missing', /gone/],
      [{ marker: undefined }, 'rootfs-changed', /no record/],
      [{ marker: { image: `sha256:${'1'.repeat(64)}`, inode: '42' } }, 'rootfs-changed', /says image 111111111111/],
      [{ marker: { image: m1.rootfsImage, config: `sha256:${'2'.repeat(64)}`, inode: '42' } }, 'rootfs-changed', /config 222222222222/],
      [{ rootfs: { present: true, inode: '43' } }, 'rootfs-changed', /replaced/],
    ];
    for (const [change, kind, detail] of cases) {
      const { items, host } = compareHost(m1, { ...intact(m1), ...change }, { depth: 'shallow', sizeOf });
      expect(items).toHaveLength(1);
      expect(items[0].kind).toBe(kind);
      expect(items[0].detail).toMatch(detail);
      expect(host.rootfsImage).toBeUndefined();
      expect(host.hooks).toEqual(m1.hooks); // hooks are never taken from the state
    }
  });

  test('a rebuilt machine: every layer missing, rootfs missing, hooks only reported', () => {
    const found: HostFound = { mark: { kind: 'none' }, layers: {}, rootfs: { present: false } };
    const { items, host } = compareHost(m1, found, { depth: 'shallow', sizeOf });
    expect(items.map((i) => i.kind)).toEqual(['layer-missing', 'rootfs-missing', 'hooks-missing']);
    expect(items[2].hooks).toEqual(['init-host', 'init-master0']);
    expect(host.layers).toEqual([]);
    expect(host.hooks).toEqual(m1.hooks);
  });

  test('a host from before hook records (no records directory) reports no hook drift; a lost record is reported', () => {
    const legacy = { ...intact(m1), hooks: undefined };
    expect(compareHost(m1, legacy, { depth: 'shallow', sizeOf }).items).toEqual([]);
    const lost = intact(m1);
    delete lost.hooks!['init-master0'];
    expect(compareHost(m1, lost, { depth: 'shallow', sizeOf }).items).toEqual([expect.objectContaining({ kind: 'hooks-missing', hooks: ['init-master0'] })]);
  });

  test('unreachable hosts are named and kept as they were; hosts without a pinned key are not asked', () => {
    const out = refreshState(state, [{ host: '10.0.0.2', error: 'connection refused' }], { depth: 'shallow' });
    expect(out.refresh.unreachable).toEqual([{ host: '10.0.0.2', why: 'connection refused' }]);
    expect(out.state.hosts['10.0.0.2']).toBe(state.hosts['10.0.0.2']);
    const foreign = { ...intact(state.hosts['10.0.0.3']), mark: { kind: 'marked' as const, lineage: 'another' }, layers: {} };
    const other = refreshState(state, [{ host: '10.0.0.3', found: foreign }], { depth: 'shallow' });
    expect(other.refresh.drift).toEqual([]);
    expect(other.refresh.unreachable).toEqual([{ host: '10.0.0.3', why: 'its files of cluster demo belong to another state (lineage another)' }]);
    const unpinned = structuredClone(state);
    delete unpinned.hosts['10.0.0.3'].hostKey;
    const { ask, unpinned: skipped } = hostsToRefresh(unpinned);
    expect(ask.map((h) => h.key)).toEqual(['10.0.0.2', '10.0.0.4', '10.0.0.5']);
    expect(skipped.map((h) => h.key)).toEqual(['10.0.0.3']);
  });

  test('drift and unreachable hosts come in host-name order, whatever order an apply first wrote the hosts in', () => {
    const shuffled = { ...state, hosts: Object.fromEntries(Object.entries(state.hosts).reverse()) };
    const answers: HostAnswer[] = Object.values(shuffled.hosts).map((hs) =>
      hs.key === '10.0.0.4' ? { host: hs.key, error: 'timed out' } : { host: hs.key, found: { mark: { kind: 'none' as const }, layers: {}, rootfs: { present: false } } },
    );
    const out = refreshState(shuffled, answers, { depth: 'shallow', sizeOf });
    expect([...new Set(out.refresh.drift.map((d) => d.host))]).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.5']);
    expect(out.refresh.unreachable.map((u) => u.host)).toEqual(['10.0.0.4']);
    const named = { ...state, hosts: { 'node-10': { ...state.hosts['10.0.0.2'], key: 'node-10' }, 'node-2': { ...state.hosts['10.0.0.3'], key: 'node-2' } } };
    const none = { mark: { kind: 'none' as const }, layers: {}, rootfs: { present: false } };
    const byName = refreshState(named, [{ host: 'node-10', found: none }, { host: 'node-2', found: none }], { depth: 'shallow', sizeOf });
    expect([...new Set(byName.refresh.drift.map((d) => d.host))]).toEqual(['node-2', 'node-10']);
  });
});

describe('planning from a refreshed state', () => {
  const answers = Object.values(state.hosts).map((hs) => ({ host: hs.key, found: intact(hs) }));

  test('no drift: no changes, and the plan says it was refreshed', () => {
    const out = refreshState(state, answers, { depth: 'shallow', sizeOf });
    const p = plan({ desired, image, state: out.state, refresh: out.refresh });
    expect(p.actions).toEqual([]);
    expect(p.refresh).toEqual({ depth: 'shallow', drift: [], unreachable: [] });
    expect(renderRefreshText(p)).toMatch(/^No drift\./);
  });

  test('a changed layer is sent again although a file of its name is there; a lost rootfs is unpacked; nothing else', () => {
    const changed = structuredClone(answers);
    changed[1].found.layers[hex(state.hosts['10.0.0.3'].layers[0])].size = 1;
    changed[2].found.rootfs = { present: false };
    const out = refreshState(state, changed, { depth: 'shallow', sizeOf });
    const p = plan({ desired, image, state: out.state, refresh: out.refresh });
    expect(p.actions.map((a) => [a.id, a.reason])).toEqual([
      ['send-layers:10.0.0.3', 'drift: layer changed on host'],
      ['unpack:10.0.0.4', 'drift: rootfs missing'],
    ]);
    expect((p.actions[0] as SendLayersAction).resend).toEqual([state.hosts['10.0.0.3'].layers[0]]);
    expect(JSON.parse(renderPlanJson(p)).refresh.drift).toHaveLength(2);
    expect(renderRefreshText(p)).toContain('10.0.0.4: drift: rootfs missing');
  });

  test('a rebuilt member gets its files back but never init-master0 or a join', () => {
    const rebuilt = structuredClone(answers);
    rebuilt[0].found = { mark: { kind: 'none' }, layers: {}, rootfs: { present: false } };
    const out = refreshState(state, rebuilt, { depth: 'shallow', sizeOf });
    const p = plan({ desired, image, state: out.state, refresh: out.refresh });
    expect(p.actions.map((a) => a.id)).toEqual(['send-layers:10.0.0.2', 'unpack:10.0.0.2']);
  });

  test('a saved plan is stale once the hosts drift otherwise; the same drift is fresh', () => {
    const drifted = structuredClone(answers);
    delete drifted[1].found.layers[hex(state.hosts['10.0.0.3'].layers[2])];
    const then = refreshState(state, drifted, { depth: 'shallow', sizeOf });
    const saved = plan({ desired, image, state: then.state, refresh: then.refresh });
    const same = refreshState(state, structuredClone(drifted), { depth: 'shallow', sizeOf });
    expect(() => checkPlanFresh(saved, { state: same.state, desired, image, refresh: same.refresh })).not.toThrow();
    const repaired = refreshState(state, answers, { depth: 'shallow', sizeOf });
    expect(() => checkPlanFresh(saved, { state: repaired.state, desired, image, refresh: repaired.refresh })).toThrow(StalePlanError);
    expect(() => checkPlanFresh(saved, { state: repaired.state, desired, image, refresh: repaired.refresh })).toThrow(/hosts changed since the plan was made/);
  });
});
