/** The small image and LOCAL Clusterfiles the apply benchmark deploys, written as files a user would write. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

export const run = promisify(execFile);
export const CI_BIN = fileURLToPath(new URL('../../engine/cli/bin.js', import.meta.url));

const HOOKS = ['init-host', 'init-master0', 'join-master', 'join-node', 'upgrade', 'reconfigure'];

/**
 * A build context: one big random (incompressible) layer, hooks that leave a marker, a small config layer, and an
 * app layer on top (`--build-arg APP=v2` changes only that one; `appLayerBytes` random bytes each version).
 */
export async function writeImageContext(dir: string, bigLayerBytes: number, appLayerBytes = 1000): Promise<void> {
  await fs.mkdir(join(dir, 'big'), { recursive: true });
  await fs.writeFile(join(dir, 'big', 'blob.bin'), randomBytes(bigLayerBytes));
  await fs.mkdir(join(dir, 'hooks'), { recursive: true });
  for (const hook of HOOKS) {
    await fs.writeFile(join(dir, 'hooks', hook), `#!/bin/sh\nset -eu\necho "${hook} $CI_IMAGE" >> /root/bench-hooks.log\n`, { mode: 0o755 });
  }
  for (const v of ['v1', 'v2']) {
    await fs.mkdir(join(dir, 'config', v), { recursive: true });
    await fs.writeFile(join(dir, 'config', v, 'app.conf'), `version=${v}\n`);
    await fs.mkdir(join(dir, 'app', v), { recursive: true });
    await fs.writeFile(join(dir, 'app', v, 'app.bin'), randomBytes(appLayerBytes));
  }
  await fs.writeFile(
    join(dir, 'Kubefile'),
    [
      'FROM scratch',
      'COPY big/ /big/',
      'COPY hooks/ /hooks/',
      'ARG CONFIG=v1',
      'COPY config/${CONFIG}/ /config/',
      'ARG APP=v1',
      'COPY app/${APP}/ /app/',
      'CMD echo installed > /root/bench-cmd.log',
      '',
    ].join('\n'),
  );
}

/** One master and N-1 nodes, all light local hosts. */
export function localClusterfile(name: string, image: string, hosts: number): string {
  const groups = [`    - count: 1\n      roles: [master]\n      kind: light\n`];
  if (hosts > 1) groups.push(`    - count: ${hosts - 1}\n      roles: [node]\n      kind: light\n`);
  return `apiVersion: cloudimage.io/v1
kind: Cluster
metadata:
  name: ${name}
spec:
  image: ${image}
  provider: LOCAL
  hosts:
${groups.join('')}`;
}
