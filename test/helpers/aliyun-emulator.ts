/**
 * An Aliyun emulator for tests: started on a free port with a temp data directory and a fresh secret, with clients
 * of the real SDK pointed at it. cleanup() releases every host it made, stops it and removes the directory; it never
 * throws, so it can run in afterAll after a failed test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EcsModule from '@alicloud/ecs20140526';
import VpcModule from '@alicloud/vpc20160428';
import { $OpenApiUtil } from '@alicloud/openapi-core';
import { waitFor } from './e2e.js';
import { resetEmulatorData, startEmulator, type EmulatorEvent, type EmulatorOptions, type RunningEmulator } from '../../providers/aliyun/emulator/index.js';

// The SDK packages are CommonJS with a default export: Node hands the module object to `import X from`, vitest the
// default export itself. Either way, this is the client class.
const defaultExport = <T>(m: { default: T }): T => (m as unknown as { default?: T }).default ?? (m as unknown as T);
export const EcsClient = defaultExport(EcsModule);
export const VpcClient = defaultExport(VpcModule);
export type EcsClient = InstanceType<typeof EcsClient>;
export type VpcClient = InstanceType<typeof VpcClient>;

export const TEST_REGION = 'cn-hangzhou';
export const TEST_ZONE = 'cn-hangzhou-h';

export interface TestEmulator {
  endpoint: string;
  dataDir: string;
  accessKeyId: string;
  accessKeySecret: string;
  emulator: RunningEmulator;
  /** Every event the emulator emitted, in order, with when it came (epoch ms). */
  events: (EmulatorEvent & { at: number })[];
  /** SDK configuration for this emulator; `extra` overrides fields (signatureAlgorithm, readTimeout, credentials). */
  config(extra?: Record<string, unknown>): $OpenApiUtil.Config;
  ecs(extra?: Record<string, unknown>): EcsClient;
  vpc(extra?: Record<string, unknown>): VpcClient;
  /** Stops it and starts it again on the same data directory and port (options may change). */
  restart(opts?: Partial<EmulatorOptions>): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startTestEmulator(opts: Partial<EmulatorOptions> = {}): Promise<TestEmulator> {
  const parent = mkdtempSync(join(tmpdir(), 'ci-aliyun-emu-'));
  const dataDir = join(parent, 'data');
  const accessKeyId = 'LTAI5tEmulatorTest';
  const accessKeySecret = randomBytes(15).toString('base64url');
  const events: (EmulatorEvent & { at: number })[] = [];
  let current: Partial<EmulatorOptions> = opts;
  const start = (port: number) =>
    startEmulator({
      host: '127.0.0.1',
      port,
      accessKeyId,
      accessKeySecret,
      dataDir,
      latency: 'fast',
      ...current,
      onEvent: (e) => {
        events.push({ ...e, at: Date.now() });
        current.onEvent?.(e);
      },
    });
  let emulator: RunningEmulator;
  try {
    emulator = await start(opts.port ?? 0);
  } catch (err) {
    await resetEmulatorData(dataDir).catch(() => undefined);
    rmSync(parent, { recursive: true, force: true });
    throw err;
  }
  const t: TestEmulator = {
    get endpoint() {
      return emulator.endpoint;
    },
    dataDir,
    accessKeyId,
    accessKeySecret,
    get emulator() {
      return emulator;
    },
    events,
    config: (extra = {}) =>
      new $OpenApiUtil.Config({
        accessKeyId,
        accessKeySecret,
        endpoint: emulator.endpoint,
        protocol: 'http',
        regionId: TEST_REGION,
        readTimeout: 20_000,
        connectTimeout: 5000,
        ...extra,
      }),
    ecs: (extra) => new EcsClient(t.config(extra)),
    vpc: (extra) => new VpcClient(t.config(extra)),
    async restart(more = {}) {
      const port = Number(emulator.endpoint.split(':').pop());
      await emulator.stop();
      current = { ...current, ...more };
      emulator = await start(port);
    },
    async cleanup() {
      try {
        await emulator.stop();
      } catch (err) {
        process.stderr.write(`cleanup: stopping the emulator failed: ${(err as Error).message}\n`);
      }
      try {
        await resetEmulatorData(dataDir);
      } catch (err) {
        process.stderr.write(`cleanup: releasing the emulator's hosts failed: ${(err as Error).message}\n`);
      }
      rmSync(parent, { recursive: true, force: true });
    },
  };
  return t;
}

/** Polls every 100 ms (the emulator's fast states last tenths of a second) until fn returns a truthy value. */
export const until = <T>(fn: () => Promise<T | undefined | false | null>, what: string, timeoutMs = 30_000): Promise<T> =>
  waitFor(fn, what, timeoutMs, 100) as Promise<T>;

/** The error an SDK call fails with (its `code`, `statusCode`, `data`), or a failure if it succeeded. */
export async function apiError(p: Promise<unknown>): Promise<{ code: string; statusCode: number; data: Record<string, unknown>; name: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as never;
  }
  throw new Error('the call succeeded, but an error was expected');
}
