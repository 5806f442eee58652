/** The two emulated products, each known by its API version, and their actions. */
import type { ActionTable } from './action.js';
import { ecsInstanceActions } from './ecs-instances.js';
import { ecsKeyPairActions } from './ecs-key-pairs.js';
import { ecsRegionActions } from './ecs-regions.js';
import { ecsSecurityGroupActions } from './ecs-security-groups.js';
import { ECS_TAGS, VPC_TAGS, tagActions } from './tag-actions.js';
import { vpcActions } from './vpc.js';

export interface Product {
  /** As the troubleshooting links name it. */
  name: 'Ecs' | 'Vpc';
  version: string;
  actions: ActionTable;
}

export const PRODUCTS: Product[] = [
  {
    name: 'Ecs',
    version: '2014-05-26',
    actions: { ...ecsRegionActions, ...ecsInstanceActions, ...ecsSecurityGroupActions, ...ecsKeyPairActions, ...tagActions(ECS_TAGS) },
  },
  { name: 'Vpc', version: '2016-04-28', actions: { ...vpcActions, ...tagActions(VPC_TAGS) } },
];

export const productByVersion = (version: string): Product | undefined => PRODUCTS.find((p) => p.version === version);
