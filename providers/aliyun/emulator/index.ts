/**
 * An offline emulator of Alibaba Cloud's ECS (2014-05-26) and VPC (2016-04-28) APIs, for the official SDK: signed
 * requests, the real answer and error shapes, resources kept on disk, and instances that are real local hosts
 * reachable over SSH with the instance's key pair or password.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CiError } from '../../../engine/kernel/errors.js';
import { createFileExclusive, exists } from '../../../engine/kernel/fsutil.js';
import { LIGHT_OVERLAY_DIRS } from '../../local/host-dirs.js';
import { LocalLab, type HostKind } from '../../local/lab.js';
import { isAlive, procRef, type ProcRef } from '../../local/procs.js';
import { Authenticator } from './auth.js';
import { Cloud } from './cloud.js';
import { Faults } from './faults.js';
import { TIMINGS } from './latency.js';
import type { EmulatorEvent, EmulatorOptions, RunningEmulator } from './options.js';
import { ApiServer } from './server.js';
import { Store, storePath } from './store.js';

export type { EmulatorEvent, EmulatorFlags, EmulatorOptions, FaultOptions, LatencyProfile, RunningEmulator } from './options.js';
export { DEFAULT_LISTEN, defaultDataDir, parseEmulatorFlags, parseFaults } from './options.js';

export const ECS_VERSION = '2014-05-26';
export const VPC_VERSION = '2016-04-28';

export const labDirOf = (dataDir: string) => join(dataDir, 'lab');
const pidFile = (dataDir: string) => join(dataDir, 'emulator.pid');

export class EmulatorBusyError extends CiError {
  constructor(dataDir: string, pid: number) {
    super('ALIYUN_EMULATOR_BUSY', `the data directory ${dataDir} is in use by another emulator (pid ${pid})`, {
      hint: 'stop that emulator first, or give this one another directory with --data DIR',
    });
  }
}

/** Claims the data directory for this process; a claim whose process is gone is taken over. */
async function claimDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = pidFile(dataDir);
  const mine = procRef(process.pid)!;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await createFileExclusive(path, JSON.stringify(mine) + '\n')) {
      return async () => {
        const now = await fs.readFile(path, 'utf8').catch(() => '');
        if (now.trim() === JSON.stringify(mine)) await fs.rm(path, { force: true });
      };
    }
    const running = await holder(dataDir);
    if (running) throw new EmulatorBusyError(dataDir, running.pid);
    await fs.rm(path, { force: true });
  }
  throw new EmulatorBusyError(dataDir, NaN);
}

async function holder(dataDir: string): Promise<ProcRef | undefined> {
  try {
    const ref = JSON.parse(await fs.readFile(pidFile(dataDir), 'utf8')) as ProcRef;
    return isAlive(ref) ? ref : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Releases every host of the emulator kept in `dataDir` and empties its resources. Safe to repeat; refused while
 * another process serves from that directory.
 */
export async function resetEmulatorData(dataDir: string): Promise<void> {
  const dir = resolve(dataDir);
  const running = await holder(dir);
  if (running && running.pid !== process.pid) throw new EmulatorBusyError(dir, running.pid);
  await LocalLab.remove(labDirOf(dir));
  await fs.rm(storePath(dir), { force: true });
}

/** Light hosts overlay these directories with layers kept in their lab: a lab inside them would overlap itself. */
async function checkDataDir(dataDir: string, kind: HostKind): Promise<void> {
  if (kind !== 'light') return;
  // Checked before anything is made: the real path of the nearest existing parent, and the rest of the path.
  let existing = dataDir;
  const rest: string[] = [];
  while (!(await exists(existing)) && dirname(existing) !== existing) {
    rest.unshift(basename(existing));
    existing = dirname(existing);
  }
  const real = join(await fs.realpath(existing), ...rest);
  const clash = LIGHT_OVERLAY_DIRS.find((d) => real === `/${d}` || real.startsWith(`/${d}/`));
  if (clash) {
    throw new CiError('ALIYUN_EMULATOR_DATA_DIR', `the data directory ${real} is inside /${clash}, which light instance hosts overlay`, {
      hint: 'pass --data with a directory outside /etc, /var, /opt, /usr and /srv, or use --instance-kind systemd',
    });
  }
}

export async function startEmulator(options: EmulatorOptions): Promise<RunningEmulator> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new CiError('ALIYUN_EMULATOR_NOT_ROOT', 'the Aliyun emulator needs root: its instances are local hosts (network namespaces, mounts, veth links)', {
      hint: 'run `ci emulator aliyun` as root (for example with sudo)',
    });
  }
  const dataDir = resolve(options.dataDir);
  await checkDataDir(dataDir, options.instanceKind ?? 'light');
  const fresh = !(await exists(dataDir));
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const release = await claimDataDir(dataDir);
  const emit = (e: EmulatorEvent) => {
    try {
      options.onEvent?.(e);
    } catch {
      // A listener's failure is no reason to fail a call.
    }
  };
  let server: ApiServer | undefined;
  let cloud: Cloud | undefined;
  let sweeper: NodeJS.Timeout | undefined;
  let listening = false;
  try {
    if (options.reset) await resetEmulatorData(dataDir);
    const timings = TIMINGS[options.latency ?? 'realistic'];
    cloud = new Cloud({
      store: await Store.open(dataDir),
      labDir: labDirOf(dataDir),
      instanceKind: options.instanceKind ?? 'light',
      timings,
      faults: new Faults(options.faults),
      stock: options.stock ?? 100,
      accessKeyId: options.accessKeyId,
      emit,
    });
    server = new ApiServer({
      cloud,
      auth: new Authenticator(new Map([[options.accessKeyId, options.accessKeySecret]])),
      timeoutHoldMs: options.timeoutHoldMs ?? 300_000,
      emit,
    });
    // Listening comes first: an address in use is the likeliest failure, and it must leave no lab behind. Calls
    // answered while the hosts are resumed see their instances Starting.
    const address = await server.listen(options.host, options.port);
    listening = true;
    await cloud.resume();
    const c = cloud;
    sweeper = setInterval(() => c.sweep(), options.latency === 'fast' ? 100 : 500);
    sweeper.unref();
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const s = server;
    let stopped: Promise<void> | undefined;
    return {
      endpoint: `${host}:${address.port}`,
      dataDir,
      stop() {
        stopped ??= (async () => {
          clearInterval(sweeper);
          await s.close();
          await c.exclusive(async () => undefined);
          await c.hosts.stop();
          await c.commit();
          await release();
        })();
        return stopped;
      },
      reset() {
        return c.exclusive(async () => {
          await c.hosts.destroy();
          c.clear();
          await c.commit();
          await c.hosts.open();
        });
      },
    };
  } catch (err) {
    clearInterval(sweeper);
    if (listening) await server?.close().catch(() => undefined);
    await cloud?.hosts.stop().catch(() => undefined);
    await release();
    if (fresh && !listening) await fs.rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}
