/**
 * Provider ALI_CLOUD at run time: the cluster's VPC, vSwitch, security group and key pair, and its instances, made
 * and removed through the official SDK (api.ts). Every create is idempotent twice over: its ClientToken is written to
 * the state before the call (a retried or resumed create replays the same request, never a second one), and what
 * already exists with this cluster's tags is adopted before anything is made. Nothing without the cluster's ownership
 * tags is ever deleted.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import * as $Ecs from '@alicloud/ecs20140526';
import * as $Vpc from '@alicloud/vpc20160428';
import { CiError } from '../../engine/kernel/errors.js';
import { digestHex, sha256 } from '../../engine/kernel/digest.js';
import type { Json, ProviderData } from '../../engine/kernel/types.js';
import type {
  Discovered, Held, HostRef, InfraRequest, MadeHost, MakeRequest, ProviderContext, ProviderRuntime, Released,
} from '../contract.js';
import { ensureEd25519Key } from '../ssh/keys.js';
import type { SshTarget } from '../ssh/target.js';
import { AliyunApi, classOf } from './api.js';
import { apiSettings, cloudSettings, type CloudSettings } from './settings.js';
import { ownedBy, ownerTags, readTags, TAGS, type Tag } from './tags.js';

/** What each host's `make.spec` holds (see provider.ts). */
export interface InstanceSpec {
  group: string;
  role: string;
  instanceType: string;
  systemDisk: number;
  dataDisks: number[];
}

/** Security-group rules: `22/22` style port ranges over TCP or UDP. */
export interface Rule {
  protocol: 'TCP' | 'UDP';
  ports: string;
  source: string;
}

const str = (v: Json | undefined) => (typeof v === 'string' ? v : undefined);
const newToken = () => `ci-${randomBytes(12).toString('hex')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Pace {
  firstMs: number;
  maxMs: number;
}

/** How often to look again: the API (one call per poll) and a TCP port (no call at all). */
const PACE = {
  api: { firstMs: 300, maxMs: 2000 },
  port: { firstMs: 200, maxMs: 500 },
} satisfies Record<string, Pace>;

interface Instance {
  instanceId: string;
  hostName: string;
  status: string;
  ip?: string;
  tags: Map<string, string>;
  zoneId?: string;
  instanceType?: string;
}

export class AliyunRuntime implements ProviderRuntime {
  private apiClient?: AliyunApi;
  private readonly settings: CloudSettings;

  constructor(private readonly ctx: ProviderContext) {
    this.settings = cloudSettings(ctx.block);
  }

  /** API calls made so far (for the benchmark). */
  get apiCalls(): number {
    return this.apiClient?.calls ?? 0;
  }

  private get api(): AliyunApi {
    this.apiClient ??= new AliyunApi(apiSettings(this.ctx.block, this.ctx.env), {
      retrying: (what, action, c, delayMs) =>
        this.ctx.report?.({ level: 'info', message: `${what}: ${action} answered ${c.code}; trying again in ${(delayMs / 1000).toFixed(1)}s` }),
    });
    return this.apiClient;
  }

  private get region(): string {
    return this.settings.regionId;
  }

  private tags(extra: Tag[] = []): Tag[] {
    return [...ownerTags(this.ctx.cluster, this.ctx.lineage), ...extra];
  }

  private owns(tags: Map<string, string>): boolean {
    return ownedBy(tags, this.ctx.cluster, this.ctx.lineage);
  }

  /** The cluster's SSH key: made on first use, kept with the cluster's state, imported as the instances' key pair. */
  private get keyPath(): string {
    return join(this.ctx.home, 'clusters', this.ctx.cluster, 'aliyun', 'id_ed25519');
  }

  /** A ClientToken for the request: the one an interrupted attempt wrote, or a new one written before it is used. */
  private async token(pending: ProviderData | undefined, checkpoint: (d: ProviderData) => Promise<void>): Promise<string> {
    const earlier = str(pending?.clientToken);
    if (earlier) return earlier;
    const token = newToken();
    await checkpoint({ clientToken: token });
    return token;
  }

  // ---- infrastructure -------------------------------------------------------------------------------------------

  async applyInfra(req: InfraRequest, checkpoint: (data: ProviderData) => Promise<void>): Promise<ProviderData | undefined> {
    if (req.op === 'delete') {
      await this.deleteInfra(req.key, req.current ?? {});
      return undefined;
    }
    switch (req.key) {
      case 'vpc':
        return this.ensureVpc(req, checkpoint);
      case 'vswitch':
        return this.ensureVSwitch(req, checkpoint);
      case 'security-group':
        return this.ensureSecurityGroup(req, checkpoint);
      case 'key-pair':
        return this.ensureKeyPair();
    }
    throw new CiError('ALIYUN_UNKNOWN_RESOURCE', `provider ALI_CLOUD has no infrastructure called ${req.key}`);
  }

  private async vpcs(vpcId?: string) {
    const body = (
      await this.api.call('the VPCs of the cluster', 'DescribeVpcs', (rt) =>
        this.api.vpc.describeVpcsWithOptions(
          new $Vpc.DescribeVpcsRequest({
            regionId: this.region,
            pageSize: 50,
            ...(vpcId ? { vpcId } : { tag: this.tags().map((t) => new $Vpc.DescribeVpcsRequestTag(t)) }),
          }),
          rt,
        ),
      )
    ).body;
    return (body?.vpcs?.vpc ?? []).map((v) => ({ vpcId: v.vpcId!, status: v.status ?? '', cidr: v.cidrBlock ?? '', tags: readTags(v.tags?.tag) }));
  }

  private async ensureVpc(req: InfraRequest, checkpoint: (d: ProviderData) => Promise<void>): Promise<ProviderData> {
    const cidr = String(req.spec.cidr);
    const token = await this.token(req.pending, checkpoint);
    let vpcId = (await this.vpcs()).find((v) => this.owns(v.tags) && v.cidr === cidr)?.vpcId;
    if (!vpcId) {
      const res = await this.api.call(`VPC ${cidr}`, 'CreateVpc', (rt) =>
        this.api.vpc.createVpcWithOptions(
          new $Vpc.CreateVpcRequest({
            regionId: this.region,
            cidrBlock: cidr,
            vpcName: `cloudimage-${this.ctx.cluster}`,
            description: `cloudimage cluster ${this.ctx.cluster}`,
            tag: this.tags().map((t) => new $Vpc.CreateVpcRequestTag(t)),
            clientToken: token,
          }),
          rt,
        ),
      );
      vpcId = res.body?.vpcId;
      if (!vpcId) throw new CiError('ALIYUN_PROTOCOL', `CreateVpc for VPC ${cidr} answered no VpcId`, { source: 'external' });
    }
    await this.waitFor(`VPC ${vpcId}`, async () => (await this.vpcs(vpcId)).find((v) => v.vpcId === vpcId)?.status === 'Available');
    return { vpcId, cidr };
  }

  private async vswitches(vpcId: string, vSwitchId?: string) {
    const body = (
      await this.api.call('the vSwitches of the cluster', 'DescribeVSwitches', (rt) =>
        this.api.vpc.describeVSwitchesWithOptions(new $Vpc.DescribeVSwitchesRequest({ regionId: this.region, vpcId, pageSize: 50, ...(vSwitchId ? { vSwitchId } : {}) }), rt),
      )
    ).body;
    return (body?.vSwitches?.vSwitch ?? []).map((v) => ({ vSwitchId: v.vSwitchId!, status: v.status ?? '', cidr: v.cidrBlock ?? '', zoneId: v.zoneId ?? '', tags: readTags(v.tags?.tag) }));
  }

  private async ensureVSwitch(req: InfraRequest, checkpoint: (d: ProviderData) => Promise<void>): Promise<ProviderData> {
    const vpcId = str(req.infra.vpc?.vpcId);
    if (!vpcId) throw new CiError('ALIYUN_ORDER', 'the vSwitch needs the VPC, which is not made yet', { source: 'internal' });
    const cidr = String(req.spec.cidr);
    const zoneId = String(req.spec.zoneId);
    const token = await this.token(req.pending, checkpoint);
    let vSwitchId = (await this.vswitches(vpcId)).find((v) => this.owns(v.tags) && v.cidr === cidr && v.zoneId === zoneId)?.vSwitchId;
    if (!vSwitchId) {
      const res = await this.api.call(`vSwitch ${cidr}`, 'CreateVSwitch', (rt) =>
        this.api.vpc.createVSwitchWithOptions(
          new $Vpc.CreateVSwitchRequest({
            regionId: this.region,
            vpcId,
            zoneId,
            cidrBlock: cidr,
            vSwitchName: `cloudimage-${this.ctx.cluster}`,
            tag: this.tags().map((t) => new $Vpc.CreateVSwitchRequestTag(t)),
            clientToken: token,
          }),
          rt,
        ),
      );
      vSwitchId = res.body?.vSwitchId;
      if (!vSwitchId) throw new CiError('ALIYUN_PROTOCOL', `CreateVSwitch for ${cidr} answered no VSwitchId`, { source: 'external' });
    }
    await this.waitFor(`vSwitch ${vSwitchId}`, async () => (await this.vswitches(vpcId, vSwitchId)).find((v) => v.vSwitchId === vSwitchId)?.status === 'Available');
    return { vSwitchId, vpcId, cidr, zoneId };
  }

  private async securityGroups(vpcId: string, securityGroupId?: string) {
    const body = (
      await this.api.call('the security groups of the cluster', 'DescribeSecurityGroups', (rt) =>
        this.api.ecs.describeSecurityGroupsWithOptions(
          new $Ecs.DescribeSecurityGroupsRequest({
            regionId: this.region,
            vpcId,
            ...(securityGroupId ? { securityGroupIds: JSON.stringify([securityGroupId]) } : { tag: this.tags().map((t) => new $Ecs.DescribeSecurityGroupsRequestTag(t)) }),
            maxResults: 100,
          }),
          rt,
        ),
      )
    ).body;
    return (body?.securityGroups?.securityGroup ?? []).map((g) => ({ securityGroupId: g.securityGroupId!, tags: readTags(g.tags?.tag) }));
  }

  private async rulesOf(securityGroupId: string): Promise<Rule[]> {
    const body = (
      await this.api.call(`security group ${securityGroupId}`, 'DescribeSecurityGroupAttribute', (rt) =>
        this.api.ecs.describeSecurityGroupAttributeWithOptions(new $Ecs.DescribeSecurityGroupAttributeRequest({ regionId: this.region, securityGroupId, direction: 'ingress' }), rt),
      )
    ).body;
    return (body?.permissions?.permission ?? [])
      .filter((p) => (p.direction ?? 'ingress') === 'ingress' && (p.policy ?? 'Accept').toLowerCase() === 'accept')
      .map((p) => ({ protocol: (p.ipProtocol ?? 'TCP').toUpperCase() as Rule['protocol'], ports: p.portRange ?? '', source: p.sourceCidrIp ?? '' }));
  }

  private async ensureSecurityGroup(req: InfraRequest, checkpoint: (d: ProviderData) => Promise<void>): Promise<ProviderData> {
    const vpcId = str(req.infra.vpc?.vpcId);
    if (!vpcId) throw new CiError('ALIYUN_ORDER', 'the security group needs the VPC, which is not made yet', { source: 'internal' });
    let securityGroupId = str(req.current?.securityGroupId);
    if (!securityGroupId) {
      const token = await this.token(req.pending, checkpoint);
      securityGroupId = (await this.securityGroups(vpcId)).find((g) => this.owns(g.tags))?.securityGroupId;
      if (!securityGroupId) {
        const res = await this.api.call('the security group of the cluster', 'CreateSecurityGroup', (rt) =>
          this.api.ecs.createSecurityGroupWithOptions(
            new $Ecs.CreateSecurityGroupRequest({
              regionId: this.region,
              vpcId,
              securityGroupName: `cloudimage-${this.ctx.cluster}`,
              description: `cloudimage cluster ${this.ctx.cluster}`,
              tag: this.tags().map((t) => new $Ecs.CreateSecurityGroupRequestTag(t)),
              clientToken: token,
            }),
            rt,
          ),
        );
        securityGroupId = res.body?.securityGroupId;
        if (!securityGroupId) throw new CiError('ALIYUN_PROTOCOL', 'CreateSecurityGroup answered no SecurityGroupId', { source: 'external' });
      }
    }
    const wanted = (req.spec.rules as unknown as Rule[]) ?? [];
    const have = await this.rulesOf(securityGroupId);
    const same = (a: Rule, b: Rule) => a.protocol === b.protocol && a.ports === b.ports && a.source === b.source;
    const add = wanted.filter((w) => !have.some((h) => same(h, w)));
    const drop = have.filter((h) => !wanted.some((w) => same(h, w)));
    const sg = securityGroupId;
    if (add.length) {
      await this.api.call(`security group ${sg}`, 'AuthorizeSecurityGroup', (rt) =>
        this.api.ecs.authorizeSecurityGroupWithOptions(
          new $Ecs.AuthorizeSecurityGroupRequest({
            regionId: this.region,
            securityGroupId: sg,
            permissions: add.map(
              (r) => new $Ecs.AuthorizeSecurityGroupRequestPermissions({ ipProtocol: r.protocol, portRange: r.ports, sourceCidrIp: r.source, policy: 'accept', description: 'cloudimage' }),
            ),
          }),
          rt,
        ),
      );
    }
    if (drop.length) {
      await this.api.call(`security group ${sg}`, 'RevokeSecurityGroup', (rt) =>
        this.api.ecs.revokeSecurityGroupWithOptions(
          new $Ecs.RevokeSecurityGroupRequest({
            regionId: this.region,
            securityGroupId: sg,
            permissions: drop.map((r) => new $Ecs.RevokeSecurityGroupRequestPermissions({ ipProtocol: r.protocol, portRange: r.ports, sourceCidrIp: r.source, policy: 'accept' })),
          }),
          rt,
        ),
      );
    }
    return { securityGroupId: sg, vpcId };
  }

  private async ensureKeyPair(): Promise<ProviderData> {
    await fs.mkdir(join(this.keyPath, '..'), { recursive: true, mode: 0o700 });
    const publicKey = await ensureEd25519Key(this.keyPath, `cloudimage-${this.ctx.cluster}`);
    // Named after the key itself: a key pair of that name holds exactly this key, so it can be adopted as it is.
    const keyPairName = `cloudimage-${this.ctx.cluster}-${digestHex(sha256(publicKey)).slice(0, 12)}`;
    const existing = (
      await this.api.call(`key pair ${keyPairName}`, 'DescribeKeyPairs', (rt) =>
        this.api.ecs.describeKeyPairsWithOptions(new $Ecs.DescribeKeyPairsRequest({ regionId: this.region, keyPairName, pageSize: 50 }), rt),
      )
    ).body?.keyPairs?.keyPair?.find((k) => k.keyPairName === keyPairName);
    if (!existing) {
      await this.api.call(`key pair ${keyPairName}`, 'ImportKeyPair', (rt) =>
        this.api.ecs.importKeyPairWithOptions(
          new $Ecs.ImportKeyPairRequest({ regionId: this.region, keyPairName, publicKeyBody: publicKey, tag: this.tags().map((t) => new $Ecs.ImportKeyPairRequestTag(t)) }),
          rt,
        ),
      );
    } else if (!this.owns(readTags(existing.tags?.tag))) {
      throw new CiError('ALIYUN_NOT_OWNED', `key pair ${keyPairName} exists but does not carry this cluster's tags; refusing to use it`, {
        hint: 'delete that key pair, or give the cluster another name',
      });
    }
    return { keyPairName };
  }

  private async deleteInfra(key: string, data: ProviderData): Promise<void> {
    const deadlineMs = 20 * 60_000;
    if (key === 'key-pair') {
      const name = str(data.keyPairName);
      if (!name) return;
      const found = (
        await this.api.call(`key pair ${name}`, 'DescribeKeyPairs', (rt) =>
          this.api.ecs.describeKeyPairsWithOptions(new $Ecs.DescribeKeyPairsRequest({ regionId: this.region, keyPairName: name, pageSize: 50 }), rt),
        )
      ).body?.keyPairs?.keyPair?.find((k) => k.keyPairName === name);
      if (!found || !this.owns(readTags(found.tags?.tag))) return this.skipUnowned(found ? `key pair ${name}` : undefined);
      await this.api.call(`key pair ${name}`, 'DeleteKeyPairs', (rt) =>
        this.api.ecs.deleteKeyPairsWithOptions(new $Ecs.DeleteKeyPairsRequest({ regionId: this.region, keyPairNames: JSON.stringify([name]) }), rt),
      );
      return;
    }
    if (key === 'security-group') {
      const id = str(data.securityGroupId);
      const vpcId = str(data.vpcId);
      if (!id || !vpcId) return;
      const found = (await this.securityGroups(vpcId, id).catch((e) => (classOf(e) === 'not-found' ? [] : Promise.reject(e)))).find((g) => g.securityGroupId === id);
      if (!found || !this.owns(found.tags)) return this.skipUnowned(found ? `security group ${id}` : undefined);
      await this.ignoreNotFound(() =>
        this.api.call(`security group ${id}`, 'DeleteSecurityGroup', (rt) => this.api.ecs.deleteSecurityGroupWithOptions(new $Ecs.DeleteSecurityGroupRequest({ regionId: this.region, securityGroupId: id }), rt), { deadlineMs, waitDependencies: true }),
      );
      return;
    }
    if (key === 'vswitch') {
      const id = str(data.vSwitchId);
      const vpcId = str(data.vpcId);
      if (!id || !vpcId) return;
      const found = (await this.vswitches(vpcId, id).catch((e) => (classOf(e) === 'not-found' ? [] : Promise.reject(e)))).find((v) => v.vSwitchId === id);
      if (!found || !this.owns(found.tags)) return this.skipUnowned(found ? `vSwitch ${id}` : undefined);
      await this.ignoreNotFound(() =>
        this.api.call(`vSwitch ${id}`, 'DeleteVSwitch', (rt) => this.api.vpc.deleteVSwitchWithOptions(new $Vpc.DeleteVSwitchRequest({ regionId: this.region, vSwitchId: id }), rt), { deadlineMs, waitDependencies: true }),
      );
      await this.waitFor(`vSwitch ${id} to go`, async () => !(await this.vswitches(vpcId, id).catch(() => [])).some((v) => v.vSwitchId === id), deadlineMs);
      return;
    }
    if (key === 'vpc') {
      const id = str(data.vpcId);
      if (!id) return;
      const found = (await this.vpcs(id).catch((e) => (classOf(e) === 'not-found' ? [] : Promise.reject(e)))).find((v) => v.vpcId === id);
      if (!found || !this.owns(found.tags)) return this.skipUnowned(found ? `VPC ${id}` : undefined);
      await this.ignoreNotFound(() =>
        this.api.call(`VPC ${id}`, 'DeleteVpc', (rt) => this.api.vpc.deleteVpcWithOptions(new $Vpc.DeleteVpcRequest({ regionId: this.region, vpcId: id }), rt), { deadlineMs, waitDependencies: true }),
      );
      await this.waitFor(`VPC ${id} to go`, async () => !(await this.vpcs(id).catch(() => [])).some((v) => v.vpcId === id), deadlineMs);
      return;
    }
  }

  private skipUnowned(what: string | undefined): void {
    // Gone already: nothing to do. Present without the cluster's tags: never deleted, but said.
    if (what) this.ctx.report?.({ level: 'warning', message: `${what} does not carry the tags of cluster ${this.ctx.cluster}; left as it is` });
  }

  private async ignoreNotFound(fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (classOf(err) !== 'not-found') throw err;
    }
  }

  /**
   * Polls until `done` says so, within the deadline. Intervals grow from `pace.firstMs` to `pace.maxMs`: short for
   * what settles in a second or two (networks, a port), capped low enough that a machine found ready is not left
   * waiting for the next poll, yet each poll of the API is one call for a whole batch.
   */
  private async waitFor(what: string, done: () => Promise<boolean>, deadlineMs = 10 * 60_000, pace: Pace = PACE.api): Promise<void> {
    const started = Date.now();
    for (let delay = pace.firstMs; ; delay = Math.min(pace.maxMs, delay * 1.5)) {
      if (await done()) return;
      if (Date.now() - started > deadlineMs) {
        throw new CiError('ALIYUN_TIMEOUT', `waited ${Math.round(deadlineMs / 1000)}s for ${what}`, {
          source: 'external',
          hint: 'run the command again; what was made is kept and nothing is made twice',
        });
      }
      if (this.ctx.signal?.aborted) throw new CiError('ABORTED', `stopped waiting for ${what}`);
      await sleep(delay);
    }
  }

  // ---- instances ------------------------------------------------------------------------------------------------

  /** The cluster's instances, by its tags (all pages), or the given ones by id. */
  private async instances(ids?: string[]): Promise<Instance[]> {
    const out: Instance[] = [];
    const batches = ids ? chunk(ids, 100) : [undefined];
    for (const batch of batches) {
      let nextToken: string | undefined;
      do {
        const body = (
          await this.api.call('the instances of the cluster', 'DescribeInstances', (rt) =>
            this.api.ecs.describeInstancesWithOptions(
              new $Ecs.DescribeInstancesRequest({
                regionId: this.region,
                maxResults: 100,
                ...(nextToken ? { nextToken } : {}),
                ...(batch ? { instanceIds: JSON.stringify(batch) } : { tag: this.tags().slice(0, 2).map((t) => new $Ecs.DescribeInstancesRequestTag(t)) }),
              }),
              rt,
            ),
          )
        ).body;
        for (const i of body?.instances?.instance ?? []) {
          const ip = i.publicIpAddress?.ipAddress?.[0] ?? i.eipAddress?.ipAddress ?? i.vpcAttributes?.privateIpAddress?.ipAddress?.[0];
          out.push({
            instanceId: i.instanceId!,
            hostName: i.hostName ?? '',
            status: i.status ?? '',
            ...(ip ? { ip } : {}),
            tags: readTags(i.tags?.tag),
            ...(i.zoneId ? { zoneId: i.zoneId } : {}),
            ...(i.instanceType ? { instanceType: i.instanceType } : {}),
          });
        }
        nextToken = body?.nextToken || undefined;
      } while (nextToken);
    }
    return out;
  }

  async makeHosts(request: MakeRequest, checkpoint: (data: ProviderData) => Promise<void>): Promise<Record<string, MadeHost>> {
    const spec = request.hosts[0].spec as unknown as InstanceSpec;
    const keys = request.hosts.map((h) => h.key);
    const what = `${keys.length === 1 ? 'instance' : 'instances'} of group ${spec.group} (${keys.join(', ')})`;
    let token = await this.token(request.pending, checkpoint);
    // Instances of this cluster already named for these hosts (a create whose answer was lost, a rebuilt state).
    const adopted = (await this.instances()).filter((i) => this.owns(i.tags) && keys.includes(i.hostName) && !/^(Stopping|Stopped|Deleted)$/.test(i.status));
    const missing = keys.filter((k) => !adopted.some((i) => i.hostName === k));
    const ids = adopted.map((i) => i.instanceId);
    if (missing.length > 0) {
      const run = (clientToken: string) =>
        this.api.call(what, 'RunInstances', (rt) => this.api.ecs.runInstancesWithOptions(this.runRequest(request, spec, missing, clientToken), rt), { deadlineMs: 10 * 60_000 });
      let res;
      try {
        res = await run(token);
      } catch (err) {
        // The token belongs to a request with other parameters (the group changed between attempts): a new request.
        if (classOf(err) !== 'idempotency') throw err;
        token = newToken();
        await checkpoint({ clientToken: token });
        res = await run(token);
      }
      const created = res.body?.instanceIdSets?.instanceIdSet ?? [];
      if (created.length !== missing.length) {
        throw new CiError('ALIYUN_PROTOCOL', `${what}: RunInstances made ${created.length} instances, not ${missing.length}`, { source: 'external' });
      }
      ids.push(...created);
    }
    const running = await this.waitRunning(what, ids);
    const made: Record<string, MadeHost> = {};
    for (const i of running) {
      if (!keys.includes(i.hostName)) continue;
      made[i.hostName] = { ip: i.ip!, hostname: i.hostName, machine: { instanceId: i.instanceId, zoneId: i.zoneId ?? this.settings.zoneId, instanceType: i.instanceType ?? spec.instanceType } };
    }
    const unnamed = keys.filter((k) => !made[k]);
    if (unnamed.length) {
      throw new CiError('ALIYUN_PROTOCOL', `${what}: no running instance answers to the host name ${unnamed.join(', ')}`, { source: 'external' });
    }
    await Promise.all(Object.entries(made).map(([key, m]) => this.waitSsh(key, m.ip)));
    return made;
  }

  private runRequest(request: MakeRequest, spec: InstanceSpec, hostNames: string[], clientToken: string): $Ecs.RunInstancesRequest {
    const s = this.settings;
    const vSwitchId = str(request.infra.vswitch?.vSwitchId);
    const securityGroupId = str(request.infra['security-group']?.securityGroupId);
    const keyPairName = str(request.infra['key-pair']?.keyPairName);
    if (!vSwitchId || !securityGroupId) throw new CiError('ALIYUN_ORDER', 'instances need the vSwitch and the security group, which are not made yet', { source: 'internal' });
    const password = this.ctx.hosts.find((h) => hostNames.includes(h.key))?.ssh.password;
    return new $Ecs.RunInstancesRequest({
      regionId: s.regionId,
      zoneId: s.zoneId,
      imageId: s.imageId,
      instanceType: spec.instanceType,
      amount: hostNames.length,
      minAmount: hostNames.length,
      hostNames,
      vSwitchId,
      securityGroupId,
      ...(keyPairName ? { keyPairName } : {}),
      ...(password ? { password } : {}),
      instanceChargeType: 'PostPaid',
      internetChargeType: 'PayByTraffic',
      internetMaxBandwidthOut: s.internetBandwidth,
      systemDisk: new $Ecs.RunInstancesRequestSystemDisk({ size: String(spec.systemDisk), category: s.diskCategory }),
      dataDisk: spec.dataDisks.map((size) => new $Ecs.RunInstancesRequestDataDisk({ size, category: s.diskCategory, deleteWithInstance: true })),
      tag: this.tags([
        { key: TAGS.role, value: spec.role },
        { key: TAGS.group, value: spec.group },
      ]).map((t) => new $Ecs.RunInstancesRequestTag(t)),
      clientToken,
    });
  }

  /** Polls the instances in batches until every one is Running with an address; just-made ones may not show at first. */
  private async waitRunning(what: string, ids: string[]): Promise<Instance[]> {
    let last: Instance[] = [];
    let reported = '';
    await this.waitFor(`${what} to run`, async () => {
      last = await this.instances(ids);
      const ready = last.filter((i) => i.status === 'Running' && i.ip);
      const state = `${ready.length} of ${ids.length} running`;
      if (state !== reported) {
        reported = state;
        this.ctx.report?.({ level: 'info', message: `${what}: ${state}` });
      }
      return ready.length === ids.length;
    });
    return last;
  }

  /** Running says the machine runs, not that sshd listens yet: wait until the port answers. */
  private async waitSsh(key: string, ip: string, port = 22): Promise<void> {
    await this.waitFor(`SSH on ${key} (${ip})`, () =>
      new Promise<boolean>((resolve) => {
        // A machine still booting drops the SYN rather than refusing it: a short timeout, asked again soon.
        const s = net.connect({ host: ip, port, timeout: 1000 });
        const done = (ok: boolean) => {
          s.destroy();
          resolve(ok);
        };
        s.once('connect', () => done(true));
        s.once('timeout', () => done(false));
        s.once('error', () => done(false));
      }),
      10 * 60_000,
      PACE.port,
    );
  }

  async removeHost(host: { key: string; machine?: ProviderData }): Promise<void> {
    let id = str(host.machine?.instanceId);
    const found = id ? (await this.instances([id]))[0] : (await this.instances()).find((i) => i.hostName === host.key && this.owns(i.tags));
    if (!found) return;
    id = found.instanceId;
    if (!this.owns(found.tags)) {
      throw new CiError('ALIYUN_NOT_OWNED', `instance ${id} (${host.key}) does not carry the tags of cluster ${this.ctx.cluster}; refusing to delete it`, {
        hint: 'the state names an instance that is not this cluster\'s: check the state with `ci state show`',
      });
    }
    const instanceId = id;
    await this.ignoreNotFound(() =>
      this.api.call(`instance ${instanceId} (${host.key})`, 'DeleteInstances', (rt) =>
        this.api.ecs.deleteInstancesWithOptions(new $Ecs.DeleteInstancesRequest({ regionId: this.region, instanceId: [instanceId], force: true }), rt),
        { deadlineMs: 10 * 60_000 },
      ),
    );
    await this.waitFor(`instance ${instanceId} (${host.key}) to go`, async () => (await this.instances([instanceId])).length === 0, 20 * 60_000);
  }

  async target(host: HostRef): Promise<SshTarget> {
    const t: SshTarget = { host: host.ip, port: host.ssh.port, user: host.ssh.user };
    const password = this.ctx.hosts.find((h) => h.key === host.key)?.ssh.password ?? this.ctx.hosts[0]?.ssh.password;
    try {
      t.privateKey = await fs.readFile(this.keyPath, 'utf8');
    } catch {
      // No key here: the instances were made with a password, or the key went with another machine's home.
    }
    if (password) t.password = password;
    return t;
  }

  async held(): Promise<Held | undefined> {
    const mine = (await this.instances()).filter((i) => ownedBy(i.tags, this.ctx.cluster, undefined));
    if (mine.length === 0) return undefined;
    return {
      where: `Aliyun region ${this.region} (instances tagged ${TAGS.cluster}=${this.ctx.cluster})`,
      hosts: mine.map((i) => i.hostName || i.instanceId),
      lineage: mine.map((i) => i.tags.get(TAGS.lineage)).find(Boolean),
      hint: 'rebuild the state from the resources\' tags with `ci state import --from-tags -f Clusterfile`, or put the state back',
    };
  }

  async discover(): Promise<Discovered> {
    const instances = (await this.instances()).filter((i) => ownedBy(i.tags, this.ctx.cluster, undefined) && i.status !== 'Stopping');
    const lineage = instances.map((i) => i.tags.get(TAGS.lineage)).find(Boolean);
    const infra: Discovered['infra'] = {};
    const vpc = (await this.vpcs()).find((v) => ownedBy(v.tags, this.ctx.cluster, lineage));
    if (vpc) {
      infra.vpc = { data: { vpcId: vpc.vpcId, cidr: vpc.cidr }, needs: [], summary: `VPC ${vpc.cidr}` };
      const vsw = (await this.vswitches(vpc.vpcId)).find((v) => ownedBy(v.tags, this.ctx.cluster, lineage));
      if (vsw) infra.vswitch = { data: { vSwitchId: vsw.vSwitchId, vpcId: vpc.vpcId, cidr: vsw.cidr, zoneId: vsw.zoneId }, needs: ['vpc'], summary: `vSwitch ${vsw.cidr} in ${vsw.zoneId}` };
      const sg = (await this.securityGroups(vpc.vpcId)).find((g) => ownedBy(g.tags, this.ctx.cluster, lineage));
      if (sg) infra['security-group'] = { data: { securityGroupId: sg.securityGroupId, vpcId: vpc.vpcId }, needs: ['vpc'], summary: 'security group' };
    }
    try {
      const publicKey = (await fs.readFile(`${this.keyPath}.pub`, 'utf8')).trim();
      const keyPairName = `cloudimage-${this.ctx.cluster}-${digestHex(sha256(publicKey)).slice(0, 12)}`;
      infra['key-pair'] = { data: { keyPairName }, needs: [], summary: 'key pair for SSH' };
    } catch {
      // Without the local key there is no way to log in with the key pair; the instances need a password then.
    }
    return {
      ...(lineage ? { lineage } : {}),
      hosts: instances
        .filter((i) => i.ip)
        .map((i) => ({
          key: i.hostName,
          ip: i.ip!,
          hostname: i.hostName,
          roles: i.tags.get(TAGS.role) ? [i.tags.get(TAGS.role)!] : [],
          machine: { instanceId: i.instanceId, zoneId: i.zoneId ?? this.settings.zoneId, instanceType: i.instanceType ?? '' },
        })),
      infra,
    };
  }

  async release(): Promise<Released | undefined> {
    const dir = join(this.keyPath, '..');
    try {
      await fs.access(dir);
    } catch {
      return undefined;
    }
    await fs.rm(dir, { recursive: true, force: true });
    return { hosts: [], resources: [`SSH key directory ${dir}`] };
  }
}

function chunk<T>(list: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += n) out.push(list.slice(i, i + n));
  return out;
}
