/**
 * What the emulated cloud offers: regions and zones, instance types (any name of the ECS pattern, sized by its
 * suffix), disk categories and images (any image ID; the instance itself is always a local Linux host).
 */
import { errors } from './api-errors.js';

interface RegionInfo {
  id: string;
  zh: string;
  en: string;
  zones: string[];
}

const REGIONS: RegionInfo[] = [
  { id: 'cn-hangzhou', zh: '华东1（杭州）', en: 'China (Hangzhou)', zones: ['h', 'i', 'j', 'k'] },
  { id: 'cn-shanghai', zh: '华东2（上海）', en: 'China (Shanghai)', zones: ['e', 'f', 'g', 'l'] },
  { id: 'cn-beijing', zh: '华北2（北京）', en: 'China (Beijing)', zones: ['g', 'h', 'i', 'k', 'l'] },
  { id: 'cn-shenzhen', zh: '华南1（深圳）', en: 'China (Shenzhen)', zones: ['d', 'e', 'f'] },
  { id: 'cn-chengdu', zh: '西南1（成都）', en: 'China (Chengdu)', zones: ['a', 'b'] },
  { id: 'cn-hongkong', zh: '中国香港', en: 'China (Hong Kong)', zones: ['b', 'c', 'd'] },
  { id: 'ap-southeast-1', zh: '新加坡', en: 'Singapore', zones: ['a', 'b', 'c'] },
  { id: 'eu-central-1', zh: '德国（法兰克福）', en: 'Germany (Frankfurt)', zones: ['a', 'b'] },
  { id: 'us-west-1', zh: '美国（硅谷）', en: 'US (Silicon Valley)', zones: ['a', 'b'] },
];

export const regions = (): readonly RegionInfo[] => REGIONS;

export function region(id: string | undefined): RegionInfo {
  if (id === undefined) throw errors.missingRegion();
  const r = REGIONS.find((x) => x.id === id);
  if (!r) throw errors.regionNotFound();
  return r;
}

export const zoneIds = (r: RegionInfo): string[] => r.zones.map((z) => `${r.id}-${z}`);

export function zoneName(r: RegionInfo, zoneId: string, lang: string | undefined): string {
  const letter = zoneId.slice(r.id.length + 1).toUpperCase();
  return lang?.toLowerCase().startsWith('en') ? `${r.en} Zone ${letter}` : `${r.zh.replace(/（.*）/, '')} 可用区 ${letter}`;
}

export const regionEndpoint = (id: string, product: 'ecs' | 'vpc') => (id === 'cn-hangzhou' ? `${product}.aliyuncs.com` : `${product}.${id}.aliyuncs.com`);

export const SYSTEM_DISK_CATEGORIES = ['cloud_efficiency', 'cloud_ssd', 'cloud_essd', 'cloud_auto', 'cloud_essd_entry', 'cloud'];
export const DATA_DISK_CATEGORIES = [...SYSTEM_DISK_CATEGORIES, 'ephemeral_ssd'];

const SIZES: Record<string, number> = {
  small: 1, medium: 1, large: 2, xlarge: 4, '2xlarge': 8, '3xlarge': 12, '4xlarge': 16, '6xlarge': 24, '8xlarge': 32,
  '12xlarge': 48, '16xlarge': 64, '24xlarge': 96, '32xlarge': 128,
};

/** Offered in DescribeZones; RunInstances takes any type of the same naming scheme. */
export const LISTED_INSTANCE_TYPES = [
  'ecs.t6-c1m2.large', 'ecs.t6-c1m4.large', 'ecs.u1-c1m2.large', 'ecs.u1-c1m4.large', 'ecs.e-c1m2.large',
  'ecs.c7.large', 'ecs.c7.xlarge', 'ecs.c7.2xlarge', 'ecs.g7.large', 'ecs.g7.xlarge', 'ecs.g7.2xlarge',
  'ecs.r7.large', 'ecs.r7.xlarge', 'ecs.g8i.large', 'ecs.g8i.xlarge', 'ecs.c8i.large', 'ecs.g6.large', 'ecs.c6.large',
];

export interface InstanceTypeInfo {
  family: string;
  cpu: number;
  memoryMiB: number;
}

/** `ecs.g7.large` -> 2 vCPU, 8 GiB: the family letter (c/g/r) or `-cXmY` gives GiB per vCPU. */
export function instanceType(name: string): InstanceTypeInfo {
  const m = /^ecs\.([a-z][a-z0-9]*)(?:-c(\d+)m(\d+))?\.([a-z0-9]+)$/.exec(name);
  const cpu = m ? SIZES[m[4]] : undefined;
  if (!m || cpu === undefined) throw errors.instanceType();
  let perCpu = { c: 2, g: 4, r: 8, u: 4, t: 2, e: 2, s: 2, n: 2, h: 4, i: 8, d: 4, re: 16 }[m[1].replace(/\d.*$/, '')] ?? 4;
  if (m[2] && m[3]) perCpu = Number(m[3]) / Number(m[2]);
  const memory = m[4] === 'small' ? 0.5 * perCpu : cpu * perCpu;
  return { family: `ecs.${m[1]}${m[2] ? `-c${m[2]}m${m[3]}` : ''}`, cpu, memoryMiB: Math.round(memory * 1024) };
}

/** Any plausible image ID is accepted: public images by name, custom ones as `m-...`. */
export function image(id: string): { osName: string; osNameEn: string } {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{1,127}$/.test(id)) throw errors.imageNotFound();
  const l = id.toLowerCase();
  const version = (re: RegExp) => (re.exec(l)?.slice(1) ?? []).filter(Boolean).join('.');
  const known: [RegExp, string, RegExp][] = [
    [/^ubuntu/, 'Ubuntu', /^ubuntu_(\d+)_(\d+)/],
    [/^debian/, 'Debian', /^debian_(\d+)(?:_(\d+))?/],
    [/^centos/, 'CentOS', /^centos_(\d+)(?:_(\d+))?/],
    [/^(aliyun|alinux)/, 'Alibaba Cloud Linux', /^(?:aliyun|alinux)_(\d+)(?:_(\d+))?/],
    [/^rocky/, 'Rocky Linux', /^rockylinux_(\d+)(?:_(\d+))?/],
  ];
  for (const [test, os, ver] of known) {
    if (test.test(l)) {
      const v = version(ver);
      return { osName: `${os} ${v} 64位`.replace(/\s+/g, ' '), osNameEn: `${os} ${v} 64 bit`.replace(/\s+/g, ' ') };
    }
  }
  return { osName: 'Linux 64位', osNameEn: 'Linux 64 bit' };
}
