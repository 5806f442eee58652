/**
 * Fan-out under a narrow operator uplink: the lab bridge's egress (traffic from this machine to the hosts, not
 * between hosts) is shaped with tbf, then the same image goes to N hosts with the layer relay on and off.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyCluster, destroyCluster } from '../../engine/executor/converge.js';
import { labDirFor } from '../../providers/local/provider.js';
import { LocalLab } from '../../providers/local/lab.js';
import { bridgeName } from '../../providers/local/names.js';
import { CI_BIN, localClusterfile, run, writeImageContext } from './fixture.js';
import { timeOnce } from './stats.js';


export interface FanoutCase {
  relay: boolean;
  ms: number;
  uplinkBytes: number;
  receivedBytes: number;
}

export interface FanoutFigures {
  hosts: number;
  uplinkMbit: number;
  bigLayerBytes: number;
  cases: FanoutCase[];
}

export async function benchFanout(opts: { hosts: number; uplinkMbit: number; bigLayerBytes: number; log: (l: string) => void }): Promise<FanoutFigures> {
  const work = await fs.mkdtemp(join(tmpdir(), 'ci-fanout-'));
  const home = join(work, 'home');
  const env = { ...process.env, CI_HOME: home };
  const cases: FanoutCase[] = [];
  try {
    const ctx = join(work, 'context');
    await writeImageContext(ctx, opts.bigLayerBytes);
    await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'fanout:v1', ctx], { env });
    for (const relay of [false, true]) {
      const name = `fanout-${relay ? 'relay' : 'direct'}`;
      const clusterfile = join(work, `${name}.yaml`);
      await fs.writeFile(clusterfile, localClusterfile(name, 'fanout:v1', opts.hosts));
      const lab = await LocalLab.open(labDirFor(home, name));
      await run('tc', ['qdisc', 'replace', 'dev', bridgeName(lab.id), 'root', 'tbf', 'rate', `${opts.uplinkMbit}mbit`, 'burst', '256kb', 'latency', '100ms']);
      const base = { clusterfile, home, env, relay, confirm: async () => true, reporter: () => ({ event() {} }) };
      try {
        opts.log(`${name}: apply to ${opts.hosts} hosts over a ${opts.uplinkMbit} Mbit/s uplink`);
        const t = await timeOnce(() => applyCluster(base));
        const r = t.result.result!;
        if (r.failed.length) throw new Error(`${name}: ${r.failed.map((f) => f.error.message).join('; ')}`);
        cases.push({ relay, ms: t.ms, uplinkBytes: r.uplinkBytes, receivedBytes: [...r.bytesSent.values()].reduce((a, b) => a + b, 0) });
      } finally {
        await destroyCluster(base).catch(() => undefined);
        await (await LocalLab.open(labDirFor(home, name))).destroy().catch(() => undefined);
      }
    }
    return { hosts: opts.hosts, uplinkMbit: opts.uplinkMbit, bigLayerBytes: opts.bigLayerBytes, cases };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
