/**
 * The VPC API (2016-04-28): VPCs and vSwitches, Pending for a moment after they are created, then Available.
 * Their CIDR blocks are recorded and checked; instances get the lab's addresses, not addresses of these blocks.
 */
import { errors } from '../api-errors.js';
import { region, regionEndpoint, regions, zoneIds, zoneName } from '../catalogue.js';
import { contains, overlaps, parseCidr, reserved, cidrSize } from '../cidr.js';
import { draw } from '../latency.js';
import { byPageNumber } from '../paging.js';
import type { VSwitchRec, VpcRec } from '../store.js';
import { matchesTags, tagFilters, tagsToSet, vpcTags } from '../tags.js';
import { isoSeconds, newId, type Body } from '../wire.js';
import { isDryRun, regionOf, type ActionTable, type Ctx } from './action.js';
import { groupsIn } from './ecs-security-groups.js';

const MAX_VSWITCHES = 150;
const DEFAULT_VPC_CIDR = '172.16.0.0/12';

const checkName = (name: string | undefined, bad: () => Error) => {
  if (name !== undefined && (name.length > 128 || /^https?:\/\//.test(name))) throw bad();
};
const checkDescription = (d: string | undefined, bad: () => Error) => {
  if (d !== undefined && (d.length > 256 || /^https?:\/\//.test(d))) throw bad();
};

function vpcOf(ctx: Ctx, id: string | undefined): VpcRec {
  if (id === undefined) throw errors.vpcMissing();
  const vpc = ctx.cloud.data.vpcs[id];
  if (!vpc || vpc.regionId !== regionOf(ctx).id) throw errors.vpcNotFound();
  return vpc;
}

function vSwitchOf(ctx: Ctx, id: string | undefined): VSwitchRec {
  if (id === undefined) throw errors.vpcMissing();
  const vsw = ctx.cloud.data.vSwitches[id];
  if (!vsw || vsw.regionId !== regionOf(ctx).id) throw errors.vSwitchNotFound();
  return vsw;
}

const vSwitchesIn = (ctx: Ctx, vpcId: string) => Object.values(ctx.cloud.data.vSwitches).filter((v) => v.vpcId === vpcId);

function createVpc(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const cidrText = params.nonEmpty('CidrBlock') ?? DEFAULT_VPC_CIDR;
  const cidr = parseCidr(cidrText);
  if (!cidr || reserved(cidr)) throw errors.cidrMalformed();
  if (cidr.mask < 8 || cidr.mask > 28) throw errors.cidrMask();
  const name = params.nonEmpty('VpcName');
  checkName(name, errors.vpcName);
  const description = params.nonEmpty('Description');
  checkDescription(description, errors.vpcDescription);
  const tags = tagsToSet(params);
  if (isDryRun(ctx)) throw errors.dryRun();
  const now = Date.now();
  const vpc: VpcRec = {
    id: newId('vpc'),
    regionId: r.id,
    cidrBlock: cidrText,
    name: name ?? '',
    description: description ?? '',
    resourceGroupId: params.nonEmpty('ResourceGroupId') ?? cloud.defaultResourceGroupId,
    vRouterId: newId('vrt'),
    routeTableId: newId('vtb'),
    createdAt: now,
    availableAt: now + draw(cloud.timings.network),
    tags,
  };
  cloud.data.vpcs[vpc.id] = vpc;
  return { VpcId: vpc.id, VRouterId: vpc.vRouterId, RouteTableId: vpc.routeTableId, ResourceGroupId: vpc.resourceGroupId };
}

function describeVpcs(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const ids = params.nonEmpty('VpcId')?.split(',').map((s) => s.trim()).filter(Boolean);
  if (ids && ids.length > 20) throw errors.invalid('VpcId');
  const name = params.nonEmpty('VpcName');
  const rg = params.nonEmpty('ResourceGroupId');
  const isDefault = params.bool('IsDefault');
  const filters = tagFilters(params);
  if (isDryRun(ctx)) throw errors.dryRun();
  const now = Date.now();
  const found = Object.values(cloud.data.vpcs)
    .filter(
      (v) =>
        v.regionId === r.id &&
        (ids === undefined || ids.includes(v.id)) &&
        (name === undefined || v.name === name) &&
        (rg === undefined || v.resourceGroupId === rg) &&
        isDefault !== true &&
        matchesTags(v.tags, filters),
    )
    .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  const page = byPageNumber(found, params, { maxSize: 50 });
  return {
    Vpcs: {
      Vpc: page.items.map((v) => ({
        VpcId: v.id,
        RegionId: v.regionId,
        Status: cloud.networkStatus(v, now),
        VpcName: v.name,
        Description: v.description,
        CidrBlock: v.cidrBlock,
        CreationTime: isoSeconds(v.createdAt),
        VRouterId: v.vRouterId,
        IsDefault: false,
        ResourceGroupId: v.resourceGroupId,
        OwnerId: cloud.ownerId,
        EnabledIpv6: false,
        Ipv6CidrBlock: '',
        CenStatus: 'Detached',
        DhcpOptionsSetId: '',
        DhcpOptionsSetStatus: '',
        DnsHostnameStatus: 'DISABLED',
        VSwitchIds: { VSwitchId: vSwitchesIn(ctx, v.id).map((s) => s.id) },
        RouterTableIds: { RouterTableIds: [v.routeTableId] },
        NatGatewayIds: { NatGatewayIds: [] },
        UserCidrs: { UserCidr: [] },
        SecondaryCidrBlocks: { SecondaryCidrBlock: [] },
        Ipv6CidrBlocks: { Ipv6CidrBlock: [] },
        ...vpcTags(v.tags),
      })),
    },
    ...page.fields,
  };
}

function deleteVpc(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const vpc = vpcOf(ctx, params.nonEmpty('VpcId'));
  if (cloud.networkStatus(vpc) !== 'Available') throw errors.vpcStatus();
  const force = params.bool('ForceDelete') === true;
  const vsws = vSwitchesIn(ctx, vpc.id);
  const inUse = (v: VSwitchRec) => cloud.instances(v.regionId).some((i) => i.vSwitchId === v.id);
  // ForceDelete takes the VPC's empty vSwitches with it; a vSwitch still used by instances blocks it all the same.
  if (vsws.length > 0 && (!force || vsws.some(inUse))) throw errors.vpcHasVSwitches();
  if (groupsIn(cloud, vpc.id).length > 0) throw errors.vpcHasSecurityGroups();
  if (isDryRun(ctx)) throw errors.dryRun();
  for (const v of vsws) delete cloud.data.vSwitches[v.id];
  delete cloud.data.vpcs[vpc.id];
  return {};
}

function createVSwitch(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const vpc = vpcOf(ctx, params.nonEmpty('VpcId'));
  const zoneId = params.nonEmpty('ZoneId');
  if (zoneId === undefined) throw errors.vpcMissing();
  if (!zoneIds(r).includes(zoneId)) throw errors.vpcZoneNotFound();
  const cidrText = params.nonEmpty('CidrBlock');
  if (cidrText === undefined) throw errors.vpcMissing();
  const cidr = parseCidr(cidrText);
  if (!cidr) throw errors.cidrMalformed();
  if (cidr.mask < 16 || cidr.mask > 29) throw errors.cidrMask();
  const name = params.nonEmpty('VSwitchName');
  checkName(name, errors.vSwitchName);
  const description = params.nonEmpty('Description');
  checkDescription(description, errors.vSwitchDescription);
  const tags = tagsToSet(params);
  if (cloud.networkStatus(vpc) !== 'Available') throw errors.vpcStatus();
  const siblings = vSwitchesIn(ctx, vpc.id);
  if (siblings.some((v) => cloud.networkStatus(v) === 'Pending')) throw errors.vSwitchConcurrent();
  if (!contains(parseCidr(vpc.cidrBlock)!, cidr)) throw errors.cidrNotInVpc();
  if (siblings.some((v) => overlaps(parseCidr(v.cidrBlock)!, cidr))) throw errors.cidrOverlap();
  if (siblings.length >= MAX_VSWITCHES) throw errors.vSwitchQuota();
  if (isDryRun(ctx)) throw errors.dryRun();
  const now = Date.now();
  const vsw: VSwitchRec = {
    id: newId('vsw'),
    regionId: r.id,
    vpcId: vpc.id,
    zoneId,
    cidrBlock: cidrText,
    name: name ?? '',
    description: description ?? '',
    resourceGroupId: params.nonEmpty('ResourceGroupId') ?? vpc.resourceGroupId,
    createdAt: now,
    availableAt: now + draw(cloud.timings.network),
    tags,
  };
  cloud.data.vSwitches[vsw.id] = vsw;
  return { VSwitchId: vsw.id };
}

function describeVSwitches(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const vpcId = params.nonEmpty('VpcId');
  // The region may be left out when a VPC is given: the VPC says which.
  const regionId = params.nonEmpty('RegionId') ?? (vpcId !== undefined ? cloud.data.vpcs[vpcId]?.regionId : undefined);
  const r = region(regionId);
  const id = params.nonEmpty('VSwitchId');
  const zone = params.nonEmpty('ZoneId');
  const name = params.nonEmpty('VSwitchName');
  const rg = params.nonEmpty('ResourceGroupId');
  const routeTable = params.nonEmpty('RouteTableId');
  const isDefault = params.bool('IsDefault');
  const filters = tagFilters(params);
  if (isDryRun(ctx)) throw errors.dryRun();
  const now = Date.now();
  const instances = cloud.instances(r.id);
  const found = Object.values(cloud.data.vSwitches)
    .filter(
      (v) =>
        v.regionId === r.id &&
        (vpcId === undefined || v.vpcId === vpcId) &&
        (id === undefined || v.id === id) &&
        (zone === undefined || v.zoneId === zone) &&
        (name === undefined || v.name === name) &&
        (rg === undefined || v.resourceGroupId === rg) &&
        (routeTable === undefined || cloud.data.vpcs[v.vpcId]?.routeTableId === routeTable) &&
        isDefault !== true &&
        matchesTags(v.tags, filters),
    )
    .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  const page = byPageNumber(found, params, { maxSize: 50 });
  return {
    VSwitches: {
      VSwitch: page.items.map((v) => ({
        VSwitchId: v.id,
        VpcId: v.vpcId,
        Status: cloud.networkStatus(v, now),
        CidrBlock: v.cidrBlock,
        ZoneId: v.zoneId,
        AvailableIpAddressCount: cidrSize(v.cidrBlock) - 4 - instances.filter((i) => i.vSwitchId === v.id).length,
        Description: v.description,
        VSwitchName: v.name,
        CreationTime: isoSeconds(v.createdAt),
        IsDefault: false,
        ResourceGroupId: v.resourceGroupId,
        OwnerId: cloud.ownerId,
        NetworkAclId: '',
        ShareType: 'Sharing',
        EnabledIpv6: false,
        Ipv6CidrBlock: '',
        RouteTable: { RouteTableId: cloud.data.vpcs[v.vpcId]?.routeTableId ?? '', RouteTableType: 'System' },
        ...vpcTags(v.tags),
      })),
    },
    ...page.fields,
  };
}

function deleteVSwitch(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const vsw = vSwitchOf(ctx, params.nonEmpty('VSwitchId'));
  if (cloud.networkStatus(vsw) !== 'Available') throw errors.vSwitchStatus();
  // Instances being released still hold their vSwitch until the release settles.
  if (cloud.instances(vsw.regionId).some((i) => i.vSwitchId === vsw.id)) throw errors.vSwitchInUse();
  if (isDryRun(ctx)) throw errors.dryRun();
  delete cloud.data.vSwitches[vsw.id];
  return {};
}

export const vpcActions: ActionTable = {
  DescribeRegions: {
    run: ({ params }) => {
      const en = params.nonEmpty('AcceptLanguage')?.toLowerCase().startsWith('en');
      return { Regions: { Region: regions().map((r) => ({ RegionId: r.id, LocalName: en ? r.en : r.zh, RegionEndpoint: regionEndpoint(r.id, 'vpc') })) } };
    },
  },
  DescribeZones: {
    run: (ctx) => {
      const r = regionOf(ctx);
      const lang = ctx.params.nonEmpty('AcceptLanguage');
      return { Zones: { Zone: zoneIds(r).map((id) => ({ ZoneId: id, LocalName: zoneName(r, id, lang), ZoneType: 'AvailabilityZone' })) } };
    },
  },
  CreateVpc: { run: createVpc, mutates: true, idempotent: true },
  DescribeVpcs: { run: describeVpcs },
  DeleteVpc: { run: deleteVpc, mutates: true, idempotent: true },
  CreateVSwitch: { run: createVSwitch, mutates: true, idempotent: true },
  DescribeVSwitches: { run: describeVSwitches },
  DeleteVSwitch: { run: deleteVSwitch, mutates: true },
};
