/**
 * The layer relay's pipeline on real local hosts over SSH. A one-host cluster holds a 16 MB layer; its link is
 * shaped so the layer takes seconds. Scaled to four hosts, the new hosts form a chain, each serving the layer while
 * it still receives it. The serving process of one of them is killed mid-stream (by its PID): its receivers resume
 * from the bytes they hold, from another source, and every host ends with a verified copy; no grant, key, connection between hosts or partial
 * file is left. Then every copy on the hosts is damaged in place (same size, so a shallow refresh cannot tell): a
 * fifth host receives wrong bytes from each source it tries, detects them by digest, and ends with the right layer
 * (sent from this machine), unpacked from verified bytes only.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, clusterDoc, describeRun, labExec, makeHome, serialSteps, writeClusterfile, type E2eHome } from './helpers/e2e.js';
import { writeImageContext } from './bench/fixture.js';
import { LocalLab } from '../providers/local/lab.js';
import { bridgeName } from '../providers/local/names.js';
import { execFileSync } from 'node:child_process';

const CLUSTER = 'relay-pipe';
const BIG = 16_000_000;
const LAYERS = '/var/lib/cloudimage/layers';

function clusterfile(path: string, nodes: number): string {
  const hosts: Record<string, unknown>[] = [{ count: 1, roles: ['master'], kind: 'light' }];
  if (nodes > 0) hosts.push({ count: nodes, roles: ['node'], kind: 'light' });
  return writeClusterfile(path, clusterDoc(CLUSTER, { image: 'pipe:v1', provider: 'LOCAL', hosts }));
}

/** PIDs of processes in a host's network namespace whose command line has all the given words. */
function procsIn(netns: string, words: string[]): number[] {
  const nsIno = statSync(`/run/netns/${netns}`).ino;
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (statSync(`/proc/${p}/ns/net`).ino !== nsIno) continue;
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ');
      if (words.every((w) => cmd.includes(w))) out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * How far a process has read in the partial layer file it follows (tail reopens /dev/fd/3, so its own descriptor
 * of that file, not fd 3, has the position).
 */
function readOffset(pid: number): number {
  try {
    let pos = -1;
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!target.includes('.partial')) continue;
      pos = Math.max(pos, Number(/pos:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? -1));
    }
    return pos < 0 ? Infinity : pos;
  } catch {
    return Infinity;
  }
}

describe.skipIf(!labsAvailable())('layer relay pipeline on LOCAL hosts', () => {
  const step = serialSteps(300_000);
  let home: E2eHome;
  let cf: string;
  let digest: string;
  let blobSum: string;

  const exec = async (host: string, cmd: string) => {
    const r = await labExec(home.labDir(CLUSTER), host, cmd);
    expect(r.code, `${host}: ${cmd}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const hosts = async () => (await LocalLab.open(home.labDir(CLUSTER))).hosts().map((h) => h.name);
  const netnsOf = (host: string): string => JSON.parse(readFileSync(join(home.labDir(CLUSTER), 'lab.json'), 'utf8')).hosts[host].netns;

  beforeAll(async () => {
    home = makeHome('ci-e2e-relay-pipe-');
    cf = join(home.dir, 'Clusterfile');
    const ctx = join(home.dir, 'context');
    await writeImageContext(ctx, BIG);
    blobSum = createHash('sha256').update(readFileSync(join(ctx, 'big', 'blob.bin'))).digest('hex');
    await home.ciOk(['build', '-q', '-t', 'pipe:v1', ctx]);
    clusterfile(cf, 0);
    await home.ciOk(['apply', '-f', cf, '--auto-approve']);
    // The big layer: the largest file the master holds.
    const master = (await hosts())[0];
    digest = (await exec(master, `ls -S ${LAYERS} | head -1`)).trim().replace(/\.tar\.gz$/, '');
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
  }, 300_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, [cf]);
  }, 300_000);

  const checkEveryHost = async () => {
    for (const h of await hosts()) {
      const out = await exec(h, `sha256sum ${LAYERS}/${digest}.tar.gz | cut -d' ' -f1; ls ${LAYERS} | grep -c partial || true; ` +
        `grep -c cloudimage-relay /root/.ssh/authorized_keys || true; ls /var/lib/cloudimage/relay 2>/dev/null | wc -l; ` +
        `sha256sum /var/lib/cloudimage/clusters/${CLUSTER}/rootfs/big/blob.bin | cut -d' ' -f1`);
      const [sum, partials, grants, relayFiles, unpacked] = out.trim().split('\n');
      expect({ h, sum, partials, grants, relayFiles, unpacked }).toEqual({ h, sum: digest, partials: '0', grants: '0', relayFiles: '0', unpacked: blobSum });
      // No connection kept between hosts outlives the apply.
      expect(procsIn(netnsOf(h), ['ssh', '/var/lib/cloudimage/relay'])).toEqual([]);
    }
  };

  step('a source killed mid-stream: its receivers fetch from another source and all verify', async () => {
    const lab = await LocalLab.open(home.labDir(CLUSTER));
    const master = (await hosts())[0];
    // This machine's uplink too (the bridge's egress), so no source is fast enough to finish before the kill.
    const bridge = bridgeName(lab.id);
    const tbf = ['tbf', 'rate', '24000kbit', 'burst', '300kb', 'latency', '400ms'];
    await lab.shapeLink(master, 24_000);
    execFileSync('tc', ['qdisc', 'replace', 'dev', bridge, 'root', ...tbf]);
    try {
      clusterfile(cf, 3);
      const apply = home.ci(['apply', '-f', cf, '--auto-approve']);
      let killed: { host: string; pid: number } | undefined;
      const deadline = Date.now() + 60_000;
      let done = false;
      void apply.then(() => (done = true));
      while (!killed && !done && Date.now() < deadline) {
        for (const h of (await hosts()).filter((n) => n !== master)) {
          let ns: string;
          try {
            ns = netnsOf(h);
          } catch {
            continue;
          }
          // A host serving a layer it is still receiving: tail following its .partial.
          // Killed only well before the end of the layer (how far it read is its file offset), so its receiver
          // is really cut off mid-stream.
          // Past the first MB, so the receiver holds a real prefix to resume from.
          const pid = procsIn(ns, ['tail', '--pid=', '/dev/fd/3']).find((p) => readOffset(p) > 1_000_000 && readOffset(p) < BIG / 2);
          if (pid) {
            process.kill(pid, 'SIGKILL');
            killed = { host: h, pid };
            break;
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      const r = await apply;
      expect(r.code, describeRun(['apply'], r)).toBe(0);
      const out = r.stdout + r.stderr + home.logs(CLUSTER);
      expect(killed, `no host was caught serving a partial layer:\n${out}`).toBeDefined();
      expect(out).toMatch(new RegExp(`layer relay from ${killed!.host} failed`));
      // Its receiver kept what it had and asked the next source only for the rest (the digest check below is whole).
      const resumed = [...out.matchAll(new RegExp(`layer ${digest.slice(0, 12)}: resuming at byte (\\d+) of (\\d+)`, 'g'))].map((m) => [Number(m[1]), Number(m[2])]);
      expect(resumed.length, out).toBeGreaterThan(0);
      for (const [at, size] of resumed) expect(at > 0 && at < size).toBe(true);
    } finally {
      await lab.shapeLink(master, 0);
      execFileSync('tc', ['qdisc', 'del', 'dev', bridge, 'root']);
    }
    expect(await hosts()).toHaveLength(4);
    await checkEveryHost();
  });

  step('wrong bytes from a source are detected by digest and fetched from elsewhere, never unpacked', async () => {
    const before = await hosts();
    // Damaged in place, size kept: a shallow refresh sees nothing, only the receiver's digest check can.
    for (const h of before) await exec(h, `printf 'XXXXXXXX' | dd of=${LAYERS}/${digest}.tar.gz bs=1 seek=1000000 conv=notrunc 2>/dev/null`);
    clusterfile(cf, 4);
    const r = await home.ci(['apply', '-f', cf, '--auto-approve']);
    expect(r.code, describeRun(['apply'], r)).toBe(0);
    expect(r.stdout + r.stderr + home.logs(CLUSTER)).toMatch(/do not match the layer digest/);
    const added = (await hosts()).filter((h) => !before.includes(h));
    expect(added).toHaveLength(1);
    const out = await exec(added[0], `sha256sum ${LAYERS}/${digest}.tar.gz /var/lib/cloudimage/clusters/${CLUSTER}/rootfs/big/blob.bin | cut -d' ' -f1; ls ${LAYERS} | grep -c partial || true`);
    expect(out.trim().split('\n')).toEqual([digest, blobSum, '0']);
    for (const h of before) await exec(h, `rm -f ${LAYERS}/${digest}.tar.gz`);
  });
});
