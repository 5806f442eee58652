/**
 * Injected faults of the Aliyun emulator, through the real SDK: throttling and 5xx shares (reproducible with a seed),
 * a create performed while its caller times out (then answered again under the same ClientToken), no stock, and
 * limited stock with MinAmount.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import * as $Ecs from '@alicloud/ecs20140526';
import * as $Vpc from '@alicloud/vpc20160428';
import { labsAvailable } from './helpers/lab.js';
import { TEST_REGION as R, TEST_ZONE, apiError, startTestEmulator, until, type TestEmulator } from './helpers/aliyun-emulator.js';

const started: TestEmulator[] = [];
async function emulator(opts: Parameters<typeof startTestEmulator>[0]): Promise<TestEmulator> {
  const t = await startTestEmulator(opts);
  started.push(t);
  return t;
}

/** 200 calls alternating between the two products; each outcome is `ok` or the error's name, status and code. */
async function outcomes(t: TestEmulator): Promise<string[]> {
  const ecs = t.ecs();
  const vpc = t.vpc();
  const out: string[] = [];
  for (let i = 0; i < 200; i++) {
    const call = i % 2 === 0 ? ecs.describeRegions(new $Ecs.DescribeRegionsRequest({})) : vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R }));
    try {
      await call;
      out.push('ok');
    } catch (err) {
      const e = err as { name: string; statusCode?: number; code: string; retryAfter?: number };
      out.push(`${e.name} ${e.statusCode ?? '-'} ${e.code}${e.retryAfter !== undefined ? ` retry-after ${e.retryAfter}` : ''}`);
    }
  }
  return out;
}

async function network(t: TestEmulator): Promise<{ vSwitchId: string; securityGroupId: string }> {
  const vpc = t.vpc();
  const vpcId = (await vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '192.168.0.0/16' }))).body!.vpcId!;
  await until(async () => (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcId }))).body!.vpcs!.vpc![0].status === 'Available', 'the VPC');
  const vSwitchId = (await vpc.createVSwitch(new $Vpc.CreateVSwitchRequest({ regionId: R, vpcId, zoneId: TEST_ZONE, cidrBlock: '192.168.0.0/24' }))).body!.vSwitchId!;
  await until(async () => (await vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: R, vSwitchId }))).body!.vSwitches!.vSwitch![0].status === 'Available', 'the vSwitch');
  const securityGroupId = (await t.ecs().createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId }))).body!.securityGroupId!;
  return { vSwitchId, securityGroupId };
}

const run = (net: { vSwitchId: string; securityGroupId: string }, extra: Partial<$Ecs.RunInstancesRequest> = {}) =>
  new $Ecs.RunInstancesRequest({ regionId: R, imageId: 'aliyun_3_x64_20G_alibase_20240819.vhd', instanceType: 'ecs.c7.large', ...net, ...extra });

describe.skipIf(!labsAvailable())('Aliyun emulator faults', () => {
  afterAll(async () => {
    for (const t of started) await t.cleanup();
  });

  it('answers Throttling.User and 5xx in the configured shares, the same calls the same way for the same seed', async () => {
    const faults = { throttling: 0.3, serverError: 0.1, retryAfterMs: 1500, seed: 42 };
    const first = await outcomes(await emulator({ faults }));
    const count = (prefix: string) => first.filter((o) => o.startsWith(prefix)).length;
    const throttled = count('ThrottlingError 400 Throttling.User retry-after 1500');
    const unavailable = count('ServerError 503 ServiceUnavailable');
    const internal = count('ServerError 500 InternalError');
    expect(throttled + unavailable + internal + count('ok')).toBe(200);
    expect(throttled).toBeGreaterThanOrEqual(40);
    expect(throttled).toBeLessThanOrEqual(80);
    // 5xx are drawn for the calls not throttled: 0.7 * 0.1 of them, about 14.
    expect(unavailable + internal).toBeGreaterThanOrEqual(4);
    expect(unavailable + internal).toBeLessThanOrEqual(30);
    expect(unavailable).toBeGreaterThan(0);
    expect(internal).toBeGreaterThan(0);
    expect(await outcomes(await emulator({ faults }))).toEqual(first);
    expect(await outcomes(await emulator({ faults: { ...faults, seed: 43 } }))).not.toEqual(first);
  });

  describe('with timeout-once and limited stock', () => {
    let t: TestEmulator;
    let net: { vSwitchId: string; securityGroupId: string };
    afterEach(async () => {
      const live = (await t.ecs().describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, pageSize: 100 }))).body!.instances!.instance!;
      const ids = live.filter((i) => i.status !== 'Stopping').map((i) => i.instanceId!);
      if (ids.length > 0) {
        await until(() => t.ecs().deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: ids, force: true })).then(() => true), 'a release');
      }
      await until(async () => (await t.ecs().describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R }))).body!.totalCount === 0, 'every instance to be released');
    });

    it('performs a timed-out CreateVpc, and answers it again under the same ClientToken', async () => {
      t = await emulator({ faults: { timeoutOnce: ['CreateVpc', 'RunInstances'] }, stock: 2 });
      const vpc = t.vpc({ readTimeout: 1000 });
      const req = () => new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.60.0.0/16', clientToken: 'vpc-after-timeout' });
      const timedOut = await apiError(vpc.createVpc(req()));
      expect(timedOut.name).toBe('RequestTimeoutError');
      const made = (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R }))).body!.vpcs!.vpc!;
      expect(made.map((v) => v.cidrBlock)).toEqual(['10.60.0.0/16']);
      const again = await vpc.createVpc(req());
      expect(again.body!.vpcId).toBe(made[0].vpcId);
      expect((await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R }))).body!.totalCount).toBe(1);
      net = await network(t);
    });

    it('makes the instances of a timed-out RunInstances, and answers their IDs again under the same ClientToken', async () => {
      const ecs = t.ecs({ readTimeout: 1500 });
      const req = () => run(net, { amount: 2, clientToken: 'run-after-timeout', tag: [new $Ecs.RunInstancesRequestTag({ key: 'try', value: '1' })] });
      expect((await apiError(ecs.runInstances(req()))).name).toBe('RequestTimeoutError');
      const made = (await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, tag: [new $Ecs.DescribeInstancesRequestTag({ key: 'try' })] }))).body!.instances!.instance!;
      expect(made).toHaveLength(2);
      const again = await ecs.runInstances(req());
      expect([...again.body!.instanceIdSets!.instanceIdSet!].sort()).toEqual(made.map((i) => i.instanceId).sort());
      // Only the first call is held back: the next RunInstances is answered at once.
      const ids = again.body!.instanceIdSets!.instanceIdSet!;
      await until(async () => {
        const st = await ecs.describeInstanceStatus(new $Ecs.DescribeInstanceStatusRequest({ regionId: R, instanceId: ids }));
        return st.body!.instanceStatuses!.instanceStatus!.every((s) => s.status === 'Running');
      }, 'the instances to be Running');
    });

    it('answers OperationDenied.NoStock beyond the stock, and makes what there is with MinAmount', async () => {
      const ecs = t.ecs();
      const noStock = await apiError(ecs.runInstances(run(net, { amount: 3 })));
      expect([noStock.statusCode, noStock.code]).toEqual([403, 'OperationDenied.NoStock']);
      expect((await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R }))).body!.totalCount).toBe(0);
      const partial = await ecs.runInstances(run(net, { amount: 3, minAmount: 2 }));
      expect(partial.body!.instanceIdSets!.instanceIdSet).toHaveLength(2);
      const none = await apiError(ecs.runInstances(run(net, { amount: 1 })));
      expect(none.code).toBe('OperationDenied.NoStock');
      const stock = async (instanceType: string) =>
        (await ecs.describeAvailableResource(new $Ecs.DescribeAvailableResourceRequest({ regionId: R, zoneId: TEST_ZONE, destinationResource: 'InstanceType', instanceType })))
          .body!.availableZones!.availableZone![0].availableResources!.availableResource![0].supportedResources!.supportedResource![0];
      expect(await stock('ecs.c7.large')).toMatchObject({ value: 'ecs.c7.large', status: 'SoldOut', statusCategory: 'WithoutStock' });
      expect(await stock('ecs.g7.large')).toMatchObject({ value: 'ecs.g7.large', status: 'Available', statusCategory: 'WithStock' });
      // Another instance type has its own stock.
      const other = await ecs.runInstances(run(net, { instanceType: 'ecs.g7.large' }));
      expect(other.body!.instanceIdSets!.instanceIdSet).toHaveLength(1);
    });

    it('answers every RunInstances OperationDenied.NoStock with nostock=1, dry runs included', async () => {
      await t.restart({ faults: { noStock: 1 } });
      const ecs = t.ecs();
      for (const dryRun of [false, true]) {
        const err = await apiError(ecs.runInstances(run(net, { dryRun })));
        expect(err.code).toBe('OperationDenied.NoStock');
      }
      expect((await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R }))).body!.totalCount).toBe(0);
    });
  });
});
