/**
 * ECS instances: RunInstances, DescribeInstances, DescribeInstanceStatus, DeleteInstances. Each instance is a local
 * host; its private IP (and public IP with InternetMaxBandwidthOut > 0) is the host's lab address, which is not inside
 * the vSwitch's CIDR block: the lab's network is what this machine can reach.
 */
import { randomUUID } from 'node:crypto';
import { macFor } from '../../../local/network.js';
import { errors } from '../api-errors.js';
import { DATA_DISK_CATEGORIES, SYSTEM_DISK_CATEGORIES, image, instanceType } from '../catalogue.js';
import type { Cloud } from '../cloud.js';
import { draw } from '../latency.js';
import { eitherPaging, byPageNumber } from '../paging.js';
import { checkPassword, hashPassword } from '../password.js';
import type { DiskRec, InstanceRec, SecurityGroupRec } from '../store.js';
import { ecsTags, matchesTags, tagFilters, tagsToSet } from '../tags.js';
import { cidrSize } from '../cidr.js';
import { isoMinutes, newId, type Body } from '../wire.js';
import { wildcardMatch } from '../params.js';
import { isDryRun, regionOf, type ActionTable, type Ctx } from './action.js';

/** Every live instance is a host in one lab (253 addresses); past this, RunInstances answers a quota error. */
const LAB_CAPACITY = 250;
const STATUSES = ['Pending', 'Starting', 'Running', 'Stopping', 'Stopped'];
const PLACEHOLDER = '${instance_id}';

const HOSTNAME_SEGMENT = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$/;
const INSTANCE_NAME = /^[A-Za-z\u4e00-\u9fa5][A-Za-z0-9\u4e00-\u9fa5:_.-]{1,127}$/;

function checkHostName(name: string): void {
  if (name.length < 2 || name.length > 64 || !name.split('.').every((s) => HOSTNAME_SEGMENT.test(s))) throw errors.hostName();
}

function checkDescription(d: string | undefined): void {
  if (d !== undefined && (d.length > 256 || /^https?:\/\//.test(d))) throw errors.description();
}

/** Name of instance `i` of a batch: `${instance_id}` filled in, and with UniqueSuffix a 001, 002 ... suffix. */
function batchName(template: string, id: string, i: number, unique: boolean): string {
  return template.split(PLACEHOLDER).join(id) + (unique ? String(i + 1).padStart(3, '0') : '');
}

function disks(ctx: Ctx): { system: DiskRec; data: DiskRec[] } {
  const sd = ctx.params.object('SystemDisk');
  const systemCategory = sd.Category ?? 'cloud_efficiency';
  if (!SYSTEM_DISK_CATEGORIES.includes(systemCategory)) throw errors.systemDiskCategory();
  const systemSize = sd.Size === undefined || sd.Size === '' ? 40 : Number(sd.Size);
  if (!Number.isInteger(systemSize) || systemSize < 20 || systemSize > 2048) throw errors.systemDiskSize();
  const data = ctx.params.objects('DataDisk').map((d) => {
    const category = d.Category ?? 'cloud_efficiency';
    if (!DATA_DISK_CATEGORIES.includes(category)) throw errors.dataDiskCategory();
    const size = Number(d.Size ?? (d.SnapshotId ? 40 : NaN));
    if (!Number.isInteger(size) || size < 20 || size > 32768) throw errors.dataDiskSize();
    return { category, size, performanceLevel: d.PerformanceLevel ?? (category === 'cloud_essd' ? 'PL1' : '') };
  });
  if (data.length > 16) throw errors.dataDiskCount();
  return {
    system: { category: systemCategory, size: systemSize, performanceLevel: sd.PerformanceLevel ?? (systemCategory === 'cloud_essd' ? 'PL1' : '') },
    data,
  };
}

const UNSUPPORTED_RUN_PARAMS = ['PrivateIpAddress', 'LaunchTemplateId', 'LaunchTemplateName', 'NetworkInterface.1.VSwitchId', 'DedicatedHostId', 'Ipv6AddressCount'];

async function runInstances(ctx: Ctx): Promise<Body> {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  for (const p of UNSUPPORTED_RUN_PARAMS) if (params.nonEmpty(p) !== undefined) throw errors.unsupported(p);

  const imageId = params.nonEmpty('ImageId') ?? params.nonEmpty('ImageFamily');
  if (imageId === undefined) throw errors.missing('ImageId');
  image(imageId);
  const type = instanceType(params.required('InstanceType'));
  const amount = params.int('Amount', { min: 1, max: 100, error: errors.amount }) ?? 1;
  const minAmount = params.int('MinAmount', { min: 1, max: amount, error: errors.amount });

  const vswId = params.required('VSwitchId');
  const vsw = cloud.data.vSwitches[vswId];
  if (!vsw || vsw.regionId !== r.id) throw errors.ecsVSwitchNotFound();
  const zoneId = params.nonEmpty('ZoneId') ?? vsw.zoneId;
  if (!r.zones.some((z) => `${r.id}-${z}` === zoneId)) throw errors.zoneNotFound();
  if (zoneId !== vsw.zoneId) throw errors.vSwitchZoneMismatch();
  if (cloud.networkStatus(vsw) !== 'Available') throw errors.vSwitchStatus();

  const single = params.nonEmpty('SecurityGroupId');
  const many = params.list('SecurityGroupIds');
  if (single !== undefined && many.length > 0) throw errors.securityGroupConflict();
  const sgIds = single !== undefined ? [single] : many;
  if (sgIds.length === 0) throw errors.missing('SecurityGroupId');
  if (sgIds.length > 10) throw errors.invalid('SecurityGroupIds');
  const groups: SecurityGroupRec[] = sgIds.map((id) => {
    const sg = cloud.data.securityGroups[id];
    if (!sg || sg.regionId !== r.id) throw errors.securityGroupNotFound();
    if (sg.vpcId !== vsw.vpcId) throw errors.securityGroupVpcMismatch();
    return sg;
  });

  const keyPairName = params.nonEmpty('KeyPairName');
  const keyPair = keyPairName === undefined ? undefined : cloud.data.keyPairs[`${r.id}/${keyPairName}`];
  if (keyPairName !== undefined && !keyPair) throw errors.keyPairNotFound();
  const password = params.nonEmpty('Password');
  if (password !== undefined) {
    if (params.bool('PasswordInherit')) throw errors.passwordInherit();
    checkPassword(password);
  }

  const unique = params.bool('UniqueSuffix') === true;
  const hostNames = params.list('HostNames');
  const hostName = params.nonEmpty('HostName');
  if (hostNames.length > 0 && hostNames.length !== amount) throw errors.hostName();
  const instanceName = params.nonEmpty('InstanceName');
  const description = params.nonEmpty('Description');
  checkDescription(description);
  const { system, data } = disks(ctx);
  const internetChargeType = params.nonEmpty('InternetChargeType') ?? 'PayByTraffic';
  if (!['PayByTraffic', 'PayByBandwidth'].includes(internetChargeType)) throw errors.internetChargeType();
  const bandwidthOut = params.int('InternetMaxBandwidthOut', { min: 0, max: 100, error: errors.bandwidth }) ?? 0;
  const bandwidthIn = params.int('InternetMaxBandwidthIn', { min: 1, max: 10000, error: errors.bandwidth }) ?? (bandwidthOut > 0 ? 100 : 0);
  const instanceChargeType = params.nonEmpty('InstanceChargeType') ?? 'PostPaid';
  if (!['PostPaid', 'PrePaid'].includes(instanceChargeType)) throw errors.instanceChargeType();
  const spotStrategy = params.nonEmpty('SpotStrategy') ?? 'NoSpot';
  if (!['NoSpot', 'SpotWithPriceLimit', 'SpotAsPriceGo'].includes(spotStrategy)) throw errors.invalid('SpotStrategy', 'InvalidSpotStrategy');
  const userData = params.nonEmpty('UserData');
  if (userData !== undefined && Buffer.from(userData, 'base64').length > 32 * 1024) throw errors.userDataSize();
  const tags = tagsToSet(params);

  // Names are checked with a stand-in ID, before any ID is drawn, so a bad name fails the whole call.
  const sample = 'i-' + 'x'.repeat(20);
  for (let i = 0; i < amount; i++) {
    if (hostNames.length > 0) checkHostName(hostNames[i]);
    else if (hostName !== undefined) checkHostName(batchName(hostName, sample, i, unique));
    if (instanceName !== undefined && !INSTANCE_NAME.test(batchName(instanceName, sample, i, unique))) throw errors.instanceName();
  }

  // Capacity: the nostock fault, the zone's stock of this type, the vSwitch's free addresses, the lab's size.
  const live = cloud.instances().filter((i) => !i.releasing);
  const noStockFault = cloud.faults.noStock();
  const inStock = cloud.stockLeft(zoneId, params.str('InstanceType')!);
  let count = amount <= inStock ? amount : minAmount !== undefined && minAmount <= inStock ? inStock : 0;
  if (noStockFault || count === 0) throw errors.noStock();
  const freeIps = cidrSize(vsw.cidrBlock) - 4 - live.filter((i) => i.vSwitchId === vsw.id).length;
  if (freeIps < count) throw errors.vSwitchIpNotEnough();
  if (live.length + count > LAB_CAPACITY) throw errors.instanceQuota();
  if (isDryRun(ctx)) throw errors.dryRun();

  const passwordHash = password === undefined ? '' : await hashPassword(password);
  const now = Date.now();
  const t = cloud.timings;
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = newId('i');
    const pending = draw(t.pending);
    const inst: InstanceRec = {
      id,
      regionId: r.id,
      zoneId,
      vpcId: vsw.vpcId,
      vSwitchId: vsw.id,
      securityGroupIds: groups.map((g) => g.id),
      imageId,
      instanceType: params.str('InstanceType')!,
      cpu: type.cpu,
      memoryMiB: type.memoryMiB,
      name: instanceName !== undefined ? batchName(instanceName, id, i, unique) : id,
      hostName:
        hostNames.length > 0 ? hostNames[i] : hostName !== undefined ? batchName(hostName, id, i, unique) : `iZ${id.slice(2)}Z`,
      description: description ?? '',
      keyPairName: keyPairName ?? '',
      passwordHash,
      authorizedKey: keyPair?.publicKey ?? '',
      internetChargeType,
      internetMaxBandwidthOut: bandwidthOut,
      internetMaxBandwidthIn: bandwidthIn,
      instanceChargeType,
      spotStrategy,
      systemDisk: system,
      dataDisks: data,
      resourceGroupId: params.nonEmpty('ResourceGroupId') ?? cloud.defaultResourceGroupId,
      deletionProtection: params.bool('DeletionProtection') === true,
      networkInterfaceId: newId('eni'),
      serialNumber: randomUUID(),
      tags: tags.map((x) => ({ ...x })),
      createdAt: now,
      pendingUntil: now + pending,
      startingUntil: now + pending + draw(t.starting),
      sshdDelayMs: draw(t.sshdDelay),
    };
    cloud.data.instances[id] = inst;
    ids.push(id);
    ctx.afterCommit.push(() => cloud.startHost(inst));
  }
  return {
    InstanceIdSets: { InstanceIdSet: ids },
    ...(instanceChargeType === 'PrePaid' ? { OrderId: String(now) } : {}),
  };
}

function renderInstance(cloud: Cloud, inst: InstanceRec, now: number): Body {
  const status = cloud.instanceStatus(inst, now)!;
  const os = image(inst.imageId);
  const ip = inst.ip;
  const runningSince = inst.hostUpAt !== undefined ? Math.max(inst.startingUntil, inst.hostUpAt) : undefined;
  return {
    InstanceId: inst.id,
    InstanceName: inst.name,
    HostName: inst.hostName,
    Description: inst.description,
    Status: status,
    InstanceType: inst.instanceType,
    InstanceTypeFamily: inst.instanceType.split('.').slice(0, 2).join('.'),
    Cpu: inst.cpu,
    Memory: inst.memoryMiB,
    GPUAmount: 0,
    GPUSpec: '',
    ImageId: inst.imageId,
    OSName: os.osName,
    OSNameEn: os.osNameEn,
    OSType: 'linux',
    RegionId: inst.regionId,
    ZoneId: inst.zoneId,
    CreationTime: isoMinutes(inst.createdAt),
    StartTime: status === 'Running' && runningSince !== undefined ? isoMinutes(runningSince) : '',
    ExpiredTime: '2099-12-31T15:59Z',
    AutoReleaseTime: '',
    InstanceChargeType: inst.instanceChargeType,
    InternetChargeType: inst.internetChargeType,
    InternetMaxBandwidthOut: inst.internetMaxBandwidthOut,
    InternetMaxBandwidthIn: inst.internetMaxBandwidthIn,
    SpotStrategy: inst.spotStrategy,
    SpotPriceLimit: 0,
    KeyPairName: inst.keyPairName,
    InstanceNetworkType: 'vpc',
    IoOptimized: true,
    DeviceAvailable: true,
    DeletionProtection: inst.deletionProtection,
    Recyclable: false,
    StoppedMode: 'Not-applicable',
    SerialNumber: inst.serialNumber,
    ResourceGroupId: inst.resourceGroupId,
    LocalStorageAmount: 0,
    LocalStorageCapacity: 0,
    SecurityGroupIds: { SecurityGroupId: inst.securityGroupIds },
    VpcAttributes: { VpcId: inst.vpcId, VSwitchId: inst.vSwitchId, PrivateIpAddress: { IpAddress: ip ? [ip] : [] }, NatIpAddress: '' },
    PublicIpAddress: { IpAddress: ip && inst.internetMaxBandwidthOut > 0 ? [ip] : [] },
    InnerIpAddress: { IpAddress: [] },
    EipAddress: { AllocationId: '', IpAddress: '', InternetChargeType: '', Bandwidth: 0, IsSupportUnassociate: true },
    NetworkInterfaces: {
      NetworkInterface: [
        {
          NetworkInterfaceId: inst.networkInterfaceId,
          Type: 'Primary',
          PrimaryIpAddress: ip ?? '',
          MacAddress: ip ? macFor(ip) : '',
          PrivateIpSets: { PrivateIpSet: ip ? [{ PrivateIpAddress: ip, Primary: true }] : [] },
        },
      ],
    },
    OperationLocks: { LockReason: [] },
    MetadataOptions: { HttpEndpoint: 'enabled', HttpTokens: 'optional', HttpPutResponseHopLimit: 1 },
    ...ecsTags(inst.tags),
  };
}

function describeInstances(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const ids = params.jsonList('InstanceIds', { max: 100 });
  const privateIps = params.jsonList('PrivateIpAddresses', { max: 100 });
  const publicIps = params.jsonList('PublicIpAddresses', { max: 100 });
  const status = params.nonEmpty('Status');
  if (status !== undefined && !STATUSES.includes(status)) throw errors.invalid('Status', 'InvalidStatus.ValueNotSupported');
  const filters = tagFilters(params);
  const eq = (name: string, value: string) => {
    const want = params.nonEmpty(name);
    return want === undefined || want === value;
  };
  const name = params.nonEmpty('InstanceName');
  if (isDryRun(ctx)) throw errors.dryRun();
  const now = Date.now();
  const found = cloud.instances(r.id).filter(
    (i) =>
      (ids === undefined || ids.includes(i.id)) &&
      eq('VpcId', i.vpcId) &&
      eq('VSwitchId', i.vSwitchId) &&
      eq('ZoneId', i.zoneId) &&
      eq('InstanceType', i.instanceType) &&
      eq('InstanceTypeFamily', i.instanceType.split('.').slice(0, 2).join('.')) &&
      eq('ImageId', i.imageId) &&
      eq('KeyPairName', i.keyPairName) &&
      eq('ResourceGroupId', i.resourceGroupId) &&
      eq('InstanceChargeType', i.instanceChargeType) &&
      eq('InternetChargeType', i.internetChargeType) &&
      (params.nonEmpty('SecurityGroupId') === undefined || i.securityGroupIds.includes(params.nonEmpty('SecurityGroupId')!)) &&
      (status === undefined || cloud.instanceStatus(i, now) === status) &&
      (name === undefined || wildcardMatch(name, i.name)) &&
      (privateIps === undefined || (i.ip !== undefined && privateIps.includes(i.ip))) &&
      (publicIps === undefined || (i.ip !== undefined && i.internetMaxBandwidthOut > 0 && publicIps.includes(i.ip))) &&
      matchesTags(i.tags, filters),
  );
  const page = eitherPaging(found, params, { maxResults: 100, maxPageSize: 100 });
  return { Instances: { Instance: page.items.map((i) => renderInstance(cloud, i, now)) }, ...page.fields };
}

function describeInstanceStatus(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const ids = params.list('InstanceId');
  if (ids.length > 100) throw errors.invalid('InstanceId');
  const zone = params.nonEmpty('ZoneId');
  const now = Date.now();
  const found = cloud.instances(r.id).filter((i) => (ids.length === 0 || ids.includes(i.id)) && (zone === undefined || i.zoneId === zone));
  const page = byPageNumber(found, params, { maxSize: 50 });
  return {
    InstanceStatuses: { InstanceStatus: page.items.map((i) => ({ InstanceId: i.id, Status: cloud.instanceStatus(i, now) })) },
    ...page.fields,
  };
}

function deleteInstances(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const ids = params.list('InstanceId');
  if (ids.length === 0) throw errors.missing('InstanceId');
  if (ids.length > 100) throw errors.invalid('InstanceId');
  const force = params.bool('Force') === true;
  const now = Date.now();
  const targets = [...new Set(ids)].map((id) => {
    const inst = cloud.data.instances[id];
    const status = inst && inst.regionId === r.id ? cloud.instanceStatus(inst, now) : undefined;
    if (!inst || status === undefined) throw errors.instanceNotFound();
    return { inst, status };
  });
  for (const { inst, status } of targets) {
    if (status === 'Stopping') continue; // already being released: nothing more to do
    if (inst.deletionProtection) throw errors.deletionProtection();
    if (status === 'Pending') throw errors.instanceInitializing();
    if (!force) throw errors.instanceStatus();
  }
  if (isDryRun(ctx)) throw errors.dryRunDeleteInstances();
  for (const { inst, status } of targets) {
    if (status === 'Stopping') continue;
    inst.releasing = { at: now, settleAt: now + draw(cloud.timings.release), hostRemoved: false };
    ctx.afterCommit.push(() => cloud.releaseHost(inst));
  }
  return {};
}

export const ecsInstanceActions: ActionTable = {
  RunInstances: { run: runInstances, mutates: true, idempotent: true },
  DescribeInstances: { run: describeInstances },
  DescribeInstanceStatus: { run: describeInstanceStatus },
  DeleteInstances: { run: deleteInstances, mutates: true, idempotent: true },
};
