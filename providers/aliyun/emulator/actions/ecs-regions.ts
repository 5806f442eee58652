/** ECS DescribeRegions and DescribeZones. */
import { DATA_DISK_CATEGORIES, LISTED_INSTANCE_TYPES, SYSTEM_DISK_CATEGORIES, regionEndpoint, regions, zoneIds, zoneName } from '../catalogue.js';
import { regionOf, type ActionTable } from './action.js';

export const ecsRegionActions: ActionTable = {
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
