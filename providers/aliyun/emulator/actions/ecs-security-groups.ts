/**
 * ECS security groups and their inbound rules. Rules are recorded and answered; they do not filter the lab's
 * traffic (every host of the lab reaches every other).
 */
import { errors } from '../api-errors.js';
import { isIpOrCidr } from '../cidr.js';
import type { Cloud } from '../cloud.js';
import { eitherPaging } from '../paging.js';
import type { RuleRec, SecurityGroupRec } from '../store.js';
import { ecsTags, matchesTags, tagFilters, tagsToSet } from '../tags.js';
import { isoSeconds, newId, type Body } from '../wire.js';
import { isDryRun, regionOf, type ActionTable, type Ctx } from './action.js';

const MAX_RULES = 200;
const PROTOCOLS = ['TCP', 'UDP', 'ICMP', 'ICMPV6', 'GRE', 'ALL'];
const GROUP_NAME = /^[A-Za-z\u4e00-\u9fa5][A-Za-z0-9\u4e00-\u9fa5:_.-]{1,127}$/;

function group(ctx: Ctx, id: string | undefined): SecurityGroupRec {
  const r = regionOf(ctx);
  if (id === undefined) throw errors.missing('SecurityGroupId');
  const sg = ctx.cloud.data.securityGroups[id];
  if (!sg || sg.regionId !== r.id) throw errors.securityGroupNotFound();
  return sg;
}

/** `Permissions.N.*`, or the older flat fields as one permission when no Permissions are given. */
function permissions(ctx: Ctx): Record<string, string>[] {
  const list = ctx.params.objects('Permissions');
  if (list.length > 0) return list;
  const flat: Record<string, string> = {};
  for (const k of ['IpProtocol', 'PortRange', 'SourceCidrIp', 'Ipv6SourceCidrIp', 'SourceGroupId', 'SourcePortRange', 'DestCidrIp', 'Policy', 'Priority', 'NicType', 'Description']) {
    const v = ctx.params.str(k);
    if (v !== undefined) flat[k] = v;
  }
  return Object.keys(flat).length > 0 ? [flat] : [];
}

function checkPortRange(protocol: string, range: string): void {
  const m = /^(-?\d+)\/(-?\d+)$/.exec(range);
  if (!m) throw errors.portRange();
  const [a, b] = [Number(m[1]), Number(m[2])];
  if (protocol === 'TCP' || protocol === 'UDP') {
    if (a < 1 || b > 65535 || a > b) throw errors.portRange();
  } else if (a !== -1 || b !== -1) {
    throw errors.portRange();
  }
}

/** A rule as stored; `id` and `createdAt` are filled in when it is added. */
function rule(ctx: Ctx, sg: SecurityGroupRec, p: Record<string, string>): Omit<RuleRec, 'id' | 'createdAt'> {
  const protocol = (p.IpProtocol ?? '').toUpperCase();
  if (!PROTOCOLS.includes(protocol)) throw errors.ipProtocol();
  const portRange = p.PortRange ?? (protocol === 'TCP' || protocol === 'UDP' ? '' : '-1/-1');
  checkPortRange(protocol, portRange);
  const sourceCidrIp = p.SourceCidrIp ?? '';
  const ipv6SourceCidrIp = p.Ipv6SourceCidrIp ?? '';
  const sourceGroupId = p.SourceGroupId ?? '';
  if (sourceCidrIp !== '' && !isIpOrCidr(sourceCidrIp)) throw errors.sourceCidr();
  if (sourceCidrIp === '' && ipv6SourceCidrIp === '' && sourceGroupId === '') throw errors.ruleSourceMissing();
  if (sourceGroupId !== '') {
    const source = ctx.cloud.data.securityGroups[sourceGroupId];
    if (!source || source.regionId !== sg.regionId) throw errors.sourceGroupNotFound();
    if (source.vpcId !== sg.vpcId) throw errors.sourceGroupMismatch();
  }
  const policy = (p.Policy ?? 'accept').toLowerCase();
  if (policy !== 'accept' && policy !== 'drop') throw errors.policy();
  const priority = p.Priority === undefined || p.Priority === '' ? 1 : Number(p.Priority);
  if (!Number.isInteger(priority) || priority < 1 || priority > 100) throw errors.priority();
  const nicType = p.NicType ?? 'intranet';
  if (nicType !== 'intranet' && nicType !== 'internet') throw errors.nicType();
  const description = p.Description ?? '';
  if (description.length > 512 || /^https?:\/\//.test(description)) throw errors.description();
  return {
    ipProtocol: protocol,
    portRange,
    sourceCidrIp,
    ipv6SourceCidrIp,
    sourceGroupId,
    sourcePortRange: p.SourcePortRange ?? '',
    destCidrIp: p.DestCidrIp ?? '',
    policy,
    priority,
    nicType,
    description,
  };
}

/** Two rules are the same when they match the same traffic the same way; descriptions do not count. */
const sameRule = (a: Omit<RuleRec, 'id' | 'createdAt'>, b: Omit<RuleRec, 'id' | 'createdAt'>) =>
  a.ipProtocol === b.ipProtocol &&
  a.portRange === b.portRange &&
  a.sourceCidrIp === b.sourceCidrIp &&
  a.ipv6SourceCidrIp === b.ipv6SourceCidrIp &&
  a.sourceGroupId === b.sourceGroupId &&
  a.sourcePortRange === b.sourcePortRange &&
  a.destCidrIp === b.destCidrIp &&
  a.policy === b.policy &&
  a.priority === b.priority &&
  a.nicType === b.nicType;

function createSecurityGroup(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const vpcId = params.nonEmpty('VpcId') ?? '';
  if (vpcId !== '') {
    const vpc = cloud.data.vpcs[vpcId];
    if (!vpc || vpc.regionId !== r.id) throw errors.ecsVpcNotFound();
    if (cloud.networkStatus(vpc) !== 'Available') throw errors.ecsVpcStatus();
  }
  const name = params.nonEmpty('SecurityGroupName') ?? '';
  if (name !== '' && (!GROUP_NAME.test(name) || /^https?:\/\//.test(name))) throw errors.securityGroupName();
  const description = params.nonEmpty('Description') ?? '';
  if (description.length > 256 || /^https?:\/\//.test(description)) throw errors.description();
  const type = params.nonEmpty('SecurityGroupType') ?? 'normal';
  if (type !== 'normal' && type !== 'enterprise') throw errors.securityGroupType();
  const tags = tagsToSet(params);
  if (isDryRun(ctx)) throw errors.dryRun();
  const id = newId('sg');
  cloud.data.securityGroups[id] = {
    id,
    regionId: r.id,
    vpcId,
    name,
    description,
    type,
    resourceGroupId: params.nonEmpty('ResourceGroupId') ?? cloud.defaultResourceGroupId,
    createdAt: Date.now(),
    tags,
    rules: [],
  };
  return { SecurityGroupId: id };
}

function authorizeSecurityGroup(ctx: Ctx): Body {
  const sg = group(ctx, ctx.params.nonEmpty('SecurityGroupId'));
  const perms = permissions(ctx);
  if (perms.length === 0) throw errors.missing('Permissions.N.IpProtocol');
  const wanted = perms.map((p) => rule(ctx, sg, p));
  const fresh = wanted.filter((w, i) => !sg.rules.some((x) => sameRule(x, w)) && !wanted.slice(0, i).some((x) => sameRule(x, w)));
  if (sg.rules.length + fresh.length > MAX_RULES) throw errors.ruleLimit();
  const now = Date.now();
  for (const w of fresh) sg.rules.push({ ...w, id: newId('sgr'), createdAt: now });
  return {};
}

function revokeSecurityGroup(ctx: Ctx): Body {
  const sg = group(ctx, ctx.params.nonEmpty('SecurityGroupId'));
  const ruleIds = ctx.params.list('SecurityGroupRuleId');
  for (const id of ruleIds) if (!sg.rules.some((x) => x.id === id)) throw errors.ruleIdNotFound();
  const perms = permissions(ctx);
  if (perms.length === 0 && ruleIds.length === 0) throw errors.missing('Permissions.N.IpProtocol');
  const unwanted = perms.map((p) => rule(ctx, sg, p));
  // Revoking a rule the group does not have changes nothing and succeeds. [unverified]
  sg.rules = sg.rules.filter((x) => !ruleIds.includes(x.id) && !unwanted.some((u) => sameRule(x, u)));
  return {};
}

const ruleCount = (sg: SecurityGroupRec) => sg.rules.length;

function describeSecurityGroups(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const ids = params.jsonList('SecurityGroupIds', { max: 100 });
  const one = params.nonEmpty('SecurityGroupId');
  const vpcId = params.nonEmpty('VpcId');
  const name = params.nonEmpty('SecurityGroupName');
  const fuzzy = params.bool('FuzzyQuery') === true;
  const type = params.nonEmpty('SecurityGroupType');
  const rg = params.nonEmpty('ResourceGroupId');
  const filters = tagFilters(params);
  const withCount = params.bool('IsQueryEcsCount') === true;
  if (isDryRun(ctx)) throw errors.dryRun();
  const found = Object.values(cloud.data.securityGroups)
    .filter(
      (sg) =>
        sg.regionId === r.id &&
        (ids === undefined || ids.includes(sg.id)) &&
        (one === undefined || sg.id === one) &&
        (vpcId === undefined || sg.vpcId === vpcId) &&
        (name === undefined || (fuzzy ? sg.name.includes(name) : sg.name === name)) &&
        (type === undefined || sg.type === type) &&
        (rg === undefined || sg.resourceGroupId === rg) &&
        matchesTags(sg.tags, filters),
    )
    .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  const page = eitherPaging(found, params, { maxResults: 100, maxPageSize: 50 });
  const instances = withCount ? cloud.instances(r.id) : [];
  return {
    RegionId: r.id,
    SecurityGroups: {
      SecurityGroup: page.items.map((sg) => ({
        SecurityGroupId: sg.id,
        SecurityGroupName: sg.name,
        Description: sg.description,
        VpcId: sg.vpcId,
        SecurityGroupType: sg.type,
        CreationTime: isoSeconds(sg.createdAt),
        ResourceGroupId: sg.resourceGroupId,
        ServiceManaged: false,
        RuleCount: ruleCount(sg),
        GroupToGroupRuleCount: sg.rules.filter((x) => x.sourceGroupId !== '').length,
        ...(withCount
          ? { EcsCount: instances.filter((i) => i.securityGroupIds.includes(sg.id)).length, AvailableInstanceAmount: 2000 }
          : {}),
        ...ecsTags(sg.tags),
      })),
    },
    ...page.fields,
  };
}

function describeSecurityGroupAttribute(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const sg = group(ctx, params.nonEmpty('SecurityGroupId'));
  const direction = params.nonEmpty('Direction') ?? 'all';
  if (!['all', 'ingress', 'egress'].includes(direction)) throw errors.invalid('Direction');
  const nicType = params.nonEmpty('NicType');
  const rules = direction === 'egress' ? [] : sg.rules.filter((x) => nicType === undefined || x.nicType === nicType);
  const groupName = (id: string) => cloud.data.securityGroups[id]?.name ?? '';
  return {
    RegionId: sg.regionId,
    SecurityGroupId: sg.id,
    SecurityGroupName: sg.name,
    Description: sg.description,
    VpcId: sg.vpcId,
    InnerAccessPolicy: 'Accept',
    Permissions: {
      Permission: rules.map((x) => ({
        SecurityGroupRuleId: x.id,
        Direction: 'ingress',
        IpProtocol: x.ipProtocol,
        PortRange: x.portRange,
        SourceCidrIp: x.sourceCidrIp,
        Ipv6SourceCidrIp: x.ipv6SourceCidrIp,
        SourceGroupId: x.sourceGroupId,
        SourceGroupName: x.sourceGroupId ? groupName(x.sourceGroupId) : '',
        SourceGroupOwnerAccount: '',
        SourcePortRange: x.sourcePortRange,
        SourcePrefixListId: '',
        DestCidrIp: x.destCidrIp,
        Ipv6DestCidrIp: '',
        DestGroupId: '',
        DestGroupName: '',
        DestGroupOwnerAccount: '',
        DestPrefixListId: '',
        Policy: x.policy === 'accept' ? 'Accept' : 'Drop',
        Priority: String(x.priority),
        NicType: x.nicType,
        Description: x.description,
        PortRangeListId: '',
        CreateTime: isoSeconds(x.createdAt),
      })),
    },
    NextToken: '',
  };
}

function deleteSecurityGroup(ctx: Ctx): Body {
  const { cloud } = ctx;
  const sg = group(ctx, ctx.params.nonEmpty('SecurityGroupId'));
  // Instances being released still hold their groups until the release settles.
  if (cloud.instances(sg.regionId).some((i) => i.securityGroupIds.includes(sg.id))) throw errors.securityGroupInUse();
  if (Object.values(cloud.data.securityGroups).some((o) => o.id !== sg.id && o.rules.some((x) => x.sourceGroupId === sg.id))) {
    throw errors.securityGroupReferenced();
  }
  delete cloud.data.securityGroups[sg.id];
  return {};
}

/** Groups in a VPC, for the VPC API's dependency check. */
export const groupsIn = (cloud: Cloud, vpcId: string) => Object.values(cloud.data.securityGroups).filter((sg) => sg.vpcId === vpcId);

export const ecsSecurityGroupActions: ActionTable = {
  CreateSecurityGroup: { run: createSecurityGroup, mutates: true, idempotent: true },
  AuthorizeSecurityGroup: { run: authorizeSecurityGroup, mutates: true, idempotent: true },
  RevokeSecurityGroup: { run: revokeSecurityGroup, mutates: true, idempotent: true },
  DescribeSecurityGroups: { run: describeSecurityGroups },
  DescribeSecurityGroupAttribute: { run: describeSecurityGroupAttribute },
  DeleteSecurityGroup: { run: deleteSecurityGroup, mutates: true },
};
