/** How an emulator is configured, and the parser for the flags of `ci emulator aliyun`. */
import { join, resolve } from 'node:path';
import { UsageError } from '../../../engine/kernel/errors.js';
import { ciHome } from '../../../engine/kernel/home.js';
import type { HostKind } from '../../local/lab.js';

export type LatencyProfile = 'fast' | 'realistic';

export interface FaultOptions {
  /** Share (0-1) of calls answered `Throttling.User` (400). */
  throttling?: number;
  /** Share (0-1) of calls answered `ServiceUnavailable` (503) or `InternalError` (500), half each. */
  serverError?: number;
  /** Actions whose first call is performed but answered only after the caller gave up (or `timeoutHoldMs`). */
  timeoutOnce?: string[];
  /** Share (0-1) of RunInstances calls answered `OperationDenied.NoStock`. */
  noStock?: number;
  /** Sent as `x-acs-retry-after` (milliseconds, as the SDK reads it) on throttling and 503 answers. */
  retryAfterMs?: number;
  /** Seed of the fault draws; the same seed and the same calls give the same faults. Random when absent. */
  seed?: number;
}

export interface EmulatorEvent {
  type: 'request' | 'instance' | 'warning';
  /** One line describing it, without secrets. */
  message: string;
  action?: string;
  status?: number;
  code?: string;
  instanceId?: string;
  /** For instance events: what happened to it. */
  change?: 'host-up' | 'host-removed' | 'released';
}

export interface EmulatorOptions {
  /** Where to listen; port 0 picks a free one (the running emulator says which). */
  host: string;
  port: number;
  accessKeyId: string;
  accessKeySecret: string;
  /** Resources (store.json) and the instances' local hosts (lab/) live here. */
  dataDir: string;
  latency?: LatencyProfile;
  faults?: FaultOptions;
  /** Empty the data directory (releasing its hosts) before starting. */
  reset?: boolean;
  /** What kind of local host each instance is (default `light`). */
  instanceKind?: HostKind;
  /** Instances each zone can still supply per instance type (default 100). */
  stock?: number;
  /** How long a `timeout-once` answer is held if the caller keeps waiting (default 300 000 ms). */
  timeoutHoldMs?: number;
  onEvent?: (e: EmulatorEvent) => void;
}

export interface RunningEmulator {
  /** `host:port`, as the SDK's `endpoint` (with `protocol: 'http'`). */
  endpoint: string;
  dataDir: string;
  /** Stops serving; resources and hosts are kept for the next start on the same data directory. */
  stop(): Promise<void>;
  /** Releases every host and empties the data directory, while serving on. */
  reset(): Promise<void>;
}

export const DEFAULT_LISTEN = '127.0.0.1:18080';

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(ciHome(env), 'emulators', 'aliyun');
}

/** The flags of `ci emulator aliyun` as commander hands them over (text, or true for switches). */
export interface EmulatorFlags {
  listen?: string;
  accessKeyId?: string;
  accessKeySecret?: string;
  latency?: string;
  faults?: string;
  data?: string;
  reset?: boolean;
  instanceKind?: string;
}

/**
 * Typed options from the flags; the access key falls back to ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET (the variables
 * the SDK's default credentials read). Throws a UsageError naming the flag for anything wrong.
 */
export function parseEmulatorFlags(flags: EmulatorFlags, env: NodeJS.ProcessEnv = process.env): Omit<EmulatorOptions, 'onEvent'> {
  const { host, port } = parseListen(flags.listen ?? DEFAULT_LISTEN);
  const accessKeyId = flags.accessKeyId ?? env.ALIBABA_CLOUD_ACCESS_KEY_ID;
  const accessKeySecret = flags.accessKeySecret ?? env.ALIBABA_CLOUD_ACCESS_KEY_SECRET;
  if (!accessKeyId) throw new UsageError('no access key id given', 'pass --access-key-id ID (or set ALIBABA_CLOUD_ACCESS_KEY_ID)');
  if (!accessKeySecret) {
    throw new UsageError('no access key secret given', 'pass --access-key-secret SECRET (or set ALIBABA_CLOUD_ACCESS_KEY_SECRET)');
  }
  if (!/^[\x21-\x7e]+$/.test(accessKeyId)) throw new UsageError('--access-key-id must be printable ASCII without spaces');
  const latency = flags.latency ?? 'realistic';
  if (latency !== 'fast' && latency !== 'realistic') throw new UsageError(`--latency must be fast or realistic, not "${latency}"`);
  const instanceKind = flags.instanceKind ?? 'light';
  if (instanceKind !== 'light' && instanceKind !== 'systemd') {
    throw new UsageError(`--instance-kind must be light or systemd, not "${instanceKind}"`);
  }
  const { faults, stock } = flags.faults !== undefined ? parseFaults(flags.faults) : { faults: undefined, stock: undefined };
  return {
    host,
    port,
    accessKeyId,
    accessKeySecret,
    dataDir: resolve(flags.data ?? defaultDataDir(env)),
    latency,
    faults,
    stock,
    reset: flags.reset === true,
    instanceKind,
  };
}

export function parseListen(value: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen must be HOST:PORT (e.g. ${DEFAULT_LISTEN}), not "${value}"`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

const FAULT_KEYS = ['throttling', '5xx', 'timeout-once', 'nostock', 'retry-after', 'seed', 'stock'];

/**
 * `throttling=0.3,5xx=0.05,timeout-once=RunInstances,CreateVpc,nostock=0.1,retry-after=2000,seed=7,stock=5`:
 * after `timeout-once=` every item without `=` is one more action.
 */
export function parseFaults(text: string): { faults: FaultOptions; stock?: number } {
  const faults: FaultOptions = {};
  let stock: number | undefined;
  let last: string | undefined;
  const share = (key: string, v: string) => {
    const n = Number(v);
    if (v === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new UsageError(`--faults: ${key} must be a share between 0 and 1, not "${v}"`);
    return n;
  };
  const whole = (key: string, v: string, min: number) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min) throw new UsageError(`--faults: ${key} must be a whole number of at least ${min}, not "${v}"`);
    return n;
  };
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (last !== 'timeout-once') {
        throw new UsageError(`--faults: "${item}" is not KEY=VALUE`, `keys: ${FAULT_KEYS.join(', ')}; e.g. throttling=0.3,5xx=0.05,timeout-once=RunInstances,nostock=0`);
      }
      faults.timeoutOnce!.push(action(item));
      continue;
    }
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    last = key;
    switch (key) {
      case 'throttling':
        faults.throttling = share(key, value);
        break;
      case '5xx':
        faults.serverError = share(key, value);
        break;
      case 'nostock':
        faults.noStock = share(key, value);
        break;
      case 'timeout-once':
        faults.timeoutOnce = [...(faults.timeoutOnce ?? []), ...(value === '' ? [] : [action(value)])];
        break;
      case 'retry-after':
        faults.retryAfterMs = whole(key, value, 0);
        break;
      case 'seed':
        faults.seed = whole(key, value, 0);
        break;
      case 'stock':
        stock = whole(key, value, 0);
        break;
      default:
        throw new UsageError(`--faults: unknown key "${key}"`, `keys: ${FAULT_KEYS.join(', ')}`);
    }
  }
  return { faults, stock };
}

function action(name: string): string {
  if (!/^[A-Z][A-Za-z0-9]*$/.test(name)) throw new UsageError(`--faults: timeout-once takes action names such as RunInstances, not "${name}"`);
  return name;
}
