/**
 * Provider ALI_CLOUD's runtime against the emulator with the real SDK, below the executor: tag-based ownership, the
 * ClientToken written before RunInstances and reused by a resumed create, a token of other parameters replaced,
 * adoption of instances made by a lost answer, and refusal to delete what the cluster does not own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as $Ecs from '@alicloud/ecs20140526';
import type { ProviderData } from '../engine/kernel/types.js';
import type { ProviderContext, ProviderEvent } from '../providers/contract.js';
import { aliyunProvider } from '../providers/aliyun/provider.js';
import { AliyunRuntime } from '../providers/aliyun/runtime.js';
import { MANAGER, ownedBy, TAGS } from '../providers/aliyun/tags.js';
import { labsAvailable } from './helpers/lab.js';
import { waitFor } from './helpers/e2e.js';
import { startTestEmulator, TEST_REGION, TEST_ZONE, type TestEmulator } from './helpers/aliyun-emulator.js';

describe('tag-based ownership', () => {
  const tags = (entries: Record<string, string>) => new Map(Object.entries(entries));
  const ours = { [TAGS.managedBy]: MANAGER, [TAGS.cluster]: 'prod' };

  it('belongs to the cluster only with both the manager tag and the cluster tag', () => {
    expect(ownedBy(tags(ours), 'prod', undefined)).toBe(true);
    expect(ownedBy(tags({ [TAGS.cluster]: 'prod' }), 'prod', undefined)).toBe(false);
    expect(ownedBy(tags({ [TAGS.managedBy]: MANAGER }), 'prod', undefined)).toBe(false);
    expect(ownedBy(tags({ ...ours, [TAGS.cluster]: 'prod2' }), 'prod', undefined)).toBe(false);
    expect(ownedBy(tags({ ...ours, [TAGS.managedBy]: 'terraform' }), 'prod', undefined)).toBe(false);
    expect(ownedBy(new Map(), 'prod', undefined)).toBe(false);
  });

  it('a resource of another state of the same name is not ours; one without a lineage tag is', () => {
    expect(ownedBy(tags({ ...ours, [TAGS.lineage]: 'L1' }), 'prod', 'L1')).toBe(true);
    expect(ownedBy(tags({ ...ours, [TAGS.lineage]: 'L2' }), 'prod', 'L1')).toBe(false);
    expect(ownedBy(tags(ours), 'prod', 'L1')).toBe(true);
    expect(ownedBy(tags({ ...ours, [TAGS.lineage]: 'L2' }), 'prod', undefined)).toBe(true);
  });
});

describe.skipIf(!labsAvailable())('the ALI_CLOUD runtime on the emulator', () => {
  let emu: TestEmulator;
  let home: string;
  let runtime: AliyunRuntime;
  const infra: Record<string, ProviderData> = {};
  const reports: ProviderEvent[] = [];
  const block = () => ({
    regionId: TEST_REGION, zoneId: TEST_ZONE, imageId: 'debian_12_x64', instanceType: 'ecs.g7.large', vpcCidr: '172.16.0.0/16',
    endpoint: emu.endpoint, protocol: 'http',
  });
  const context = (): ProviderContext => ({
    home,
    cluster: 'rt',
    lineage: 'lineage-1',
    block: aliyunProvider.clusterfile.block!.schema.parse(block()),
    hosts: [],
    env: { ALIBABA_CLOUD_ACCESS_KEY_ID: emu.accessKeyId, ALIBABA_CLOUD_ACCESS_KEY_SECRET: emu.accessKeySecret, ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true', ALIBABA_CLOUD_CLI_PROFILE_DISABLED: 'true' },
    report: (e) => reports.push(e),
  });
  const hostsOf = (keys: string[]) =>
    keys.map((key) => ({ key, name: key, spec: { group: 'node', role: 'node', instanceType: 'ecs.g7.large', systemDisk: 40, dataDisks: [] } as ProviderData }));
  const runInstances = () => emu.events.filter((e) => e.type === 'request' && e.action === 'RunInstances' && e.status === 200).length;
  const live = async () =>
    ((await emu.ecs().describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: TEST_REGION, maxResults: 100 }))).body?.instances?.instance ?? [])
      .filter((i) => i.status !== 'Stopping')
      .map((i) => ({ id: i.instanceId!, name: i.hostName! }))
      .sort((a, b) => a.name.localeCompare(b.name));

  beforeAll(async () => {
    emu = await startTestEmulator();
    home = mkdtempSync(join(tmpdir(), 'ci-aliyun-rt-'));
    runtime = new AliyunRuntime(context());
    const wanted = aliyunProvider.infrastructure!({ cluster: 'rt', block: context().block, image: { labels: {}, ports: [] } });
    for (const r of wanted) {
      infra[r.key] = (await runtime.applyInfra({ id: `infra:${r.key}`, op: 'create', key: r.key, spec: r.spec, infra }, async () => undefined))!;
    }
  }, 120_000);

  afterAll(async () => {
    // The emulator's cleanup releases every instance's host; its resources go with its data directory.
    await emu?.cleanup();
    if (home) rmSync(home, { recursive: true, force: true });
  }, 120_000);

  it('writes the ClientToken before RunInstances is sent, then makes the instances in one call', async () => {
    const checkpoints: { data: ProviderData; runInstancesSoFar: number }[] = [];
    const before = runInstances();
    const made = await runtime.makeHosts({ id: 'create-host:rt-node', hosts: hostsOf(['rt-node-1', 'rt-node-2']), infra }, async (data) => {
      checkpoints.push({ data, runInstancesSoFar: runInstances() });
    });
    expect(checkpoints).toHaveLength(1);
    expect(checkpoints[0].data.clientToken).toMatch(/^ci-[0-9a-f]{24}$/);
    expect(checkpoints[0].runInstancesSoFar).toBe(before);
    expect(runInstances()).toBe(before + 1);
    expect(Object.keys(made).sort()).toEqual(['rt-node-1', 'rt-node-2']);
    expect(made['rt-node-1'].machine).toMatchObject({ instanceId: expect.stringMatching(/^i-/), instanceType: 'ecs.g7.large' });
    expect((await live()).map((i) => i.name)).toEqual(['rt-node-1', 'rt-node-2']);
  }, 180_000);

  it('a resumed create with its token makes nothing more: the instances are adopted by their tags and names', async () => {
    const first = await live();
    const before = runInstances();
    const checkpoints: ProviderData[] = [];
    const made = await runtime.makeHosts(
      { id: 'create-host:rt-node', hosts: hostsOf(['rt-node-1', 'rt-node-2']), pending: { clientToken: 'ci-000000000000000000000001' }, infra },
      async (d) => void checkpoints.push(d),
    );
    expect(checkpoints).toEqual([]);
    expect(runInstances()).toBe(before);
    expect(await live()).toEqual(first);
    expect(Object.values(made).map((m) => m.machine.instanceId).sort()).toEqual(first.map((i) => i.id).sort());
  }, 180_000);

  it('a token of a request with other parameters is replaced by a new one, written first, and the create goes on', async () => {
    const token = 'ci-0000000000000000000000aa';
    // The token was spent on a one-instance request whose instance is gone since.
    await runtime.makeHosts({ id: 'create-host:rt-worker', hosts: hostsOf(['rt-worker-1']), pending: { clientToken: token }, infra }, async () => undefined);
    const gone = (await live()).find((i) => i.name === 'rt-worker-1')!;
    await runtime.removeHost({ key: 'rt-worker-1', machine: { instanceId: gone.id } });
    const checkpoints: ProviderData[] = [];
    const made = await runtime.makeHosts(
      { id: 'create-host:rt-worker', hosts: hostsOf(['rt-worker-1', 'rt-worker-2']), pending: { clientToken: token }, infra },
      async (d) => void checkpoints.push(d),
    );
    expect(emu.events.some((e) => e.type === 'request' && e.action === 'RunInstances' && e.code === 'IdempotentParameterMismatch')).toBe(true);
    expect(checkpoints).toHaveLength(1);
    expect(checkpoints[0].clientToken).not.toBe(token);
    expect(Object.keys(made).sort()).toEqual(['rt-worker-1', 'rt-worker-2']);
    expect((await live()).map((i) => i.name)).toEqual(['rt-node-1', 'rt-node-2', 'rt-worker-1', 'rt-worker-2']);
  }, 240_000);

  it('refuses to delete an instance that lacks the cluster\'s tags, and leaves it running', async () => {
    const stranger = (
      await emu.ecs().runInstances(
        new $Ecs.RunInstancesRequest({
          regionId: TEST_REGION, zoneId: TEST_ZONE, imageId: 'debian_12_x64', instanceType: 'ecs.g7.large', amount: 1,
          hostName: 'rt-node-9', vSwitchId: infra.vswitch.vSwitchId as string, securityGroupId: infra['security-group'].securityGroupId as string,
        }),
      )
    ).body!.instanceIdSets!.instanceIdSet![0];
    await expect(runtime.removeHost({ key: 'rt-node-9', machine: { instanceId: stranger } })).rejects.toMatchObject({
      code: 'ALIYUN_NOT_OWNED',
      message: expect.stringContaining(`instance ${stranger} (rt-node-9) does not carry the tags of cluster rt`),
    });
    // Without an id in the state, a host is looked for only among the cluster's own instances.
    await runtime.removeHost({ key: 'rt-node-9' });
    expect((await live()).some((i) => i.id === stranger)).toBe(true);
    // Nor is it adopted as one of ours.
    const discovered = await runtime.discover();
    expect(discovered.hosts.map((h) => h.key).sort()).toEqual(['rt-node-1', 'rt-node-2', 'rt-worker-1', 'rt-worker-2']);
    // A starting instance cannot be deleted yet (as on Aliyun): ask until it can.
    await waitFor(
      () => emu.ecs().deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: TEST_REGION, instanceId: [stranger], force: true })).then(() => true, () => false),
      'the stranger instance to be deletable', 60_000, 200,
    );
  }, 180_000);
});
