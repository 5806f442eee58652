/**
 * Provider ALI_CLOUD's part of the Clusterfile: the `spec.cloud` block (region, zone, image, network, default
 * instance spec, API endpoint) and the host-group fields (`count`, `instanceType`, `systemDisk`, `dataDisks`), with
 * their defaults applied in one place. Endpoint and protocol can also come from the environment, for an emulator.
 */
import { z } from 'zod';

const cidr = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'must be an IPv4 CIDR such as 172.16.0.0/16');
const diskGiB = z.number().int().min(20).max(32768);
const dataDiskGiB = z.number().int().min(20).max(32768);

export const CloudBlock = z
  .strictObject({
    regionId: z.string().min(1).describe('region, e.g. cn-hangzhou'),
    zoneId: z.string().min(1).describe('zone of the vSwitch and the instances, e.g. cn-hangzhou-h'),
    imageId: z.string().min(1).describe('OS image of the instances, e.g. debian_12_x64'),
    instanceType: z.string().min(1).optional().describe('default instance type, e.g. ecs.g7.xlarge'),
    vpcCidr: cidr.optional().describe('address range of the VPC (default 172.16.0.0/16)'),
    vswitchCidr: cidr.optional().describe("address range of the vSwitch (default: the VPC's first /24)"),
    systemDisk: diskGiB.optional().describe('system disk size in GiB (default 40)'),
    dataDisks: z.array(dataDiskGiB).optional().describe('default data disks, sizes in GiB'),
    diskCategory: z.string().optional().describe('disk category (default cloud_essd)'),
    internetBandwidth: z.number().int().min(0).max(200).optional().describe('public bandwidth in Mbit/s; 0 gives no public address (default 10)'),
    allowFrom: cidr.optional().describe("where SSH and the image's declared ports may be reached from (default 0.0.0.0/0)"),
    endpoint: z.string().optional().describe('ECS API endpoint host[:port] (default: the region\'s); env CI_ALIYUN_ENDPOINT'),
    vpcEndpoint: z.string().optional().describe('VPC API endpoint host[:port] (default: the ECS endpoint when one is given, else the region\'s); env CI_ALIYUN_VPC_ENDPOINT'),
    protocol: z.enum(['https', 'http']).optional().describe('API protocol (default https); env CI_ALIYUN_PROTOCOL'),
    timeoutSeconds: z.number().int().min(5).max(600).optional().describe('time an API call may take (default 30)'),
    maxConcurrentCalls: z.number().int().min(1).max(64).optional().describe('API calls at once (default 4)'),
  })
  .describe('the Aliyun region, network and instances of the cluster');

export type CloudBlockDoc = z.infer<typeof CloudBlock>;

export const GROUP_FIELDS = {
  count: z.number().int().min(1).describe('how many hosts to make'),
  instanceType: z.string().min(1).describe('instance type of the group, e.g. ecs.g7.2xlarge'),
  systemDisk: diskGiB.describe('system disk size in GiB'),
  dataDisks: z.array(dataDiskGiB).describe('data disks, sizes in GiB'),
};

/** The settings with every default applied. */
export interface CloudSettings {
  regionId: string;
  zoneId: string;
  imageId: string;
  instanceType?: string;
  vpcCidr: string;
  vswitchCidr: string;
  systemDisk: number;
  dataDisks: number[];
  diskCategory: string;
  internetBandwidth: number;
  allowFrom: string;
}

/** Where the API is and how it is reached: not part of what the cluster is, so kept apart from the settings. */
export interface ApiSettings {
  regionId: string;
  endpoint?: string;
  vpcEndpoint?: string;
  protocol: 'https' | 'http';
  timeoutMs: number;
  maxConcurrentCalls: number;
  /**
   * An access key given in the command's environment; absent, the SDK's standard chain looks (environment of the
   * process, profile files, RAM role).
   */
  accessKey?: { id: string; secret: string; securityToken?: string };
}

/** The first /24 of a larger range (172.16.0.0/16 -> 172.16.0.0/24), or the range itself when it is that small. */
export function firstSubnet(range: string): string {
  const [ip, bits] = range.split('/');
  return Number(bits) >= 24 ? range : `${ip}/24`;
}

export function cloudSettings(block: unknown): CloudSettings {
  const b = block as CloudBlockDoc;
  const vpcCidr = b.vpcCidr ?? '172.16.0.0/16';
  return {
    regionId: b.regionId,
    zoneId: b.zoneId,
    imageId: b.imageId,
    ...(b.instanceType ? { instanceType: b.instanceType } : {}),
    vpcCidr,
    vswitchCidr: b.vswitchCidr ?? firstSubnet(vpcCidr),
    systemDisk: b.systemDisk ?? 40,
    dataDisks: b.dataDisks ?? [],
    diskCategory: b.diskCategory ?? 'cloud_essd',
    internetBandwidth: b.internetBandwidth ?? 10,
    allowFrom: b.allowFrom ?? '0.0.0.0/0',
  };
}

export function apiSettings(block: unknown, env: NodeJS.ProcessEnv): ApiSettings {
  const b = block as CloudBlockDoc;
  const endpoint = env.CI_ALIYUN_ENDPOINT || b.endpoint;
  const protocol = (env.CI_ALIYUN_PROTOCOL || b.protocol || 'https').toLowerCase();
  return {
    regionId: b.regionId,
    ...(endpoint ? { endpoint } : {}),
    ...(env.CI_ALIYUN_VPC_ENDPOINT || b.vpcEndpoint || endpoint ? { vpcEndpoint: env.CI_ALIYUN_VPC_ENDPOINT || b.vpcEndpoint || endpoint } : {}),
    protocol: protocol === 'http' ? 'http' : 'https',
    timeoutMs: (b.timeoutSeconds ?? 30) * 1000,
    maxConcurrentCalls: b.maxConcurrentCalls ?? 4,
    ...(env.ALIBABA_CLOUD_ACCESS_KEY_ID && env.ALIBABA_CLOUD_ACCESS_KEY_SECRET
      ? {
          accessKey: {
            id: env.ALIBABA_CLOUD_ACCESS_KEY_ID,
            secret: env.ALIBABA_CLOUD_ACCESS_KEY_SECRET,
            ...(env.ALIBABA_CLOUD_SECURITY_TOKEN ? { securityToken: env.ALIBABA_CLOUD_SECURITY_TOKEN } : {}),
          },
        }
      : {}),
  };
}

/** Whether one CIDR lies inside another (both IPv4). */
export function cidrInside(inner: string, outer: string): boolean {
  const parse = (c: string) => {
    const [ip, bits] = c.split('/');
    const n = ip.split('.').reduce((a, p) => a * 256 + Number(p), 0);
    return { n, bits: Number(bits) };
  };
  const a = parse(inner);
  const b = parse(outer);
  if (a.bits < b.bits) return false;
  const mask = b.bits === 0 ? 0 : 2 ** 32 - 2 ** (32 - b.bits);
  const masked = (x: number) => Math.floor(x / 2 ** (32 - b.bits)) * 2 ** (32 - b.bits);
  return mask === 0 || masked(a.n) === masked(b.n);
}
