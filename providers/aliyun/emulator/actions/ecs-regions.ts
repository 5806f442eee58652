/** ECS DescribeRegions, DescribeZones and DescribeAvailableResource. */
import { errors } from '../api-errors.js';
import { DATA_DISK_CATEGORIES, LISTED_INSTANCE_TYPES, SYSTEM_DISK_CATEGORIES, instanceType, regionEndpoint, regions, zoneIds, zoneName } from '../catalogue.js';
import type { Body } from '../wire.js';
import { regionOf, type ActionTable, type Ctx } from './action.js';

const DESTINATIONS = ['Zone', 'IoOptimized', 'InstanceType', 'Network', 'ddh', 'SystemDisk', 'DataDisk'];

/** What each zone offers, with the stock of each instance type as RunInstances would find it. */
function describeAvailableResource(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const destination = params.required('DestinationResource');
  if (!DESTINATIONS.includes(destination)) throw errors.invalid('DestinationResource');
  const zone = params.nonEmpty('ZoneId');
  if (zone !== undefined && !zoneIds(r).includes(zone)) throw errors.zoneNotFound();
  const wantedType = params.nonEmpty('InstanceType');
  if (wantedType !== undefined) instanceType(wantedType);
  const cores = params.int('Cores', { min: 1 });
  const memory = params.nonEmpty('Memory') === undefined ? undefined : Number(params.nonEmpty('Memory'));
  const types = (wantedType !== undefined ? [wantedType] : LISTED_INSTANCE_TYPES).filter((t) => {
    const info = instanceType(t);
    return (cores === undefined || info.cpu === cores) && (memory === undefined || info.memoryMiB === Math.round(memory * 1024));
  });
  const supported = (zoneId: string): Body[] => {
    switch (destination) {
      case 'InstanceType':
        return types.map((t) => {
          const left = cloud.stockLeft(zoneId, t) > 0;
          return { Value: t, Status: left ? 'Available' : 'SoldOut', StatusCategory: left ? 'WithStock' : 'WithoutStock' };
        });
      case 'SystemDisk':
        return SYSTEM_DISK_CATEGORIES.map((c) => ({ Value: c, Status: 'Available', StatusCategory: 'WithStock', Min: 20, Max: 2048, Unit: 'GiB' }));
      case 'DataDisk':
        return DATA_DISK_CATEGORIES.map((c) => ({ Value: c, Status: 'Available', StatusCategory: 'WithStock', Min: 20, Max: 32768, Unit: 'GiB' }));
      case 'Zone':
        return [{ Value: zoneId, Status: 'Available', StatusCategory: 'WithStock' }];
      case 'IoOptimized':
        return [{ Value: 'optimized', Status: 'Available', StatusCategory: 'WithStock' }];
      case 'Network':
        return [{ Value: 'vpc', Status: 'Available', StatusCategory: 'WithStock' }];
      default:
        return [];
    }
  };
  return {
    AvailableZones: {
      AvailableZone: zoneIds(r)
        .filter((z) => zone === undefined || z === zone)
        .map((z) => ({
          RegionId: r.id,
          ZoneId: z,
          Status: 'Available',
          StatusCategory: 'WithStock',
          AvailableResources: { AvailableResource: [{ Type: destination, SupportedResources: { SupportedResource: supported(z) } }] },
        })),
    },
  };
}

export const ecsRegionActions: ActionTable = {
  DescribeAvailableResource: { run: describeAvailableResource },
  DescribeRegions: {
    run: ({ params }) => {
      const en = params.nonEmpty('AcceptLanguage')?.toLowerCase().startsWith('en');
      return {
        Regions: {
          Region: regions().map((r) => ({ RegionId: r.id, LocalName: en ? r.en : r.zh, RegionEndpoint: regionEndpoint(r.id, 'ecs'), Status: 'available' })),
        },
      };
    },
  },
  DescribeZones: {
    run: (ctx) => {
      const r = regionOf(ctx);
      const lang = ctx.params.nonEmpty('AcceptLanguage');
      const verbose = ctx.params.bool('Verbose') !== false;
      return {
        Zones: {
          Zone: zoneIds(r).map((id) => ({
            ZoneId: id,
            LocalName: zoneName(r, id, lang),
            ZoneType: 'AvZone',
            AvailableResourceCreation: { ResourceTypes: ['VSwitch', 'IoOptimized', 'Instance', 'Disk', 'DedicatedHost'] },
            AvailableDiskCategories: { DiskCategories: SYSTEM_DISK_CATEGORIES },
            AvailableVolumeCategories: { VolumeCategories: [] },
            AvailableDedicatedHostTypes: { DedicatedHostType: [] },
            DedicatedHostGenerations: { DedicatedHostGeneration: [] },
            ...(verbose
              ? {
                  AvailableInstanceTypes: { InstanceTypes: LISTED_INSTANCE_TYPES },
                  AvailableResources: {
                    ResourcesInfo: [
                      {
                        IoOptimized: true,
                        InstanceTypes: { supportedInstanceType: LISTED_INSTANCE_TYPES },
                        InstanceTypeFamilies: { supportedInstanceTypeFamily: [...new Set(LISTED_INSTANCE_TYPES.map((t) => t.split('.').slice(0, 2).join('.')))] },
                        InstanceGenerations: { supportedInstanceGeneration: ['ecs-5', 'ecs-6'] },
                        SystemDiskCategories: { supportedSystemDiskCategory: SYSTEM_DISK_CATEGORIES },
                        DataDiskCategories: { supportedDataDiskCategory: DATA_DISK_CATEGORIES },
                        NetworkTypes: { supportedNetworkCategory: ['vpc'] },
                      },
                    ],
                  },
                }
              : {}),
          })),
        },
      };
    },
  },
};
