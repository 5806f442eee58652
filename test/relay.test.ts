import { describe, expect, it } from 'vitest';
import { LayerDistributor, grantScript, verifiedKnownHosts, type Source } from '../engine/executor/relay.js';
import { sha256 } from '../engine/kernel/digest.js';
import { fingerprintOfPublicKeyLine } from '../providers/ssh/fingerprint.js';

const L = sha256('layer');

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

  it('grants only a validating, read-only forced command limited to cluster addresses', () => {
    const s = grantScript('ssh-ed25519 AAAAC3Nza comment', ['10.0.0.2', '10.0.0.3']);
    expect(s).toContain('restrict,from="10.0.0.2,10.0.0.3",command="/var/lib/cloudimage/bin/serve-layer" ssh-ed25519 AAAAC3Nza cloudimage-relay');
    expect(s).toContain('*[!0-9a-f]*');
  });

  it('trusts a serving host only under the host key pinned for it', () => {
    const line = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBD9pIjL8tDkrMhAYijCN3PGSPlsIHgL7uRNuKcS/yV8 root@h';
    const pinned = fingerprintOfPublicKeyLine(line);
    expect(verifiedKnownHosts('10.0.0.2', line + '\n', pinned)).toBe('10.0.0.2 ' + line.split(' ').slice(0, 2).join(' ') + '\n');
    expect(verifiedKnownHosts('10.0.0.2', line, 'SHA256:other')).toBeUndefined();
  });
});
