/**
 * Provider ALI_CLOUD end to end, through the `ci` a user runs, against the emulator (the real SDK over HTTP, each
 * instance a real local host): the etcd example made from counts, scaled by changing a count, destroyed leaving the
 * emulator empty; the same flow under throttling, 5xx answers and an ambiguous RunInstances timeout, ten times, with
 * never an instance too many; an apply killed while instances are being made, rerun, making no second batch; a lost
 * state rebuilt from tags; and nothing without the cluster's tags ever deleted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as $Ecs from '@alicloud/ecs20140526';
import * as $Vpc from '@alicloud/vpc20160428';
import { labsAvailable } from './helpers/lab.js';
import { CI_BIN } from './helpers/cli.js';
import { cleanupHome, describeRun, etcdctl, makeHome, waitFor, type E2eHome } from './helpers/e2e.js';
import { startTestEmulator, TEST_REGION, type TestEmulator } from './helpers/aliyun-emulator.js';

const EXAMPLE = fileURLToPath(new URL('../examples/etcd', import.meta.url));
const LONG = 600_000;

function clusterfile(name: string, endpoint: string, nodes: number, extra = ''): string {
  return `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: ${name}}
spec:
  image: etcd-example:v1
  provider: ALI_CLOUD
  cloud: {regionId: ${TEST_REGION}, zoneId: cn-hangzhou-h, imageId: debian_12_x64, vpcCidr: 172.16.0.0/16,
          instanceType: ecs.g7.xlarge, systemDisk: 40, endpoint: "${endpoint}", protocol: http${extra}}
  hosts:
  - {count: 1, roles: [master], instanceType: ecs.g7.2xlarge}
  - {count: ${nodes}, roles: [node], dataDisks: [200]}
`;
}

/** Calls the emulator as a patient client would: an answer refused by an injected fault is asked again. */
async function steady<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const code = String((err as { code?: string }).code ?? '');
      if (attempt >= 50 || !/^(Throttling|ServiceUnavailable|InternalError)/.test(code)) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Everything the emulator holds, counted through the SDK. */
async function inventory(emu: TestEmulator) {
  const ecs = emu.ecs();
  const vpc = emu.vpc();
  const instances = (await steady(() => ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: TEST_REGION, maxResults: 100 })))).body?.instances?.instance ?? [];
  return {
    instances: instances.map((i) => ({ id: i.instanceId!, hostName: i.hostName!, status: i.status! })),
    vpcs: (await steady(() => vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: TEST_REGION, pageSize: 50 })))).body?.vpcs?.vpc?.length ?? 0,
    vSwitches: (await steady(() => vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: TEST_REGION, pageSize: 50 })))).body?.vSwitches?.vSwitch?.length ?? 0,
    securityGroups: (await steady(() => ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: TEST_REGION, maxResults: 100 })))).body?.securityGroups?.securityGroup?.length ?? 0,
    keyPairs: (await steady(() => ecs.describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: TEST_REGION, pageSize: 50 })))).body?.keyPairs?.keyPair?.length ?? 0,
  };
}

const EMPTY = { instances: [], vpcs: 0, vSwitches: 0, securityGroups: 0, keyPairs: 0 };

describe.skipIf(!labsAvailable())('provider ALI_CLOUD on the emulator', () => {
  let emu: TestEmulator;
  let home: E2eHome;
  const files: string[] = [];
  let env: NodeJS.ProcessEnv;

  const write = (name: string, nodes: number, endpoint = emu.endpoint) => {
    const f = join(home.dir, `Clusterfile-${name}`);
    writeFileSync(f, clusterfile(name, endpoint, nodes));
    if (!files.includes(f)) files.push(f);
    return f;
  };
  const ciOk = async (args: string[]) => {
    const r = await home.ci(args, { env });
    if (r.code !== 0) throw new Error(describeRun(args, r));
    return r;
  };
  const quiet = async (f: string) => {
    const r = await home.ci(['plan', '-f', f, '--detailed-exitcode'], { env });
    expect(r.code, describeRun(['plan', '-f', f], r)).toBe(0);
  };
  const running = async () => (await inventory(emu)).instances.filter((i) => i.status !== 'Stopping').map((i) => i.hostName).sort();

  beforeAll(async () => {
    emu = await startTestEmulator();
    home = makeHome('ci-e2e-aliyun-');
    env = {
      ALIBABA_CLOUD_ACCESS_KEY_ID: emu.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: emu.accessKeySecret,
      ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true',
      ALIBABA_CLOUD_CLI_PROFILE_DISABLED: 'true',
    };
    await ciOk(['build', '-t', 'etcd-example:v1', EXAMPLE]);
  }, 300_000);

  afterAll(async () => {
    if (home) {
      for (const f of files) await home.ci(['destroy', '-f', f, '--auto-approve'], { env }).catch(() => undefined);
      await cleanupHome(home);
    }
    await emu?.cleanup();
  }, 600_000);

  it('makes 1 master + 2 nodes from counts: a healthy etcd, then a plan with no changes', async () => {
    const f = write('etcd-aliyun', 2);
    const plan = await ciOk(['plan', '-f', f]);
    expect(plan.stdout).toContain('+ infrastructure (ALI_CLOUD)');
    expect(plan.stdout).toContain('+ create 2 × ecs.g7.xlarge instance (node; disks 40 GiB + 200 GiB): etcd-aliyun-node-1, etcd-aliyun-node-2');
    expect(plan.stdout).toContain('address known after apply');
    const r = await ciOk(['apply', '-f', f, '--auto-approve']);
    expect(r.stdout).toContain('Apply complete!');
    expect(await running()).toEqual(['etcd-aliyun-master-1', 'etcd-aliyun-node-1', 'etcd-aliyun-node-2']);
    const state = home.readState('etcd-aliyun')!;
    const master = state.hosts['etcd-aliyun-master-1'];
    expect(master.machine).toMatchObject({ instanceId: expect.stringMatching(/^i-/), instanceType: 'ecs.g7.2xlarge' });
    expect(Object.keys(state.infra ?? {}).sort()).toEqual(['key-pair', 'security-group', 'vpc', 'vswitch']);
    expect(state.pending).toBeUndefined();
    expect(etcdctl(`http://${master.ip}:2379`, ['endpoint', 'health']).match(/is healthy/g)).toHaveLength(1);
    await quiet(f);
    // No access key, secret or password in plans, state or logs.
    for (const text of [plan.stdout, r.stdout, r.stderr, readFileSync(home.statePath('etcd-aliyun'), 'utf8'), home.logs('etcd-aliyun')]) {
      expect(text).not.toContain(emu.accessKeySecret);
      expect(text).not.toContain(emu.accessKeyId);
    }
  }, LONG);

  it('scales the nodes 2 -> 3 -> 1 by the count alone; the newest go first; no changes after each', async () => {
    const up = await ciOk(['apply', '-f', write('etcd-aliyun', 3), '--auto-approve']);
    expect(up.stdout).toContain('create ecs.g7.xlarge instance (node; disks 40 GiB + 200 GiB): started');
    expect(await running()).toEqual(['etcd-aliyun-master-1', 'etcd-aliyun-node-1', 'etcd-aliyun-node-2', 'etcd-aliyun-node-3']);
    await quiet(write('etcd-aliyun', 3));
    const before = home.readState('etcd-aliyun')!;
    const down = await ciOk(['apply', '-f', write('etcd-aliyun', 1), '--auto-approve']);
    expect(down.stdout).toMatch(/\[etcd-aliyun-node-3\] hook leave: done/);
    expect(down.stdout).toMatch(/\[etcd-aliyun-node-2\] delete host: done/);
    expect(await running()).toEqual(['etcd-aliyun-master-1', 'etcd-aliyun-node-1']);
    const after = home.readState('etcd-aliyun')!;
    expect(Object.keys(after.hosts).sort()).toEqual(['etcd-aliyun-master-1', 'etcd-aliyun-node-1']);
    expect(after.hosts['etcd-aliyun-node-1'].machine).toEqual(before.hosts['etcd-aliyun-node-1'].machine);
    await quiet(write('etcd-aliyun', 1));
  }, LONG);

  it('rebuilds a lost state from the resources\' tags; refuses to plan without it', async () => {
    const f = write('etcd-aliyun', 1);
    const lineage = home.readState('etcd-aliyun')!.lineage;
    rmSync(home.statePath('etcd-aliyun'));
    rmSync(`${home.statePath('etcd-aliyun')}.backup`);
    const refused = await home.ci(['plan', '-f', f], { env });
    expect(refused.code, describeRun(['plan'], refused)).toBe(1);
    expect(refused.stderr).toContain('ci state import --from-tags');
    const imported = await ciOk(['state', 'import', '--from-tags', '-f', f]);
    expect(imported.stdout).toContain('Imported 2 hosts and 4 piece(s) of infrastructure');
    expect(home.readState('etcd-aliyun')!.lineage).toBe(lineage);
    await quiet(f);
  }, LONG);

  it('destroys everything: no instances, VPCs, vSwitches, security groups or key pairs are left', async () => {
    const r = await ciOk(['destroy', '-f', write('etcd-aliyun', 1), '--auto-approve']);
    expect(r.stdout).toContain('Destroy complete!');
    expect(await inventory(emu)).toEqual(EMPTY);
    expect(home.readState('etcd-aliyun')!.hosts).toEqual({});
    expect(home.readState('etcd-aliyun')!.infra ?? {}).toEqual({});
  }, LONG);

  it('never deletes what lacks the cluster\'s tags, even when its state names it', async () => {
    const f = write('etcd-aliyun', 1);
    await ciOk(['apply', '-f', f, '--auto-approve']);
    const path = home.statePath('etcd-aliyun');
    const state = JSON.parse(readFileSync(path, 'utf8'));
    const ours = state.infra.vpc.data.vpcId as string;
    // A stranger's VPC named as ours, in the same account, and a state (edited, or mixed up) that names it.
    const stranger = (await emu.vpc().createVpc(new $Vpc.CreateVpcRequest({ regionId: TEST_REGION, cidrBlock: '10.9.0.0/16', vpcName: 'cloudimage-etcd-aliyun' }))).body!.vpcId!;
    state.infra.vpc.data.vpcId = stranger;
    writeFileSync(path, JSON.stringify(state, null, 2));
    const r = await ciOk(['destroy', '-f', f, '--auto-approve']);
    expect(r.stdout + r.stderr).toContain(`VPC ${stranger} does not carry the tags of cluster etcd-aliyun; left as it is`);
    const vpcs = (await emu.vpc().describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: TEST_REGION, pageSize: 50 }))).body?.vpcs?.vpc?.map((v) => v.vpcId).sort() ?? [];
    expect(vpcs).toEqual([ours, stranger].sort());
    for (const vpcId of [ours, stranger]) await emu.vpc().deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: TEST_REGION, vpcId }));
    expect(await inventory(emu)).toEqual(EMPTY);
  }, LONG);
});

describe.skipIf(!labsAvailable())('provider ALI_CLOUD when the API misbehaves', () => {
  let emu: TestEmulator;
  let home: E2eHome;
  let env: NodeJS.ProcessEnv;
  let f: string;

  beforeAll(async () => {
    emu = await startTestEmulator({ faults: { throttling: 0.3, serverError: 0.05, timeoutOnce: ['RunInstances'], retryAfterMs: 50, seed: 7 } });
    home = makeHome('ci-e2e-aliyun-faults-');
    env = {
      ALIBABA_CLOUD_ACCESS_KEY_ID: emu.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: emu.accessKeySecret,
      ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true',
      ALIBABA_CLOUD_CLI_PROFILE_DISABLED: 'true',
    };
    const built = await home.ci(['build', '-t', 'etcd-example:v1', EXAMPLE], { env });
    expect(built.code, describeRun(['build'], built)).toBe(0);
    f = join(home.dir, 'Clusterfile');
    writeFileSync(f, clusterfile('faulty', emu.endpoint, 2, ', timeoutSeconds: 5'));
  }, 300_000);

  afterAll(async () => {
    if (home) {
      await home.ci(['destroy', '-f', f, '--auto-approve'], { env }).catch(() => undefined);
      await cleanupHome(home);
    }
    await emu?.cleanup();
  }, 600_000);

  it('throttling, 5xx answers and an ambiguous RunInstances timeout: exactly the desired instances, ten runs in a row', async () => {
    for (let run = 1; run <= 10; run++) {
      const apply = await home.ci(['apply', '-f', f, '--auto-approve'], { env });
      expect(apply.code, `run ${run}: ${describeRun(['apply'], apply)}`).toBe(0);
      const names = (await inventory(emu)).instances.filter((i) => i.status !== 'Stopping').map((i) => i.hostName).sort();
      expect(names, `run ${run}`).toEqual(['faulty-master-1', 'faulty-node-1', 'faulty-node-2']);
      const plan = await home.ci(['plan', '-f', f, '--detailed-exitcode'], { env });
      expect(plan.code, `run ${run}: ${describeRun(['plan'], plan)}`).toBe(0);
      const destroy = await home.ci(['destroy', '-f', f, '--auto-approve'], { env });
      expect(destroy.code, `run ${run}: ${describeRun(['destroy'], destroy)}`).toBe(0);
      expect(await inventory(emu), `run ${run}`).toEqual(EMPTY);
    }
    // The faults did happen: throttled and failed answers were retried.
    const refused = emu.events.filter((e) => e.type === 'request' && (e.status ?? 200) >= 400);
    expect(refused.some((e) => e.code === 'Throttling.User')).toBe(true);
    expect(refused.some((e) => e.code === 'ServiceUnavailable' || e.code === 'InternalError')).toBe(true);
    // The first RunInstances was performed but its answer never came in time; its retry, with the same ClientToken,
    // made nothing more: three instances a run, thirty in all.
    expect(emu.events.some((e) => e.type === 'request' && e.action === 'RunInstances' && e.message.includes('timeout-once'))).toBe(true);
    expect(emu.events.filter((e) => e.type === 'instance' && e.change === 'host-up')).toHaveLength(30);
  }, 1_800_000);
});

describe.skipIf(!labsAvailable())('provider ALI_CLOUD when an apply is killed while instances are being made', () => {
  let emu: TestEmulator;
  let home: E2eHome;
  let env: NodeJS.ProcessEnv;
  let f: string;

  beforeAll(async () => {
    emu = await startTestEmulator({ latency: 'realistic' });
    home = makeHome('ci-e2e-aliyun-kill-');
    env = {
      ALIBABA_CLOUD_ACCESS_KEY_ID: emu.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: emu.accessKeySecret,
      ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true',
      ALIBABA_CLOUD_CLI_PROFILE_DISABLED: 'true',
    };
    const built = await home.ci(['build', '-t', 'etcd-example:v1', EXAMPLE], { env });
    expect(built.code).toBe(0);
    f = join(home.dir, 'Clusterfile');
    writeFileSync(f, clusterfile('killed', emu.endpoint, 2));
  }, 300_000);

  afterAll(async () => {
    if (home) {
      await home.ci(['destroy', '-f', f, '--auto-approve'], { env }).catch(() => undefined);
      await cleanupHome(home);
    }
    await emu?.cleanup();
  }, 600_000);

  it('the rerun replays the same ClientToken: no second batch of instances', async () => {
    const child = spawn(process.execPath, [CI_BIN, 'apply', '-f', f, '--auto-approve'], { env: { ...process.env, ...env, CI_HOME: home.dir }, stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    // Killed once both groups' RunInstances were accepted, while the instances are still starting.
    await waitFor(() => emu.events.filter((e) => e.type === 'request' && e.action === 'RunInstances' && e.status === 200).length >= 2, 'both RunInstances to be accepted', 120_000, 50);
    child.kill('SIGKILL');
    await exited;
    const tokens = home.readState('killed')!.pending ?? {};
    expect(Object.keys(tokens).sort()).toEqual(['create-host:killed-master', 'create-host:killed-node']);
    const made = (await inventory(emu)).instances.map((i) => i.id).sort();
    expect(made).toHaveLength(3);
    // The lock of the killed apply names a process that is gone: it is reported, and removed by hand as the hint says.
    const lock = JSON.parse(readFileSync(`${home.statePath('killed')}.lock`, 'utf8')) as { id: string };
    const unlocked = await home.ci(['force-unlock', lock.id, '-f', f], { env });
    expect(unlocked.code, describeRun(['force-unlock'], unlocked)).toBe(0);
    const rerun = await home.ci(['apply', '-f', f, '--auto-approve'], { env });
    expect(rerun.code, describeRun(['apply'], rerun)).toBe(0);
    const after = await inventory(emu);
    expect(after.instances.map((i) => i.id).sort()).toEqual(made);
    expect(home.readState('killed')!.pending).toBeUndefined();
    await home.ci(['plan', '-f', f, '--detailed-exitcode'], { env }).then((r) => expect(r.code, describeRun(['plan'], r)).toBe(0));
  }, LONG);
});
