/**
 * Provider ALI_CLOUD end to end, through the `ci` a user runs, against the emulator (the real SDK over HTTP, each
 * instance a real local host): the etcd example made from counts, scaled by changing a count, destroyed leaving the
 * emulator empty; a lost state rebuilt from tags; nothing without the cluster's tags ever deleted; and the README's
 * walkthrough as written. Faults and a killed apply are in e2e-aliyun-faults.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as $Vpc from '@alicloud/vpc20160428';
import { labsAvailable } from './helpers/lab.js';
import { CI_BIN } from './helpers/cli.js';
import { cleanupHome, describeRun, etcdctl, makeHome, waitFor, type E2eHome } from './helpers/e2e.js';
import { startTestEmulator, TEST_REGION, type TestEmulator } from './helpers/aliyun-emulator.js';
import { clusterfile, emulatorEnv, EMPTY, inventory } from './helpers/aliyun-e2e.js';
import { resetEmulatorData } from '../providers/aliyun/emulator/index.js';

const EXAMPLE = fileURLToPath(new URL('../examples/etcd', import.meta.url));
const README = fileURLToPath(new URL('../README.md', import.meta.url));
const LONG = 600_000;

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
    env = emulatorEnv(emu);
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
    expect(plan.stdout).toContain('address (known after apply)');
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

/** Whether something already listens on the port (a user's own emulator, say). */
const portTaken = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.createServer().once('error', () => resolve(true)).listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });

describe.skipIf(!labsAvailable())('the README: from nothing to a cluster on the emulator', () => {
  const example = join(EXAMPLE, 'Clusterfile.aliyun');
  let home: E2eHome;
  let env: NodeJS.ProcessEnv;
  let emulator: ReturnType<typeof spawn> | undefined;
  let emulatorOut = '';

  beforeAll(async () => {
    home = makeHome('ci-e2e-aliyun-readme-');
    // As the README has it: one access key of the user's choosing, exported for the emulator and for ci.
    env = { ALIBABA_CLOUD_ACCESS_KEY_ID: 'LTAI-local', ALIBABA_CLOUD_ACCESS_KEY_SECRET: randomBytes(16).toString('hex') };
    // The example names 127.0.0.1:8900; should that be taken on this machine, the documented override points ci elsewhere.
    const listen = (await portTaken(8900)) ? '127.0.0.1:0' : '127.0.0.1:8900';
    emulator = spawn(process.execPath, [CI_BIN, 'emulator', 'aliyun', '--listen', listen], {
      env: { ...process.env, ...env, CI_HOME: home.dir, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    emulator.stdout!.on('data', (b) => (emulatorOut += b));
    emulator.stderr!.on('data', (b) => (emulatorOut += b));
    const endpoint = await waitFor(() => /endpoint:\s+(\S+)/.exec(emulatorOut)?.[1], 'the emulator to print its endpoint', 60_000, 100);
    if (listen.endsWith(':0')) env.CI_ALIYUN_ENDPOINT = endpoint;
  }, 120_000);

  afterAll(async () => {
    if (home) await home.ci(['destroy', '-f', example, '--auto-approve'], { env }).catch(() => undefined);
    if (emulator && emulator.exitCode === null) {
      const exited = new Promise((r) => emulator!.once('exit', r));
      emulator.kill('SIGTERM');
      await exited;
    }
    if (home) {
      await resetEmulatorData(join(home.dir, 'emulators', 'aliyun')).catch(() => undefined);
      await cleanupHome(home);
    }
  }, 600_000);

  it('builds, plans as the README shows, applies a healthy etcd, destroys, and the stopped emulator leaves no network', async () => {
    await home.ciOk(['build', '-t', 'etcd-example:v1', EXAMPLE], { env });
    const plan = await home.ciOk(['plan', '-f', example], { env });
    const readme = readFileSync(README, 'utf8');
    const shown = /The plan shows the infrastructure first[^]*?```text\n([^]*?)```/.exec(readme)![1].split('\n').filter((l) => l.trim() && l.trim() !== '...');
    expect(shown.length).toBeGreaterThan(6);
    for (const line of shown) expect(plan.stdout).toContain(line);

    const apply = await home.ciOk(['apply', '-f', example, '--auto-approve'], { env });
    expect(apply.stdout).toContain('Apply complete!');
    const state = home.readState('etcd-cloud')!;
    expect(Object.keys(state.hosts).sort()).toEqual(['etcd-cloud-master-1', 'etcd-cloud-node-1', 'etcd-cloud-node-2']);
    const master = state.hosts['etcd-cloud-master-1'];
    expect(etcdctl(`http://${master.ip}:2379`, ['endpoint', 'health']).match(/is healthy/g)).toHaveLength(1);
    const list = await home.ciOk(['state', 'list', '-f', example], { env });
    expect(list.stdout).toMatch(/etcd-cloud-master-1 \*\s+10\.250\./);

    const destroy = await home.ciOk(['destroy', '-f', example, '--auto-approve'], { env });
    expect(destroy.stdout).toContain('Destroy complete!');
    const exited = new Promise<number | null>((r) => emulator!.once('exit', (code) => r(code)));
    emulator!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(emulatorOut).not.toContain(env.ALIBABA_CLOUD_ACCESS_KEY_SECRET);
    // Its data stays for the next start; with no instance left, its lab (bridge, subnet, hosts) is gone.
    expect(existsSync(join(home.dir, 'emulators', 'aliyun', 'store.json'))).toBe(true);
    expect(existsSync(join(home.dir, 'emulators', 'aliyun', 'lab'))).toBe(false);
  }, LONG);
});
