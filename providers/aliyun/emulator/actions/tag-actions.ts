/**
 * TagResources, ListTagResources and untagging, for ECS resources (instance, securitygroup, keypair) and for the VPC
 * API's (VPC, VSWITCH). Other resource types the APIs know are accepted and hold nothing here.
 */
import { errors } from '../api-errors.js';
import type { Cloud } from '../cloud.js';
import { byNextToken } from '../paging.js';
import type { TagRec } from '../store.js';
import { matchesTags, mergeTags, tagFilters, tagsToSet } from '../tags.js';
import type { Body } from '../wire.js';
import { regionOf, type ActionTable, type Ctx } from './action.js';

interface Tagged {
  id: string;
  tags: TagRec[];
  setTags(tags: TagRec[]): void;
}

export interface TagFamily {
  /** Resource types as answered, keyed by their lowercase spelling (requests may use any case). */
  types: Record<string, string>;
  /** The resources of one type in a region; types the emulator does not model give none. */
  resources(cloud: Cloud, type: string, regionId: string): Tagged[];
  /** ListTagResources page size: the default and the most MaxResults may ask for. */
  page: { defaultMax: number; max: number };
  untagAction: string;
}

const taggedOf = <T extends { tags: TagRec[] }>(rec: T, id: string): Tagged => ({ id, tags: rec.tags, setTags: (t) => (rec.tags = t) });

export const ECS_TAGS: TagFamily = {
  types: Object.fromEntries(
    ['instance', 'disk', 'snapshot', 'image', 'securitygroup', 'volume', 'eni', 'ddh', 'ddhcluster', 'keypair', 'launchtemplate',
      'reservedinstance', 'snapshotpolicy', 'elasticityassurance', 'capacityreservation', 'command', 'invocation', 'activation',
      'managedinstance'].map((t) => [t, t]),
  ),
  resources(cloud, type, regionId) {
    if (type === 'instance') return cloud.instances(regionId).map((i) => taggedOf(i, i.id));
    if (type === 'securitygroup') return Object.values(cloud.data.securityGroups).filter((g) => g.regionId === regionId).map((g) => taggedOf(g, g.id));
    if (type === 'keypair') return Object.values(cloud.data.keyPairs).filter((k) => k.regionId === regionId).map((k) => taggedOf(k, k.name));
    return [];
  },
  page: { defaultMax: 50, max: 50 },
  untagAction: 'UntagResources',
};

export const VPC_TAGS: TagFamily = {
  types: Object.fromEntries(
    ['VPC', 'VSWITCH', 'ROUTETABLE', 'EIP', 'VPNGATEWAY', 'NATGATEWAY', 'COMMONBANDWIDTHPACKAGE', 'PREFIXLIST', 'PUBLICIPADDRESSPOOL',
      'IPV4GATEWAY', 'IPV6GATEWAY', 'NETWORKACL', 'TRAFFICMIRRORFILTER', 'TRAFFICMIRRORSESSION', 'FLOWLOG', 'HAVIP',
      'DHCPOPTIONSSET', 'GATEWAYENDPOINT', 'IPV6ADDRESS'].map((t) => [t.toLowerCase(), t]),
  ),
  resources(cloud, type, regionId) {
    if (type === 'VPC') return Object.values(cloud.data.vpcs).filter((v) => v.regionId === regionId).map((v) => taggedOf(v, v.id));
    if (type === 'VSWITCH') return Object.values(cloud.data.vSwitches).filter((v) => v.regionId === regionId).map((v) => taggedOf(v, v.id));
    return [];
  },
  page: { defaultMax: 50, max: 50 },
  untagAction: 'UnTagResources',
};

function resourceType(ctx: Ctx, family: TagFamily): string {
  const given = ctx.params.required('ResourceType');
  const type = family.types[given.toLowerCase()];
  if (!type) throw errors.resourceType();
  return type;
}

/** The named resources, each of which must exist. */
function named(ctx: Ctx, family: TagFamily, type: string): Tagged[] {
  const ids = ctx.params.list('ResourceId');
  if (ids.length === 0) throw errors.missing('ResourceId.N');
  if (ids.length > 50) throw errors.invalid('ResourceId.N');
  const all = family.resources(ctx.cloud, type, regionOf(ctx).id);
  return ids.map((id) => {
    const r = all.find((x) => x.id === id);
    if (!r) throw errors.resourceNotFound();
    return r;
  });
}

export function tagActions(family: TagFamily): ActionTable {
  return {
    TagResources: {
      mutates: true,
      run: (ctx) => {
        const type = resourceType(ctx, family);
        const targets = named(ctx, family, type);
        const tags = tagsToSet(ctx.params, { required: true });
        const merged = targets.map((t) => mergeTags(t.tags, tags));
        targets.forEach((t, i) => t.setTags(merged[i]));
        return {};
      },
    },
    [family.untagAction]: {
      mutates: true,
      run: (ctx) => {
        const type = resourceType(ctx, family);
        const targets = named(ctx, family, type);
        const keys = ctx.params.list('TagKey');
        const all = ctx.params.bool('All') === true;
        if (keys.length === 0 && !all) throw errors.missing('TagKey.N');
        for (const t of targets) t.setTags(all ? [] : t.tags.filter((x) => !keys.includes(x.key)));
        return {};
      },
    },
    ListTagResources: {
      run: (ctx) => {
        const type = resourceType(ctx, family);
        const r = regionOf(ctx);
        const ids = ctx.params.list('ResourceId');
        const filters = tagFilters(ctx.params);
        const tagFilter = ctx.params.objects('TagFilter').map((f) => ({
          key: f.TagKey ?? '',
          values: Object.entries(f).filter(([k]) => k.startsWith('TagValues.')).map(([, v]) => v),
        }));
        if (ids.length === 0 && filters.length === 0 && tagFilter.length === 0) throw errors.missing('ResourceId.N');
        const found = family
          .resources(ctx.cloud, type, r.id)
          .filter(
            (x) =>
              (ids.length === 0 || ids.includes(x.id)) &&
              matchesTags(x.tags, filters) &&
              tagFilter.every((f) => x.tags.some((t) => t.key === f.key && (f.values.length === 0 || f.values.includes(t.value)))),
          )
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        const pairs = found.flatMap((x) => x.tags.map((t) => ({ ResourceId: x.id, ResourceType: type, TagKey: t.key, TagValue: t.value })));
        const page = byNextToken(pairs, ctx.params, family.page);
        return { TagResources: { TagResource: page.items }, ...page.fields } satisfies Body;
      },
    },
  };
}
