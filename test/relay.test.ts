import { describe, expect, it } from 'vitest';
import { LayerDistributor, grantScript, receiveScript, relayOwner, revokeScript, serveScript, transferOutcome, verifiedKnownHosts, type Source } from '../engine/executor/relay.js';
import { sha256 } from '../engine/kernel/digest.js';
import { fingerprintOfPublicKeyLine } from '../providers/ssh/fingerprint.js';

const L = sha256('layer');
const OWNER = relayOwner('c', 'lineage');

/** Simulates rounds of transfers: each acquired source delivers the layer one round later. */
async function fanOut(hosts: number, operatorStreams: number, hostStreams: number) {
  const d = new LayerDistributor({ operatorStreams, hostStreams, canServe: () => true });
  const names = Array.from({ length: hosts }, (_, i) => `h${i}`);
  const sources = new Map<string, Source>();
  let pending = names.map((h) => d.acquire(L, h).then((s) => sources.set(h, s)));
  let rounds = 0;
  let fromOperator = 0;
  const done = new Set<string>();
  while (done.size < hosts) {
    await new Promise((r) => setImmediate(r));
    const inFlight = [...sources].filter(([h]) => !done.has(h));
    rounds++;
    for (const [h, s] of inFlight) {
      if (s.kind === 'operator') fromOperator++;
      done.add(h);
      d.markHeld(L, h);
    }
    for (const [, s] of inFlight) d.release(s);
    if (rounds > hosts + 2) throw new Error('no progress');
  }
  await Promise.all(pending);
  pending = [];
  return { rounds, fromOperator, sources };
}

describe('layer relay', () => {
  it('fans a layer out like a tree: the operator sends it to few hosts, holders serve the rest', async () => {
    const r = await fanOut(31, 1, 2);
    // Holders roughly triple each round (operator + 2 streams per holder): logarithmic rounds, not 31, and the
    // operator's uplink carries one copy per round at most.
    expect(r.rounds).toBeLessThanOrEqual(5);
    expect(r.fromOperator).toBeLessThanOrEqual(r.rounds);
    for (const [h, s] of r.sources) if (s.kind === 'host') expect(s.key).not.toBe(h);
  });

  it('a broken source is not offered again', async () => {
    const d = new LayerDistributor({ operatorStreams: 1, hostStreams: 4, canServe: () => true });
    d.markHeld(L, 'a');
    const first = await d.acquire(L, 'b');
    expect(first).toEqual({ kind: 'host', key: 'a' });
    d.markBroken('a');
    d.release(first);
    expect(await d.acquire(L, 'c')).toEqual({ kind: 'operator' });
  });

  it('with one stream per source, the receivers of a layer form a chain the operator feeds once', async () => {
    const d = new LayerDistributor({ operatorStreams: 1, hostStreams: 1, canServe: () => true });
    const names = Array.from({ length: 8 }, (_, i) => `h${i}`);
    const got = new Map<string, Source>();
    for (const h of names) {
      // A host that is still receiving serves at once: no host waits for another to finish.
      const s = await d.acquire(L, h);
      got.set(h, s);
      d.markReceiving(L, h, s);
    }
    const fromOperator = [...got.values()].filter((s) => s.kind === 'operator');
    expect(fromOperator).toHaveLength(1);
    const sources = [...got.values()].filter((s) => s.kind === 'host').map((s) => (s as { key: string }).key);
    // Each host feeds one other: a chain, every uplink used once.
    expect(new Set(sources).size).toBe(7);
    for (const [h, s] of got) if (s.kind === 'host') expect(s.key).not.toBe(h);
  });

  it('a receiver that lost its source is never given one it feeds itself; it waits for a free source instead', async () => {
    const d = new LayerDistributor({ operatorStreams: 1, hostStreams: 2, canServe: () => true });
    const a = await d.acquire(L, 'a');
    d.markReceiving(L, 'a', a);
    const b = await d.acquire(L, 'b');
    expect(b).toEqual({ kind: 'host', key: 'a' });
    d.markReceiving(L, 'b', b);
    const c = await d.acquire(L, 'b2');
    d.markReceiving(L, 'b2', c);
    const cc = await d.acquire(L, 'c');
    d.markReceiving(L, 'c', cc);
    expect(cc.kind === 'host' && ['a', 'b', 'b2'].includes(cc.key)).toBe(true);
    // b's stream from a breaks; a is ruled out. Hosts fed by b (directly or further down) are no source for b.
    d.markNotReceiving(L, 'b');
    d.markBroken('a');
    d.release(b);
    const fedByB = [...['b2', 'c']].filter((h) => {
      const s = h === 'c' ? cc : c;
      return s.kind === 'host' && s.key === 'b';
    });
    const again = await d.acquire(L, 'b');
    expect(again.kind).toBe('host');
    if (again.kind === 'host') {
      expect(again.key).not.toBe('a');
      expect(fedByB).not.toContain(again.key);
    }
  });

  it('a receiver is told when its source stops receiving the layer, and only then', async () => {
    const d = new LayerDistributor({ operatorStreams: 1, hostStreams: 1, canServe: () => true });
    const a = await d.acquire(L, 'a');
    d.markReceiving(L, 'a', a);
    const b = await d.acquire(L, 'b');
    expect(b).toEqual({ kind: 'host', key: 'a' });
    const told: string[] = [];
    const unwatch = d.watchSource(L, 'a', () => told.push('b'));
    d.watchSource(sha256('other'), 'a', () => told.push('other layer'));
    d.watchSource(L, 'x', () => told.push('other source'));
    d.markNotReceiving(L, 'a');
    expect(told).toEqual(['b']);
    unwatch();
    d.markNotReceiving(L, 'a');
    expect(told).toEqual(['b']);
  });

  it('prefers a host holding the whole layer over one still receiving it', async () => {
    const d = new LayerDistributor({ operatorStreams: 1, hostStreams: 1, canServe: () => true });
    const r = await d.acquire(L, 'r');
    d.markReceiving(L, 'r', r);
    d.markHeld(L, 'full');
    expect(await d.acquire(L, 'x')).toEqual({ kind: 'host', key: 'full' });
    expect(await d.acquire(L, 'y')).toEqual({ kind: 'host', key: 'r' });
  });

  it('waits when every source is busy, and goes on when one is released', async () => {
    const d = new LayerDistributor({ operatorStreams: 1, hostStreams: 1, canServe: () => true });
    const first = await d.acquire(L, 'a');
    let second: Source | undefined;
    void d.acquire(L, 'b').then((s) => (second = s));
    await new Promise((r) => setImmediate(r));
    expect(second).toBeUndefined();
    d.markReceiving(L, 'a', first);
    await new Promise((r) => setImmediate(r));
    expect(second).toEqual({ kind: 'host', key: 'a' });
  });

  it('the serving command validates the name, reads only layers, and follows a partial file only while its writer lives', () => {
    const s = serveScript(OWNER);
    expect(s).toContain('*[!0-9a-f]*');
    expect(s).toContain('[ ${#n} -eq 64 ]');
    expect(s).toContain('tail -c +"$s" -f --pid="$pid"');
    expect(s).not.toMatch(/>\s*"\$f"|rm |mv /);
  });

  it('a receiver keeps a layer only when the whole file matches its digest; exit codes say who failed', () => {
    const r = receiveScript(L, 1234, 'exec cat', OWNER, { offset: 0, token: 'abcdefabcdef' });
    expect(r).toContain('sha256sum');
    expect(r).toMatch(/if \[ "\$sum" = [0-9a-f]{64} \] && \[ "\$got" -eq 1234 \]; then chmod 0644 .* && mv -f /);
    expect(transferOutcome(4)).toBe('corrupt');
    expect(transferOutcome(5)).toBe('unreachable');
    expect(transferOutcome(6)).toBe('short');
    expect(transferOutcome(7)).toBe('short');
    expect(transferOutcome(0)).toBeUndefined();
    expect(revokeScript(OWNER)).toContain('-O exit');
  });

  it('grants only a validating, read-only forced command limited to cluster addresses', () => {
    const s = grantScript('ssh-ed25519 AAAAC3Nza comment', ['10.0.0.2', '10.0.0.3'], OWNER);
    expect(s).toContain(`restrict,from="10.0.0.2,10.0.0.3",command="/var/lib/cloudimage/relay/${OWNER}/serve-layer" ssh-ed25519 AAAAC3Nza cloudimage-relay-${OWNER}`);
    expect(s).toContain('*[!0-9a-f]*');
  });

  it('trusts a serving host only under the host key pinned for it', () => {
    const line = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBD9pIjL8tDkrMhAYijCN3PGSPlsIHgL7uRNuKcS/yV8 root@h';
    const pinned = fingerprintOfPublicKeyLine(line);
    expect(verifiedKnownHosts('10.0.0.2', line + '\n', pinned)).toBe('10.0.0.2 ' + line.split(' ').slice(0, 2).join(' ') + '\n');
    expect(verifiedKnownHosts('10.0.0.2', line, 'SHA256:other')).toBeUndefined();
  });
});
