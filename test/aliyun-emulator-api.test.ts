/**
 * The Aliyun emulator through the real SDK (and a few raw HTTP requests): signatures and the gateway's refusals,
 * regions, VPCs, vSwitches, security groups, key pairs, tags, paging, ClientToken, dry runs, and resources kept across
 * a restart. Instances (real local hosts) are in aliyun-emulator-instances.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as $Ecs from '@alicloud/ecs20140526';
import * as $Vpc from '@alicloud/vpc20160428';
import { labsAvailable } from './helpers/lab.js';
import { TEST_REGION as R, TEST_ZONE, apiError, startTestEmulator, until, type TestEmulator } from './helpers/aliyun-emulator.js';
import { percentEncode, rpcSignature, rpcStringToSign } from '../providers/aliyun/emulator/signature.js';

const UUID_UPPER = /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/;

/** One HTTP request as any client could send it; answers status, headers and parsed JSON. */
function raw(endpoint: string, query: [string, string][], headers: Record<string, string> = {}, method = 'POST') {
  const qs = query.map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`).join('&');
  const [host, port] = endpoint.split(':');
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }>((resolve, reject) => {
    const req = request({ host, port: Number(port), method, path: `/?${qs}`, headers }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A legacy-signed (HMAC-SHA1) query, as an older client would build it. */
function legacyQuery(t: TestEmulator, action: string, version: string, params: [string, string][], over: { timestamp?: string; nonce?: string; secret?: string } = {}): [string, string][] {
  const q: [string, string][] = [
    ['Action', action], ['Format', 'JSON'], ['Version', version], ['AccessKeyId', t.accessKeyId], ['SignatureMethod', 'HMAC-SHA1'],
    ['SignatureVersion', '1.0'], ['SignatureNonce', over.nonce ?? Math.random().toString(36).slice(2)],
    ['Timestamp', over.timestamp ?? new Date().toISOString().slice(0, 19) + 'Z'], ...params,
  ];
  q.push(['Signature', rpcSignature(over.secret ?? t.accessKeySecret, rpcStringToSign('POST', q))]);
  return q;
}

async function availableVpc(t: TestEmulator, cidrBlock = '10.0.0.0/16', extra: Partial<$Vpc.CreateVpcRequest> = {}): Promise<string> {
  const vpc = t.vpc();
  const id = (await vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock, ...extra }))).body!.vpcId!;
  await until(async () => (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcId: id }))).body!.vpcs!.vpc![0].status === 'Available', 'the VPC to be Available');
  return id;
}

async function availableVSwitch(t: TestEmulator, vpcId: string, cidrBlock: string): Promise<string> {
  const vpc = t.vpc();
  const id = (await vpc.createVSwitch(new $Vpc.CreateVSwitchRequest({ regionId: R, vpcId, zoneId: TEST_ZONE, cidrBlock }))).body!.vSwitchId!;
  await until(async () => (await vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: R, vSwitchId: id }))).body!.vSwitches!.vSwitch![0].status === 'Available', 'the vSwitch to be Available');
  return id;
}

describe.skipIf(!labsAvailable())('Aliyun emulator API', () => {
  let t: TestEmulator;
  let keyDir: string;
  beforeAll(async () => {
    t = await startTestEmulator();
    keyDir = mkdtempSync(join(tmpdir(), 'ci-aliyun-keys-'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test key', '-f', join(keyDir, 'ed')]);
    execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', join(keyDir, 'rsa')]);
  });
  afterAll(async () => {
    await t?.cleanup();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  describe('signatures and the gateway', () => {
    it('accepts the SDK with ACS3-HMAC-SHA256 and with the legacy signature', async () => {
      const acs3 = await t.ecs().describeRegions(new $Ecs.DescribeRegionsRequest({}));
      const legacy = await t.ecs({ signatureAlgorithm: 'v2' }).describeRegions(new $Ecs.DescribeRegionsRequest({ acceptLanguage: 'en-US' }));
      expect(acs3.statusCode).toBe(200);
      expect(acs3.body!.requestId).toMatch(UUID_UPPER);
      expect(acs3.body!.regions!.region!.map((r) => r.regionId)).toContain('cn-hangzhou');
      expect(legacy.body!.regions!.region!.find((r) => r.regionId === 'cn-hangzhou')!.localName).toBe('China (Hangzhou)');
      const vpcLegacy = await t.vpc({ signatureAlgorithm: 'v2' }).describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R }));
      expect(vpcLegacy.statusCode).toBe(200);
    });

    it('refuses a wrong secret with SignatureDoesNotMatch (400), for both algorithms', async () => {
      for (const algo of [undefined, 'v2']) {
        const err = await apiError(t.ecs({ accessKeySecret: 'not-the-secret', signatureAlgorithm: algo }).describeRegions(new $Ecs.DescribeRegionsRequest({})));
        expect(err.code).toBe('SignatureDoesNotMatch');
        expect(err.statusCode).toBe(400);
        expect(err.name).toBe('ClientError');
        expect(err.message).not.toContain(t.accessKeySecret);
      }
    });

    it('refuses an unknown access key with InvalidAccessKeyId.NotFound', async () => {
      for (const algo of [undefined, 'v2']) {
        const err = await apiError(t.ecs({ accessKeyId: 'LTAIunknown', signatureAlgorithm: algo }).describeRegions(new $Ecs.DescribeRegionsRequest({})));
        expect(err.code).toBe('InvalidAccessKeyId.NotFound');
        expect(err.statusCode).toBe(404);
      }
    });

    it('answers errors in the real shape: RequestId, HostId, Code, Message, Recommend', async () => {
      const res = await raw(t.endpoint, legacyQuery(t, 'NoSuchAction', '2014-05-26', [['RegionId', R]]), { host: t.endpoint });
      expect(res.status).toBe(404);
      expect(Object.keys(res.body).sort()).toEqual(['Code', 'HostId', 'Message', 'Recommend', 'RequestId']);
      expect(res.body.Code).toBe('InvalidAction.NotFound');
      expect(res.body.RequestId).toMatch(UUID_UPPER);
      expect(res.body.HostId).toBe(t.endpoint);
      expect(res.body.Recommend).toContain('q=InvalidAction.NotFound');
      expect(res.headers['x-acs-request-id']).toBe(res.body.RequestId);
      expect(res.headers['content-type']).toBe('application/json;charset=utf-8');
    });

    it('checks the API version and knows each product by it', async () => {
      const bad = await raw(t.endpoint, legacyQuery(t, 'DescribeRegions', '2099-01-01', []));
      expect([bad.status, bad.body.Code]).toEqual([400, 'InvalidVersion']);
      // CreateVpc is a VPC API action; with the ECS version it is not served here.
      const wrong = await raw(t.endpoint, legacyQuery(t, 'CreateVpc', '2014-05-26', [['RegionId', R]]));
      expect(wrong.body.Code).toBe('InvalidAction.NotFound');
      const ok = await raw(t.endpoint, legacyQuery(t, 'DescribeVpcs', '2016-04-28', [['RegionId', R]]));
      expect(ok.status).toBe(200);
      expect(ok.body.Vpcs).toEqual({ Vpc: expect.any(Array) });
    });

    it('refuses unsigned, stale and replayed requests', async () => {
      const unsigned = await raw(t.endpoint, [['Action', 'DescribeRegions'], ['Version', '2014-05-26']]);
      expect(unsigned.body.Code).toBe('MissingSignature');
      const old = new Date(Date.now() - 3600_000).toISOString().slice(0, 19) + 'Z';
      const stale = await raw(t.endpoint, legacyQuery(t, 'DescribeRegions', '2014-05-26', [], { timestamp: old }));
      expect(stale.body.Code).toBe('InvalidTimeStamp.Expired');
      const q = legacyQuery(t, 'DescribeRegions', '2014-05-26', [], { nonce: 'same-nonce-twice' });
      expect((await raw(t.endpoint, q)).status).toBe(200);
      const again = await raw(t.endpoint, q);
      expect([again.status, again.body.Code]).toEqual([400, 'SignatureNonceUsed']);
      const tampered = q.map(([k, v]): [string, string] => (k === 'SignatureNonce' ? [k, 'another-nonce'] : [k, v]));
      expect((await raw(t.endpoint, tampered)).body.Code).toBe('SignatureDoesNotMatch');
    });
  });

  describe('regions and zones', () => {
    it('lists zones of a region, and refuses unknown or missing regions', async () => {
      const zones = await t.ecs().describeZones(new $Ecs.DescribeZonesRequest({ regionId: R }));
      const zone = zones.body!.zones!.zone!.find((z) => z.zoneId === TEST_ZONE)!;
      expect(zone.availableInstanceTypes!.instanceTypes).toContain('ecs.g7.large');
      expect(zone.availableResourceCreation!.resourceTypes).toContain('Instance');
      const vpcZones = await t.vpc().describeZones(new $Vpc.DescribeZonesRequest({ regionId: R }));
      expect(vpcZones.body!.zones!.zone!.map((z) => z.zoneId)).toContain(TEST_ZONE);
      const available = await t.ecs().describeAvailableResource(new $Ecs.DescribeAvailableResourceRequest({ regionId: R, destinationResource: 'InstanceType', cores: 2, memory: 8 }));
      const zones2 = available.body!.availableZones!.availableZone!;
      expect(zones2.map((z) => z.zoneId)).toContain(TEST_ZONE);
      const offered = zones2[0].availableResources!.availableResource![0].supportedResources!.supportedResource!;
      expect(offered.map((x) => x.value)).toContain('ecs.g7.large');
      expect(offered.map((x) => x.value)).not.toContain('ecs.c7.large');
      expect(offered.every((x) => x.statusCategory === 'WithStock')).toBe(true);
      const unknown = await apiError(t.ecs().describeZones(new $Ecs.DescribeZonesRequest({ regionId: 'mars-north-1' })));
      expect([unknown.statusCode, unknown.code]).toEqual([404, 'InvalidRegionId.NotFound']);
      const missing = await apiError(t.ecs().describeZones(new $Ecs.DescribeZonesRequest({})));
      expect(missing.code).toBe('MissingRegionId');
    });
  });

  describe('VPCs and vSwitches', () => {
    it('creates a VPC that is Pending, then Available, with VPC-style tags', async () => {
      const vpc = t.vpc();
      const created = await vpc.createVpc(
        new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.1.0.0/16', vpcName: 'net-a', tag: [new $Vpc.CreateVpcRequestTag({ key: 'owner', value: 'tests' })] }),
      );
      const id = created.body!.vpcId!;
      expect(id).toMatch(/^vpc-[a-z0-9]{20}$/);
      expect(created.body!.VRouterId).toMatch(/^vrt-/);
      expect(created.body!.routeTableId).toMatch(/^vtb-/);
      const first = (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcId: id }))).body!.vpcs!.vpc![0];
      expect(first.status).toBe('Pending');
      expect(first.tags!.tag).toEqual([expect.objectContaining({ key: 'owner', value: 'tests' })]);
      expect(first.creationTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      await until(async () => (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcId: id }))).body!.vpcs!.vpc![0].status === 'Available', 'Available');
      await vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId: id }));
      const gone = await apiError(vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId: id })));
      expect([gone.statusCode, gone.code]).toEqual([404, 'InvalidVpcId.NotFound']);
    });

    it('replays a CreateVpc with the same ClientToken and refuses other parameters under it', async () => {
      const vpc = t.vpc();
      const make = (cidrBlock: string) => vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock, clientToken: 'vpc-token-1' }));
      const a = await make('10.2.0.0/16');
      const b = await make('10.2.0.0/16');
      expect(b.body!.vpcId).toBe(a.body!.vpcId);
      expect(b.body!.requestId).not.toBe(a.body!.requestId);
      const all = (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, pageSize: 50 }))).body!.vpcs!.vpc!;
      expect(all.filter((v) => v.cidrBlock === '10.2.0.0/16')).toHaveLength(1);
      const mismatch = await apiError(make('10.3.0.0/16'));
      expect([mismatch.statusCode, mismatch.code]).toEqual([400, 'IdempotentParameterMismatch']);
      await until(async () => vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId: a.body!.vpcId })).then(() => true), 'the VPC to delete');
    });

    it('answers a dry run with DryRunOperation and creates nothing', async () => {
      const vpc = t.vpc();
      const before = (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R }))).body!.totalCount;
      const err = await apiError(vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.4.0.0/16', dryRun: true })));
      expect([err.statusCode, err.code]).toEqual([400, 'DryRunOperation']);
      expect((await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R }))).body!.totalCount).toBe(before);
      const bad = await apiError(vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.4.0.1/16' })));
      expect(bad.code).toBe('InvalidCidrBlock.Malformed');
    });

    it('pages VPCs and filters them by tag', async () => {
      const vpc = t.vpc();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const tag = [new $Vpc.CreateVpcRequestTag({ key: 'batch', value: i % 2 === 0 ? 'even' : 'odd' })];
        ids.push((await vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: `10.${10 + i}.0.0/16`, tag }))).body!.vpcId!);
      }
      const page = (n: number) =>
        vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, pageSize: 2, pageNumber: n, tag: [new $Vpc.DescribeVpcsRequestTag({ key: 'batch' })] }));
      const pages = await Promise.all([1, 2, 3].map(page));
      expect(pages.map((p) => p.body!.vpcs!.vpc!.length)).toEqual([2, 2, 1]);
      expect(pages[0].body!.totalCount).toBe(5);
      expect(pages.flatMap((p) => p.body!.vpcs!.vpc!.map((v) => v.vpcId))).toEqual(ids);
      const even = await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, tag: [new $Vpc.DescribeVpcsRequestTag({ key: 'batch', value: 'even' })] }));
      expect(even.body!.vpcs!.vpc!.map((v) => v.vpcId)).toEqual([ids[0], ids[2], ids[4]]);
      const tags = await vpc.listTagResources(new $Vpc.ListTagResourcesRequest({ regionId: R, resourceType: 'vpc', resourceId: [ids[1]] }));
      expect(tags.body!.tagResources!.tagResource).toEqual([expect.objectContaining({ resourceId: ids[1], resourceType: 'VPC', tagKey: 'batch', tagValue: 'odd' })]);
      const byIds = await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcId: `${ids[3]},${ids[1]}` }));
      expect(byIds.body!.vpcs!.vpc!.map((v) => v.vpcId)).toEqual([ids[1], ids[3]]);
      await until(async () => {
        for (const id of ids) await vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId: id })).catch((e) => (e.code === 'InvalidVpcId.NotFound' ? undefined : Promise.reject(e)));
        return true;
      }, 'the VPCs to delete');
    });

    it('checks vSwitch blocks and states, and keeps a VPC while it has vSwitches or security groups', async () => {
      const vpc = t.vpc();
      const pendingVpc = (await vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.20.0.0/16' }))).body!.vpcId!;
      const early = await apiError(vpc.createVSwitch(new $Vpc.CreateVSwitchRequest({ regionId: R, vpcId: pendingVpc, zoneId: TEST_ZONE, cidrBlock: '10.20.1.0/24' })));
      expect(early.code).toBe('IncorrectVpcStatus');
      const vpcId = await availableVpc(t, '10.21.0.0/16');
      const create = (cidrBlock: string, zoneId = TEST_ZONE) => vpc.createVSwitch(new $Vpc.CreateVSwitchRequest({ regionId: R, vpcId, zoneId, cidrBlock, vSwitchName: 'sub' }));
      expect((await apiError(create('10.99.1.0/24'))).code).toBe('InvalidParameter');
      expect((await apiError(create('10.21.1.0/30'))).code).toBe('InvalidCirdrBlock.MaskLength');
      expect((await apiError(create('10.21.1.0/24', 'cn-hangzhou-z'))).code).toBe('InvalidZoneId.NotFound');
      const first = (await create('10.21.1.0/24')).body!.vSwitchId!;
      expect(first).toMatch(/^vsw-[a-z0-9]{20}$/);
      const concurrent = await apiError(create('10.21.2.0/24'));
      expect(concurrent.code).toBe('IncorrectVSwitchStatus');
      const pendingDelete = await apiError(vpc.deleteVSwitch(new $Vpc.DeleteVSwitchRequest({ regionId: R, vSwitchId: first })));
      expect(pendingDelete.code).toBe('IncorrectVSwitchStatus');
      await until(async () => (await vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: R, vpcId }))).body!.vSwitches!.vSwitch![0].status === 'Available', 'Available');
      expect((await apiError(create('10.21.1.128/25'))).code).toBe('InvalidCidrBlock.Overlapped');
      const listed = (await vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ vpcId }))).body!.vSwitches!.vSwitch![0];
      expect(listed).toMatchObject({ vSwitchId: first, zoneId: TEST_ZONE, cidrBlock: '10.21.1.0/24', availableIpAddressCount: 252, vSwitchName: 'sub' });
      expect((await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcId }))).body!.vpcs!.vpc![0].vSwitchIds!.vSwitchId).toEqual([first]);

      const withVSwitch = await apiError(vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId })));
      expect(withVSwitch.code).toBe('DependencyViolation.VSwitch');
      await vpc.deleteVSwitch(new $Vpc.DeleteVSwitchRequest({ regionId: R, vSwitchId: first }));
      expect((await apiError(vpc.deleteVSwitch(new $Vpc.DeleteVSwitchRequest({ regionId: R, vSwitchId: first })))).code).toBe('InvalidVSwitchId.NotFound');
      const sg = (await t.ecs().createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId }))).body!.securityGroupId!;
      const withGroup = await apiError(vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId })));
      expect(withGroup.code).toBe('DependencyViolation.SecurityGroup');
      await t.ecs().deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: sg }));
      await vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId }));
      await until(async () => vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId: pendingVpc })).then(() => true), 'the other VPC to delete');
    });

    it('deletes a VPC with its empty vSwitches when forced', async () => {
      const vpc = t.vpc();
      const vpcId = await availableVpc(t, '10.22.0.0/16');
      const vsw = await availableVSwitch(t, vpcId, '10.22.0.0/24');
      await vpc.deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId, forceDelete: true }));
      expect((await vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: R, vSwitchId: vsw }))).body!.vSwitches!.vSwitch).toEqual([]);
    });
  });

  describe('security groups', () => {
    let vpcId: string;
    beforeAll(async () => {
      vpcId = await availableVpc(t, '10.30.0.0/16');
    });

    it('adds rules once, lists and revokes them', async () => {
      const ecs = t.ecs();
      const sg = (await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId, securityGroupName: 'web', description: 'front' }))).body!.securityGroupId!;
      expect(sg).toMatch(/^sg-[a-z0-9]{20}$/);
      const ssh = new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: 'tcp', portRange: '22/22', sourceCidrIp: '0.0.0.0/0', description: 'ssh' });
      const api = new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: 'TCP', portRange: '6443/6443', sourceCidrIp: '10.0.0.0/8', priority: '10' });
      await ecs.authorizeSecurityGroup(new $Ecs.AuthorizeSecurityGroupRequest({ regionId: R, securityGroupId: sg, permissions: [ssh, api] }));
      // The same rule again (in another case, another description) changes nothing.
      await ecs.authorizeSecurityGroup(
        new $Ecs.AuthorizeSecurityGroupRequest({ regionId: R, securityGroupId: sg, permissions: [new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: 'TCP', portRange: '22/22', sourceCidrIp: '0.0.0.0/0', description: 'again' })] }),
      );
      const attr = await ecs.describeSecurityGroupAttribute(new $Ecs.DescribeSecurityGroupAttributeRequest({ regionId: R, securityGroupId: sg }));
      const perms = attr.body!.permissions!.permission!;
      expect(perms).toHaveLength(2);
      expect(perms[0]).toMatchObject({ ipProtocol: 'TCP', portRange: '22/22', sourceCidrIp: '0.0.0.0/0', policy: 'Accept', priority: '1', direction: 'ingress', description: 'ssh', nicType: 'intranet' });
      expect(perms[0].securityGroupRuleId).toMatch(/^sgr-/);
      expect(perms[1]).toMatchObject({ portRange: '6443/6443', priority: '10' });
      expect(attr.body).toMatchObject({ securityGroupId: sg, securityGroupName: 'web', vpcId, description: 'front' });

      await ecs.revokeSecurityGroup(new $Ecs.RevokeSecurityGroupRequest({ regionId: R, securityGroupId: sg, permissions: [new $Ecs.RevokeSecurityGroupRequestPermissions({ ipProtocol: 'tcp', portRange: '22/22', sourceCidrIp: '0.0.0.0/0' })] }));
      const after = await ecs.describeSecurityGroupAttribute(new $Ecs.DescribeSecurityGroupAttributeRequest({ regionId: R, securityGroupId: sg }));
      expect(after.body!.permissions!.permission!.map((p) => p.portRange)).toEqual(['6443/6443']);

      const badPorts = await apiError(ecs.authorizeSecurityGroup(new $Ecs.AuthorizeSecurityGroupRequest({ regionId: R, securityGroupId: sg, permissions: [new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: 'tcp', portRange: '22', sourceCidrIp: '0.0.0.0/0' })] })));
      expect(badPorts.code).toBe('InvalidPortRange.Malformed');
      const noSource = await apiError(ecs.authorizeSecurityGroup(new $Ecs.AuthorizeSecurityGroupRequest({ regionId: R, securityGroupId: sg, permissions: [new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: 'tcp', portRange: '80/80' })] })));
      expect(noSource.code).toBe('MissingParameter');
      const unknown = await apiError(ecs.authorizeSecurityGroup(new $Ecs.AuthorizeSecurityGroupRequest({ regionId: R, securityGroupId: 'sg-nothere', permissions: [ssh] })));
      expect([unknown.statusCode, unknown.code]).toEqual([404, 'InvalidSecurityGroupId.NotFound']);
      await ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: sg }));
    });

    it('lists groups by VPC, by IDs and by tag, with both paging styles', async () => {
      const ecs = t.ecs();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const tag = [new $Ecs.CreateSecurityGroupRequestTag({ key: 'stack', value: `s${i}` })];
        ids.push((await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId, tag }))).body!.securityGroupId!);
      }
      const first = await ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: R, vpcId, maxResults: 2 }));
      expect(first.body!.securityGroups!.securityGroup!.map((g) => g.securityGroupId)).toEqual(ids.slice(0, 2));
      expect(first.body!.nextToken).not.toBe('');
      const second = await ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: R, vpcId, maxResults: 2, nextToken: first.body!.nextToken }));
      expect(second.body!.securityGroups!.securityGroup!.map((g) => g.securityGroupId)).toEqual([ids[2]]);
      expect(second.body!.nextToken).toBe('');
      const byPage = await ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: R, vpcId, pageSize: 2, pageNumber: 2 }));
      expect(byPage.body).toMatchObject({ pageNumber: 2, pageSize: 2, totalCount: 3 });
      const byIds = await ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: R, securityGroupIds: JSON.stringify([ids[2], ids[0]]) }));
      expect(byIds.body!.securityGroups!.securityGroup!.map((g) => g.securityGroupId)).toEqual([ids[0], ids[2]]);
      const byTag = await ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: R, tag: [new $Ecs.DescribeSecurityGroupsRequestTag({ key: 'stack', value: 's1' })] }));
      const one = byTag.body!.securityGroups!.securityGroup!;
      expect(one.map((g) => g.securityGroupId)).toEqual([ids[1]]);
      expect(one[0].tags!.tag).toEqual([expect.objectContaining({ tagKey: 'stack', tagValue: 's1' })]);
      const malformed = await apiError(ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: R, securityGroupIds: 'sg-a,sg-b' })));
      expect(malformed.code).toBe('InvalidSecurityGroupIds.Malformed');
      for (const id of ids) await ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: id }));
    });

    it('keeps a group that another group authorizes', async () => {
      const ecs = t.ecs();
      const [a, b] = await Promise.all(
        ['a', 'b'].map(async () => (await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId }))).body!.securityGroupId!),
      );
      await ecs.authorizeSecurityGroup(new $Ecs.AuthorizeSecurityGroupRequest({ regionId: R, securityGroupId: a, permissions: [new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: 'all', portRange: '-1/-1', sourceGroupId: b })] }));
      const held = await apiError(ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: b })));
      expect([held.statusCode, held.code]).toEqual([403, 'DependencyViolation']);
      await ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: a }));
      await ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: b }));
    });

    it('replays CreateSecurityGroup for the same ClientToken', async () => {
      const ecs = t.ecs();
      const make = () => ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId, clientToken: 'sg-token' }));
      const [x, y] = [await make(), await make()];
      expect(y.body!.securityGroupId).toBe(x.body!.securityGroupId);
      await ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: x.body!.securityGroupId }));
    });

    it('tags groups with TagResources and lists them in the ECS tag shape', async () => {
      const ecs = t.ecs();
      const sg = (await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId }))).body!.securityGroupId!;
      await ecs.tagResources(new $Ecs.TagResourcesRequest({ regionId: R, resourceType: 'securitygroup', resourceId: [sg], tag: [new $Ecs.TagResourcesRequestTag({ key: 'role', value: 'master' })] }));
      const listed = await ecs.listTagResources(new $Ecs.ListTagResourcesRequest({ regionId: R, resourceType: 'securitygroup', tag: [new $Ecs.ListTagResourcesRequestTag({ key: 'role', value: 'master' })] }));
      expect(listed.body!.tagResources!.tagResource).toEqual([{ resourceId: sg, resourceType: 'securitygroup', tagKey: 'role', tagValue: 'master' }]);
      expect(listed.body!.nextToken).toBe('');
      await ecs.untagResources(new $Ecs.UntagResourcesRequest({ regionId: R, resourceType: 'securitygroup', resourceId: [sg], tagKey: ['role'] }));
      const none = await ecs.listTagResources(new $Ecs.ListTagResourcesRequest({ regionId: R, resourceType: 'securitygroup', resourceId: [sg] }));
      expect(none.body!.tagResources!.tagResource).toEqual([]);
      const missing = await apiError(ecs.tagResources(new $Ecs.TagResourcesRequest({ regionId: R, resourceType: 'securitygroup', resourceId: ['sg-gone'], tag: [new $Ecs.TagResourcesRequestTag({ key: 'a', value: 'b' })] })));
      expect(missing.code).toBe('InvalidResourceId.NotFound');
      const badKey = await apiError(ecs.tagResources(new $Ecs.TagResourcesRequest({ regionId: R, resourceType: 'securitygroup', resourceId: [sg], tag: [new $Ecs.TagResourcesRequestTag({ key: 'aliyun:x', value: 'b' })] })));
      expect(badKey.code).toBe('InvalidTagKey.Malformed');
      await ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: sg }));
    });
  });

  describe('key pairs', () => {
    it('imports public keys with their MD5 fingerprints, lists them by name and tag, deletes them', async () => {
      const ecs = t.ecs();
      const pub = readFileSync(join(keyDir, 'ed.pub'), 'utf8');
      const imported = await ecs.importKeyPair(
        new $Ecs.ImportKeyPairRequest({ regionId: R, keyPairName: 'ops-ed', publicKeyBody: pub, tag: [new $Ecs.ImportKeyPairRequestTag({ key: 'team', value: 'ops' })] }),
      );
      const md5 = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', join(keyDir, 'ed.pub')], { encoding: 'utf8' }).split(' ')[1].replace(/^MD5:/, '');
      expect(imported.body).toMatchObject({ keyPairName: 'ops-ed', keyPairFingerPrint: md5 });
      await ecs.importKeyPair(new $Ecs.ImportKeyPairRequest({ regionId: R, keyPairName: 'ops-rsa', publicKeyBody: readFileSync(join(keyDir, 'rsa.pub'), 'utf8') }));
      const dup = await apiError(ecs.importKeyPair(new $Ecs.ImportKeyPairRequest({ regionId: R, keyPairName: 'ops-ed', publicKeyBody: pub })));
      expect([dup.statusCode, dup.code]).toEqual([400, 'KeyPair.AlreadyExist']);
      const bad = await apiError(ecs.importKeyPair(new $Ecs.ImportKeyPairRequest({ regionId: R, keyPairName: 'bad', publicKeyBody: 'ssh-ed25519 bm90IGEga2V5' })));
      expect(bad.code).toBe('InvalidPublicKeyBody.Malformed');
      const badName = await apiError(ecs.importKeyPair(new $Ecs.ImportKeyPairRequest({ regionId: R, keyPairName: '1st', publicKeyBody: pub })));
      expect(badName.code).toBe('InvalidKeyPairName.Malformed');

      const byName = await ecs.describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: R, keyPairName: 'ops-ed', includePublicKey: true }));
      const kp = byName.body!.keyPairs!.keyPair!;
      expect(kp).toHaveLength(1);
      expect(kp[0].publicKey).toBe(pub.trim());
      expect(kp[0].tags!.tag).toEqual([expect.objectContaining({ tagKey: 'team', tagValue: 'ops' })]);
      const byTag = await ecs.describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: R, tag: [new $Ecs.DescribeKeyPairsRequestTag({ key: 'team', value: 'ops' })] }));
      expect(byTag.body!.keyPairs!.keyPair!.map((k) => k.keyPairName)).toEqual(['ops-ed']);
      const wild = await ecs.describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: R, keyPairName: 'ops-*' }));
      expect(wild.body!.totalCount).toBe(2);
      await ecs.deleteKeyPairs(new $Ecs.DeleteKeyPairsRequest({ regionId: R, keyPairNames: JSON.stringify(['ops-ed', 'ops-rsa', 'never-was']) }));
      expect((await ecs.describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: R }))).body!.totalCount).toBe(0);
    });
  });

  describe('instances without hosts', () => {
    it('answers DescribeInstances for unknown IDs with 200 and an empty list', async () => {
      const res = await t.ecs().describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, instanceIds: JSON.stringify(['i-doesnotexist00000000']) }));
      expect(res.statusCode).toBe(200);
      expect(res.body!.instances!.instance).toEqual([]);
      expect(res.body!.totalCount).toBe(0);
      const malformed = await apiError(t.ecs().describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, instanceIds: 'i-a' })));
      expect(malformed.code).toBe('InvalidInstanceIds.Malformed');
      const del = await apiError(t.ecs().deleteInstances(new $Ecs.DeleteInstancesRequest({ regionId: R, instanceId: ['i-doesnotexist00000000'], force: true })));
      expect([del.statusCode, del.code]).toEqual([404, 'InvalidInstanceId.NotFound']);
    });

    it('refuses RunInstances on a vSwitch that is still Pending, or with a group of another VPC', async () => {
      const ecs = t.ecs();
      const vpcId = await availableVpc(t, '10.40.0.0/16');
      const otherVpc = await availableVpc(t, '10.41.0.0/16');
      const vsw = (await t.vpc().createVSwitch(new $Vpc.CreateVSwitchRequest({ regionId: R, vpcId, zoneId: TEST_ZONE, cidrBlock: '10.40.0.0/24' }))).body!.vSwitchId!;
      const sg = (await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId }))).body!.securityGroupId!;
      const otherSg = (await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId: otherVpc }))).body!.securityGroupId!;
      const run = (securityGroupId: string) =>
        ecs.runInstances(new $Ecs.RunInstancesRequest({ regionId: R, vSwitchId: vsw, securityGroupId, imageId: 'debian_12_x64_20G_alibase_20240101.vhd', instanceType: 'ecs.c7.large' }));
      const pending = await apiError(run(sg));
      expect([pending.statusCode, pending.code]).toEqual([400, 'IncorrectVSwitchStatus']);
      await until(async () => (await t.vpc().describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: R, vSwitchId: vsw }))).body!.vSwitches!.vSwitch![0].status === 'Available', 'Available');
      const mismatch = await apiError(run(otherSg));
      expect(mismatch.code).toBe('InvalidParameter.Mismatch');
      const badType = await apiError(ecs.runInstances(new $Ecs.RunInstancesRequest({ regionId: R, vSwitchId: vsw, securityGroupId: sg, imageId: 'debian_12', instanceType: 'm5.large' })));
      expect(badType.code).toBe('InvalidInstanceType.ValueNotSupported');
      const badPassword = await apiError(ecs.runInstances(new $Ecs.RunInstancesRequest({ regionId: R, vSwitchId: vsw, securityGroupId: sg, imageId: 'debian_12', instanceType: 'ecs.c7.large', password: 'short' })));
      expect(badPassword.code).toBe('InvalidPassword.Malformed');
      const noKey = await apiError(ecs.runInstances(new $Ecs.RunInstancesRequest({ regionId: R, vSwitchId: vsw, securityGroupId: sg, imageId: 'debian_12', instanceType: 'ecs.c7.large', keyPairName: 'absent' })));
      expect([noKey.statusCode, noKey.code]).toEqual([404, 'InvalidKeyPairName.NotFound']);
      const dry = await apiError(ecs.runInstances(new $Ecs.RunInstancesRequest({ regionId: R, vSwitchId: vsw, securityGroupId: sg, imageId: 'debian_12', instanceType: 'ecs.c7.large', amount: 2, dryRun: true })));
      expect(dry.code).toBe('DryRunOperation');
      expect((await ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: R, vpcId }))).body!.instances!.instance).toEqual([]);
      for (const id of [sg, otherSg]) await ecs.deleteSecurityGroup(new $Ecs.DeleteSecurityGroupRequest({ regionId: R, securityGroupId: id }));
      await t.vpc().deleteVSwitch(new $Vpc.DeleteVSwitchRequest({ regionId: R, vSwitchId: vsw }));
      for (const id of [vpcId, otherVpc]) await t.vpc().deleteVpc(new $Vpc.DeleteVpcRequest({ regionId: R, vpcId: id }));
    });
  });

  describe('persistence', () => {
    it('keeps resources across a restart, and reset empties them', async () => {
      const ecs = t.ecs();
      const vpcId = await availableVpc(t, '10.50.0.0/16', { vpcName: 'kept' });
      const sg = (await ecs.createSecurityGroup(new $Ecs.CreateSecurityGroupRequest({ regionId: R, vpcId, securityGroupName: 'kept-sg' }))).body!.securityGroupId!;
      await ecs.importKeyPair(new $Ecs.ImportKeyPairRequest({ regionId: R, keyPairName: 'kept-key', publicKeyBody: readFileSync(join(keyDir, 'ed.pub'), 'utf8') }));
      const token = await t.vpc().createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.51.0.0/16', clientToken: 'before-restart' }));
      const stored = JSON.parse(readFileSync(join(t.dataDir, 'store.json'), 'utf8'));
      expect(Object.keys(stored.vpcs)).toContain(vpcId);

      await t.restart();
      const vpcs = (await t.vpc().describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R, vpcName: 'kept' }))).body!.vpcs!.vpc!;
      expect(vpcs.map((v) => [v.vpcId, v.status])).toEqual([[vpcId, 'Available']]);
      const groups = await t.ecs().describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: R, securityGroupIds: JSON.stringify([sg]) }));
      expect(groups.body!.securityGroups!.securityGroup![0].securityGroupName).toBe('kept-sg');
      expect((await t.ecs().describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: R, keyPairName: 'kept-key' }))).body!.totalCount).toBe(1);
      const replay = await t.vpc().createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.51.0.0/16', clientToken: 'before-restart' }));
      expect(replay.body!.vpcId).toBe(token.body!.vpcId);

      await t.emulator.reset();
      expect((await t.vpc().describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: R }))).body!.totalCount).toBe(0);
      expect((await t.ecs().describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: R }))).body!.totalCount).toBe(0);
      const afterReset = await t.vpc().createVpc(new $Vpc.CreateVpcRequest({ regionId: R, cidrBlock: '10.51.0.0/16', clientToken: 'before-restart' }));
      expect(afterReset.body!.vpcId).not.toBe(token.body!.vpcId);
    });
  });
});
