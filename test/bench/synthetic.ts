/** A large synthetic cluster and image as plain data, the shapes the Clusterfile parser and image store produce. */
import { sha256 } from '../../engine/kernel/digest.js';
import { clusterDigest } from '../../engine/clusterfile/parse.js';
import type { DesiredCluster, DesiredHost } from '../../engine/clusterfile/types.js';
import type { ImageInfo } from '../../plans/actions.js';

/** 10.x.y.z addresses, unique for up to ~16 million hosts. */
function ipFor(i: number): string {
  const n = i + 10;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

export function syntheticCluster(hostCount: number, masters = 3, image = 'bench/app:v1'): DesiredCluster {
  const hosts: DesiredHost[] = [];
  for (let i = 0; i < hostCount; i++) {
    const ip = ipFor(i);
    hosts.push({
      key: ip,
      ip,
      roles: [i < masters ? 'master' : 'node'],
      env: { ZONE: `z${i % 4}` },
      ssh: { user: 'root', port: 22 },
    });
  }
  const c: Omit<DesiredCluster, 'digest'> = {
    name: 'bench',
    apiVersion: 'cloudimage.io/v1',
    image,
    provider: 'BAREMETAL',
    makesHosts: false,
    env: { APP_MODE: 'bench' },
    hosts,
    plugins: [],
    configs: [],
    documents: [],
  };
  return { ...c, digest: clusterDigest(c) };
}

/** `layerCount` layers; `changedLayer` (an index) gets different content, as a rebuilt config layer would. */
export function syntheticImage(tag: string, layerCount: number, changedLayer?: number): ImageInfo {
  const layers = Array.from({ length: layerCount }, (_, i) => {
    const salt = i === changedLayer ? `:${tag}` : '';
    return { digest: sha256(`bench-layer:${i}${salt}`), size: 1_000_000 + i * 4096, createdBy: `COPY part${i}/ /part${i}/` };
  });
  const cmd = 'app migrate';
  return {
    ref: `bench/app:${tag}`,
    digest: sha256(`bench-image:${layers.map((l) => l.digest).join(',')}`),
    layers,
    cmds: [{ cmd, identity: sha256(`${cmd}|${layers.map((l) => l.digest).join(',')}`) }],
  };
}
