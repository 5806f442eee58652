/**
 * Provider ALI_CLOUD on the emulator with realistic latencies (instances take seconds to start, sshd seconds more,
 * every answer tens of milliseconds): a cluster of 3 masters + 3 nodes made from counts, re-applied with no change,
 * scaled up by one node and back, and destroyed. For each step: wall time, API calls the emulator answered (retries
 * included), and for steps that make instances the time the cloud itself took to boot them (from the first
 * instance's creation to the last one's sshd answering, as the emulator drew it) and to make the network ready, so
 * `overheadMs` is what cloudimage adds on top of waiting for the cloud.
 */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyCluster, destroyCluster, type ConvergeResult } from '../../engine/executor/converge.js';
import type { Reporter } from '../../engine/executor/events.js';
import { resetEmulatorData, startEmulator, type RunningEmulator } from '../../providers/aliyun/emulator/index.js';
import { storePath } from '../../providers/aliyun/emulator/store.js';
import { CI_BIN, run, writeImageContext } from './fixture.js';
import { round, timeOnce } from './stats.js';

export interface AliyunStep {
  ms: number;
  actions: number;
  apiCalls: number;
  /** Steps that make instances: how long the cloud took to boot them, and wall time minus that. */
  bootMs?: number;
  wallMinusBootMs?: number;
  /** How long the VPC and the vSwitch made in this step took to become Available, one after the other. */
  networkMs?: number;
  /** Wall time minus every wait for the cloud: what cloudimage itself took (API calls, install over SSH). */
  overheadMs?: number;
  /** From the start to the first instance made, and from the last one booted to the end (the install). */
  beforeFirstInstanceMs?: number;
  afterBootMs?: number;
}

export interface AliyunFigures {
  latency: 'realistic';
  masters: number;
  nodes: number;
  create?: AliyunStep;
  noop?: AliyunStep;
  scaleUpOneNode?: AliyunStep;
  scaleDownOneNode?: AliyunStep;
  destroy?: AliyunStep;
  error?: string;
}

const REGION = 'cn-hangzhou';

function clusterfile(endpoint: string, masters: number, nodes: number): string {
  return `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: bench-aliyun}
spec:
  image: bench-app:v1
  provider: ALI_CLOUD
  cloud: {regionId: ${REGION}, zoneId: cn-hangzhou-h, imageId: debian_12_x64, vpcCidr: 172.16.0.0/16,
          instanceType: ecs.g7.xlarge, systemDisk: 40, endpoint: "${endpoint}", protocol: http}
  hosts:
  - {count: ${masters}, roles: [master], instanceType: ecs.g7.2xlarge}
  - {count: ${nodes}, roles: [node], dataDisks: [200]}
`;
}

interface Settling {
  createdAt: number;
  availableAt: number;
}

interface InstanceTimes {
  createdAt: number;
  startingUntil: number;
  sshdDelayMs: number;
  hostUpAt?: number;
}

/** From the first instance created at or after `since` to the last one's sshd answering. */
async function cloudWaits(dataDir: string, since: number): Promise<{ first: number; last: number; networkMs: number } | undefined> {
  const store = JSON.parse(await fs.readFile(storePath(dataDir), 'utf8')) as {
    instances: Record<string, InstanceTimes>;
    vpcs: Record<string, Settling>;
    vSwitches: Record<string, Settling>;
  };
  const made = Object.values(store.instances).filter((i) => i.createdAt >= since);
  if (made.length === 0) return undefined;
  const first = Math.min(...made.map((i) => i.createdAt));
  const last = Math.max(...made.map((i) => Math.max(i.startingUntil, i.hostUpAt ?? 0) + i.sshdDelayMs));
  const settling = [...Object.values(store.vpcs), ...Object.values(store.vSwitches)].filter((r) => r.createdAt >= since);
  return { first, last, networkMs: settling.reduce((sum, r) => sum + (r.availableAt - r.createdAt), 0) };
}

function check(what: string, r: ConvergeResult | undefined, tail: string[]): ConvergeResult {
  if (!r) throw new Error(`${what}: no state to act on`);
  const res = r.result;
  if (res && (res.failed.length > 0 || res.interrupted)) {
    const errs = res.failed.map((f) => `${f.action.id}: ${f.error.message}`).join('; ');
    throw new Error(`${what} failed: ${res.interrupted ? 'interrupted; ' : ''}${errs}\n${tail.join('\n')}`);
  }
  return r;
}

export async function benchAliyun(opts: { masters: number; nodes: number; bigLayerBytes: number; log: (line: string) => void; signal: AbortSignal }): Promise<AliyunFigures> {
  const figures: AliyunFigures = { latency: 'realistic', masters: opts.masters, nodes: opts.nodes };
  const work = await fs.mkdtemp(join(tmpdir(), 'ci-bench-aliyun-'));
  const home = join(work, 'home');
  const dataDir = join(work, 'emulator');
  const accessKeyId = 'LTAI5tBench';
  const accessKeySecret = randomBytes(15).toString('base64url');
  let calls = 0;
  let emulator: RunningEmulator | undefined;
  const tail: string[] = [];
  const file = join(work, 'Clusterfile');
  const env = {
    ...process.env,
    CI_HOME: home,
    ALIBABA_CLOUD_ACCESS_KEY_ID: accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: accessKeySecret,
    ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true',
    ALIBABA_CLOUD_CLI_PROFILE_DISABLED: 'true',
  };
  const reporter = (): Reporter => ({
    event(e) {
      if (e.type === 'output' || e.type === 'note') {
        tail.push(JSON.stringify(e));
        if (tail.length > 20) tail.shift();
      }
    },
  });
  const base = { clusterfile: file, home, env, confirm: async () => true, reporter, signal: opts.signal };
  let made = false;
  try {
    const ctx = join(work, 'context');
    await writeImageContext(ctx, opts.bigLayerBytes);
    opts.log('aliyun: building the bench image');
    await run(process.execPath, [CI_BIN, 'build', '-q', '-t', 'bench-app:v1', ctx], { env });
    emulator = await startEmulator({
      host: '127.0.0.1', port: 0, accessKeyId, accessKeySecret, dataDir, latency: 'realistic',
      onEvent: (e) => {
        if (e.type === 'request') calls++;
      },
    });
    const step = async (what: string, masters: number, nodes: number, destroy = false): Promise<AliyunStep> => {
      await fs.writeFile(file, clusterfile(emulator!.endpoint, masters, nodes));
      opts.log(`aliyun: ${what} (${masters} masters + ${nodes} nodes)`);
      const before = calls;
      const since = Date.now();
      made = true;
      const t = await timeOnce(() => (destroy ? destroyCluster(base) : applyCluster(base)));
      const r = check(what, t.result, tail);
      const s: AliyunStep = { ms: round(t.ms), actions: r.plan.actions.length, apiCalls: calls - before };
      const boot = destroy ? undefined : await cloudWaits(dataDir, since);
      if (boot !== undefined) {
        s.bootMs = boot.last - boot.first;
        s.wallMinusBootMs = round(t.ms - s.bootMs);
        s.networkMs = boot.networkMs;
        s.overheadMs = round(t.ms - s.bootMs - boot.networkMs);
        s.beforeFirstInstanceMs = boot.first - since;
        s.afterBootMs = round(since + t.ms - boot.last);
      }
      return s;
    };
    figures.create = await step('first apply', opts.masters, opts.nodes);
    figures.noop = await step('no-op apply', opts.masters, opts.nodes);
    figures.scaleUpOneNode = await step('scale up', opts.masters, opts.nodes + 1);
    figures.scaleDownOneNode = await step('scale down', opts.masters, opts.nodes);
    figures.destroy = await step('destroy', opts.masters, opts.nodes, true);
    made = false;
  } catch (err) {
    figures.error = (err as Error).message;
  } finally {
    if (made && emulator) {
      opts.log('aliyun: destroying after a failure');
      await destroyCluster({ ...base, signal: undefined }).catch(() => undefined);
    }
    await emulator?.stop().catch(() => undefined);
    await resetEmulatorData(dataDir).catch((err: Error) => opts.log(`aliyun: releasing the emulator's hosts failed: ${err.message}`));
    await fs.rm(work, { recursive: true, force: true });
  }
  return figures;
}
