/**
 * Emulated ECS instances are real local hosts: made side by side for one RunInstances, Running once their host is up,
 * reachable over SSH with the imported key pair and the instance's password, removed when released. Also their
 * state transitions, paging and filters, ClientToken replay, release rules, and survival across a restart.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as $Ecs from '@alicloud/ecs20140526';
import * as $Vpc from '@alicloud/vpc20160428';
import { LocalLab } from '../providers/local/lab.js';
import { connectSsh } from '../providers/ssh/index.js';
import { labsAvailable } from './helpers/lab.js';
import { TEST_REGION as R, TEST_ZONE, apiError, startTestEmulator, until, type TestEmulator } from './helpers/aliyun-emulator.js';

const IMAGE = 'ubuntu_22_04_x64_20G_alibase_20240101.vhd';
const PASSWORD = 'Emu-Pass-2024';

interface Network {
  vpcId: string;
  vSwitchId: string;
  securityGroupId: string;
  keyPairName: string;
  privateKey: string;
}

async function makeNetwork(t: TestEmulator, keyDir: string, cidr: string): Promise<Network> {
  const vpc = t.vpc();
  const ecs = t.ecs();
  const vpcId = (await vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: `${cidr}.0.0/16` }))).body!.vpcId!;
  await until(async () => (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcId }))).body!.vpcs!.vpc![0].status === 'Available', 'the VPC');
  const vSwitchId = (await vpc.createVSwitch(new $Vpc.CreateVSwitchRequest({ regionId: R, vpcId, zoneId: TEST_ZONE, cidrBlock: `${cidr}.1.0/24` }))).body!.vSwitchId!;
  await until(async () => (await vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: R, vSwitchId }))).body!.vSwitches!.vSwitch![0].status === 'Available', 'the vSwitch');
  const securityGroupId = (await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId }))).body!.securityGroupId!;
  await ecs.authorizeSecurityGroup(new $Ecs.AuthorizeSecurityGroupRequest({ regionId: R, securityGroupId, permissions: [new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: 'tcp', portRange: '22/22', sourceCidrIp: '0.0.0.0/0' })] }));
  const keyPairName = `key-${cidr.replace('.', '-')}`;
  await ecs.importKeyPair(new $Ecs.ImportKeyPairRequest({ regionId: R, keyPairName, publicKeyBody: readFileSync(join(keyDir, 'id.pub'), 'utf8') }));
  return { vpcId, vSwitchId, securityGroupId, keyPairName, privateKey: readFileSync(join(keyDir, 'id'), 'utf8') };
}

function runRequest(net: Network, extra: Partial<$Ecs.RunInstancesRequest> = {}): $Ecs.RunInstancesRequest {
  return new $Ecs.RunInstancesRequest({
    regionId: R,
    zoneId: TEST_ZONE,
    imageId: IMAGE,
    instanceType: 'ecs.g7.large',
    vSwitchId: net.vSwitchId,
    securityGroupId: net.securityGroupId,
    keyPairName: net.keyPairName,
    ...extra,
  });
}

async function describe1(t: TestEmulator, ids: string[]) {
  return (await t.ecs().describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, instanceIds: JSON.stringify(ids), maxResults: 100 }))).body!.instances!.instance!;
}

async function waitRunning(t: TestEmulator, ids: string[]) {
  return until(async () => {
    const all = await describe1(t, ids);
    return all.length === ids.length && all.every((i) => i.status === 'Running') && all;
  }, `${ids.join(', ')} to be Running`);
}

async function waitGone(t: TestEmulator, ids: string[]) {
  await until(async () => (await describe1(t, ids)).length === 0, `${ids.join(', ')} to be released`);
}

async function sshRun(target: { host: string; privateKey?: string; password?: string }, command: string): Promise<string> {
  const session = await connectSsh({ host: target.host, port: 22, user: 'root', privateKey: target.privateKey, password: target.password }, { attempts: 5, timeoutMs: 5000 });
  try {
    const r = await session.exec(command, { timeoutMs: 10_000 });
    expect(r.code).toBe(0);
    return r.stdout.trim();
  } finally {
    await session.close();
  }
}

const labFile = (t: TestEmulator) => JSON.parse(readFileSync(join(t.dataDir, 'lab', 'lab.json'), 'utf8')) as {
  hosts: Record<string, { ip: string; netns: string; createdAt: string; proc?: { pid: number } }>;
};

describe.skipIf(!labsAvailable())('Aliyun emulator instances', () => {
  let t: TestEmulator;
  let keyDir: string;
  let net: Network;
  beforeAll(async () => {
    keyDir = mkdtempSync(join(tmpdir(), 'ci-aliyun-keys-'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keyDir, 'id')]);
    t = await startTestEmulator();
    net = await makeNetwork(t, keyDir, '172.20');
  });
  afterAll(async () => {
    await t?.cleanup();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  let batch: string[] = [];

  it('runs six instances as hosts made side by side, each Pending, then Starting, then Running', async () => {
    const started = Date.now();
    const res = await t.ecs().runInstances(
      runRequest(net, {
        amount: 6,
        hostName: 'node',
        instanceName: 'web-',
        uniqueSuffix: true,
        password: PASSWORD,
        internetMaxBandwidthOut: 10,
        systemDisk: new $Ecs.RunInstancesRequestSystemDisk({ category: 'cloud_essd', size: '40' }),
        dataDisk: [new $Ecs.RunInstancesRequestDataDisk({ category: 'cloud_essd', size: 100 })],
        tag: [new $Ecs.RunInstancesRequestTag({ key: 'cluster', value: 'c1' }), new $Ecs.RunInstancesRequestTag({ key: 'role', value: 'node' })],
      }),
    );
    batch = res.body!.instanceIdSets!.instanceIdSet!;
    expect(batch).toHaveLength(6);
    for (const id of batch) expect(id).toMatch(/^i-[a-z0-9]{20}$/);

    // Polled back to back, so that no state of at least a tenth of a second goes unseen.
    const seen = new Map<string, string[]>(batch.map((id) => [id, []]));
    const deadline = Date.now() + 60_000;
    while (![...seen.values()].every((l) => l[l.length - 1] === 'Running')) {
      if (Date.now() > deadline) throw new Error(`the batch did not get Running: ${JSON.stringify([...seen])}`);
      const st = await t.ecs().describeInstanceStatus(new $Ecs.DescribeInstanceStatusRequest({ regionId: R, instanceId: batch, pageSize: 50 }));
      for (const s of st.body!.instanceStatuses!.instanceStatus!) {
        const list = seen.get(s.instanceId!)!;
        if (list[list.length - 1] !== s.status) list.push(s.status!);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const list of seen.values()) expect(list).toEqual(['Pending', 'Starting', 'Running']);

    // Side by side: some host was recorded before another one of the batch was already up.
    const lab = labFile(t);
    const upAt = new Map(t.events.filter((e) => e.change === 'host-up' && e.at >= started).map((e) => [e.instanceId!, e.at]));
    const spans = batch.map((id) => ({ made: Date.parse(lab.hosts[id].createdAt), up: upAt.get(id)! }));
    expect(spans.every((s) => s.up !== undefined)).toBe(true);
    expect(spans.some((a) => spans.some((b) => a !== b && b.made < a.up && a.made <= b.made))).toBe(true);

    const instances = await waitRunning(t, batch);
    const byId = new Map(instances.map((i) => [i.instanceId!, i]));
    const hostNames = batch.map((id) => byId.get(id)!.hostName);
    expect(hostNames).toEqual(['node001', 'node002', 'node003', 'node004', 'node005', 'node006']);
    expect(batch.map((id) => byId.get(id)!.instanceName)).toEqual(['web-001', 'web-002', 'web-003', 'web-004', 'web-005', 'web-006']);
    for (const id of batch) {
      const i = byId.get(id)!;
      const ip = lab.hosts[id].ip;
      expect(i).toMatchObject({
        status: 'Running',
        regionId: R,
        zoneId: TEST_ZONE,
        instanceType: 'ecs.g7.large',
        cpu: 2,
        memory: 8192,
        imageId: IMAGE,
        OSType: 'linux',
        keyPairName: net.keyPairName,
        internetMaxBandwidthOut: 10,
        instanceChargeType: 'PostPaid',
        vpcAttributes: { vpcId: net.vpcId, vSwitchId: net.vSwitchId, privateIpAddress: { ipAddress: [ip] } },
        publicIpAddress: { ipAddress: [ip] },
        securityGroupIds: { securityGroupId: [net.securityGroupId] },
      });
      expect(i.creationTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\dZ$/);
      expect(i.networkInterfaces!.networkInterface![0].primaryIpAddress).toBe(ip);
      expect(i.tags!.tag!.map((x) => [x.tagKey, x.tagValue])).toEqual([['cluster', 'c1'], ['role', 'node']]);
    }
    // Reachable as root with the key pair and with the password; each host has its instance's hostname.
    await Promise.all(
      batch.map(async (id, n) => {
        const ip = byId.get(id)!.vpcAttributes!.privateIpAddress!.ipAddress![0];
        expect(await sshRun({ host: ip, privateKey: net.privateKey }, 'hostname')).toBe(hostNames[n]);
        expect(await sshRun({ host: ip, password: PASSWORD }, 'id -u')).toBe('0');
      }),
    );
    const wrong = await connectSsh({ host: lab.hosts[batch[0]].ip, port: 22, user: 'root', password: 'Not-The-Pass1' }, { attempts: 1, timeoutMs: 5000 }).then(
      (s) => s.close().then(() => 'logged in'),
      (e: Error) => e.name,
    );
    expect(wrong).toBe('SshAuthError');
  });

  it('pages and filters instances by tag, status and vSwitch', async () => {
    const ecs = t.ecs();
    const first = await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, maxResults: 4, tag: [new $Ecs.DescribeInstancesRequestTag({ key: 'cluster', value: 'c1' })] }));
    expect(first.body!.instances!.instance).toHaveLength(4);
    expect(first.body!.nextToken).not.toBe('');
    const rest = await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, maxResults: 4, nextToken: first.body!.nextToken, tag: [new $Ecs.DescribeInstancesRequestTag({ key: 'cluster', value: 'c1' })] }));
    expect(rest.body!.instances!.instance).toHaveLength(2);
    expect(rest.body!.nextToken).toBe('');
    expect([...first.body!.instances!.instance!, ...rest.body!.instances!.instance!].map((i) => i.instanceId).sort()).toEqual([...batch].sort());
    const paged = await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, pageNumber: 2, pageSize: 5, vSwitchId: net.vSwitchId }));
    expect(paged.body).toMatchObject({ pageNumber: 2, pageSize: 5, totalCount: 6 });
    expect(paged.body!.instances!.instance).toHaveLength(1);
    const running = await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, status: 'Running', tag: [new $Ecs.DescribeInstancesRequestTag({ key: 'role' })], pageSize: 50 }));
    expect(running.body!.totalCount).toBe(6);
    const none = await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, tag: [new $Ecs.DescribeInstancesRequestTag({ key: 'role', value: 'master' })] }));
    expect(none.body!.instances!.instance).toEqual([]);
    const tagged = await ecs.listTagResources(new $Ecs.ListTagResourcesRequest({ regionId: R, resourceType: 'instance', resourceId: [batch[0]] }));
    expect(tagged.body!.tagResources!.tagResource!.map((x) => x.tagKey)).toEqual(['cluster', 'role']);
  });

  it('replays RunInstances with the same ClientToken (same IDs, nothing more made) and refuses other parameters', async () => {
    const ecs = t.ecs();
    const req = () => runRequest(net, { clientToken: 'run-once-1', tag: [new $Ecs.RunInstancesRequestTag({ key: 'token', value: 'one' })] });
    const a = await ecs.runInstances(req());
    const id = a.body!.instanceIdSets!.instanceIdSet![0];
    // Still Pending: a release is refused until the instance is initialised.
    const early = await apiError(ecs.deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: [id], force: true })));
    expect([early.statusCode, early.code]).toEqual([403, 'IncorrectInstanceStatus.Initializing']);
    const b = await ecs.runInstances(req());
    expect(b.body!.instanceIdSets!.instanceIdSet).toEqual([id]);
    const tagged = await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, tag: [new $Ecs.DescribeInstancesRequestTag({ key: 'token' })] }));
    expect(tagged.body!.totalCount).toBe(1);
    const other = await apiError(ecs.runInstances(runRequest(net, { clientToken: 'run-once-1', amount: 2, tag: [new $Ecs.RunInstancesRequestTag({ key: 'token', value: 'one' })] })));
    expect([other.statusCode, other.code]).toEqual([400, 'IdempotentParameterMismatch']);
    await waitRunning(t, [id]);
    batch.push(id);
  });

  it('releases instances: Force while Running, a dry run first, dependants held until the release settles, hosts removed', async () => {
    const ecs = t.ecs();
    const vpc = t.vpc();
    const noForce = await apiError(ecs.deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: batch })));
    expect([noForce.statusCode, noForce.code]).toEqual([403, 'IncorrectInstanceStatus']);
    const dry = await apiError(ecs.deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: batch, force: true, dryRun: true })));
    expect(dry.code).toBe('DRYRUN.SUCCESS');
    expect((await describe1(t, batch)).every((i) => i.status === 'Running')).toBe(true);
    const hosts = labFile(t).hosts;
    const netns = batch.map((id) => hosts[id].netns);

    await ecs.deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: batch, force: true, clientToken: 'release-1' }));
    const statuses = (await ecs.describeInstanceStatus(new $Ecs.DescribeInstanceStatusRequest({ regionId: R, instanceId: batch, pageSize: 50 }))).body!.instanceStatuses!.instanceStatus!;
    expect(statuses.map((s) => s.status)).toEqual(batch.map(() => 'Stopping'));
    const sgHeld = await apiError(ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: net.securityGroupId })));
    expect(sgHeld.code).toBe('DependencyViolation');
    const vswHeld = await apiError(vpc.deleteVSwitch(new $Vpc.DeleteVSwitchRequest({ regionId: R, vSwitchId: net.vSwitchId })));
    expect(vswHeld.code).toBe('DependencyViolation');
    // The same release again under its token is answered as the first one.
    await ecs.deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: batch, force: true, clientToken: 'release-1' }));

    await waitGone(t, batch);
    const after = labFile(t).hosts;
    for (const id of batch) expect(after[id]).toBeUndefined();
    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const ns of netns) expect(namespaces).not.toContain(ns);
    const gone = await apiError(ecs.deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: [batch[0]], force: true })));
    expect(gone.code).toBe('InvalidInstanceId.NotFound');
    batch = [];
  });

  it('keeps instances and their hosts across a restart, and removes hosts of no instance', async () => {
    const ecs = t.ecs();
    const id = (await ecs.runInstances(runRequest(net, { password: PASSWORD }))).body!.instanceIdSets!.instanceIdSet![0];
    const [before] = await waitRunning(t, [id]);
    const ip = before.vpcAttributes!.privateIpAddress!.ipAddress![0];
    const pid = labFile(t).hosts[id].proc!.pid;
    // A host in the lab that no instance knows (as a crash between a release and its record leaves) goes at start.
    await (await LocalLab.open(join(t.dataDir, 'lab'))).addHost('stray', 'light');
    await t.restart();
    expect(labFile(t).hosts.stray).toBeUndefined();
    const [again] = await waitRunning(t, [id]);
    expect(again.vpcAttributes!.privateIpAddress!.ipAddress).toEqual([ip]);
    expect(again.creationTime).toBe(before.creationTime);
    // The host went on running while the emulator was down: the same process, reached the same ways.
    expect(labFile(t).hosts[id].proc!.pid).toBe(pid);
    expect(await sshRun({ host: ip, privateKey: net.privateKey }, 'true')).toBe('');
    expect(await sshRun({ host: ip, password: PASSWORD }, 'id -un')).toBe('root');
    await ecs.deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: [id], force: true }));
    await waitGone(t, [id]);
  });

  it('releases every host on reset', async () => {
    const id = (await t.ecs().runInstances(runRequest(net))).body!.instanceIdSets!.instanceIdSet![0];
    await waitRunning(t, [id]);
    const ns = labFile(t).hosts[id].netns;
    await t.emulator.reset();
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(ns);
    expect(Object.keys(labFile(t).hosts)).toEqual([]);
    expect(await describe1(t, [id])).toEqual([]);
    net = await makeNetwork(t, keyDir, '172.21');
  });
});

describe.skipIf(!labsAvailable())('Aliyun emulator instances as systemd hosts', () => {
  let t: TestEmulator;
  let keyDir: string;
  beforeAll(async () => {
    keyDir = mkdtempSync(join(tmpdir(), 'ci-aliyun-keys-'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keyDir, 'id')]);
    t = await startTestEmulator({ instanceKind: 'systemd' });
  });
  afterAll(async () => {
    await t?.cleanup();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  it('boots an instance with systemd that takes the key pair and the password', async () => {
    const net = await makeNetwork(t, keyDir, '172.22');
    const id = (await t.ecs().runInstances(runRequest(net, { password: PASSWORD, hostName: 'sys-${instance_id}' }))).body!.instanceIdSets!.instanceIdSet![0];
    const [inst] = await until(async () => {
      const all = await describe1(t, [id]);
      return all[0]?.status === 'Running' && all;
    }, 'the systemd instance to be Running', 120_000);
    const ip = inst.vpcAttributes!.privateIpAddress!.ipAddress![0];
    expect(inst.hostName).toBe(`sys-${id}`);
    expect(await sshRun({ host: ip, password: PASSWORD }, 'test -d /run/systemd/system && hostname')).toBe(`sys-${id}`);
    expect(await sshRun({ host: ip, privateKey: net.privateKey }, 'id -u')).toBe('0');
    await t.ecs().deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: [id], force: true }));
    await waitGone(t, [id]);
    expect(existsSync(join(t.dataDir, 'lab', 'hosts', id))).toBe(false);
  });
});

describe.skipIf(!labsAvailable())('Aliyun emulator instances with realistic latency', () => {
  let t: TestEmulator;
  let keyDir: string;
  beforeAll(async () => {
    keyDir = mkdtempSync(join(tmpdir(), 'ci-aliyun-keys-'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keyDir, 'id')]);
    t = await startTestEmulator({ latency: 'realistic' });
  });
  afterAll(async () => {
    await t?.cleanup();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  it('answers SSH only some seconds after the instance is Running, as a booting machine does', async () => {
    const net = await makeNetwork(t, keyDir, '172.23');
    const id = (await t.ecs().runInstances(runRequest(net))).body!.instanceIdSets!.instanceIdSet![0];
    const [inst] = await until(async () => {
      const all = await describe1(t, [id]);
      return all[0]?.status === 'Running' && all;
    }, 'the instance to be Running', 60_000);
    const ip = inst.vpcAttributes!.privateIpAddress!.ipAddress![0];
    const early = await connectSsh({ host: ip, port: 22, user: 'root', privateKey: net.privateKey }, { attempts: 1, timeoutMs: 1000 }).then(
      (s) => s.close().then(() => 'answered'),
      (e: Error) => e.name,
    );
    expect(early).toBe('HostUnreachableError');
    await until(() => sshRun({ host: ip, privateKey: net.privateKey }, 'hostname'), 'sshd to answer', 30_000);
  });
});
