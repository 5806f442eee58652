/**
 * The Aliyun API as this provider calls it: the official ECS and VPC clients on one openapi-core, credentials from
 * the standard chain, timeouts raised from the SDK's 3 s, the SDK's own retries off. Every call goes through `call`:
 * at most `maxConcurrentCalls` at once, retried with the project's one retry helper by error class (throttling with a
 * floor and the server's retry-after, 5xx and timeouts with jittered backoff), and turned into an AliyunApiError that
 * names the resource, the action and the code when it fails for good.
 */
import EcsModule from '@alicloud/ecs20140526';
import VpcModule from '@alicloud/vpc20160428';
import CredentialsModule from '@alicloud/credentials';
import { $OpenApiUtil } from '@alicloud/openapi-core';
import * as $dara from '@darabonba/typescript';
import pLimit, { type LimitFunction } from 'p-limit';
import { CiError } from '../../engine/kernel/errors.js';
import { registerSecret } from '../../engine/kernel/redact.js';
import { retry } from '../../engine/kernel/retry.js';
import { AliyunApiError, classify, retriedAlways, type Classified } from './errors.js';
import type { ApiSettings } from './settings.js';

/**
 * The SDK ships CommonJS whose class is `exports.default`: Node's ES import gives the exports object, bundlers and
 * test runners may give the class itself. Either way, the class.
 */
function cjsDefault<T>(m: { default: T }): T {
  const inner = (m as { default?: T }).default;
  return inner !== undefined && typeof inner === 'function' ? inner : (m as unknown as T);
}

const Ecs = cjsDefault(EcsModule);
const Vpc = cjsDefault(VpcModule);
const Credential = cjsDefault(CredentialsModule);

export type EcsClient = InstanceType<typeof Ecs>;
export type VpcClient = InstanceType<typeof Vpc>;

/** How long an operation may keep retrying, and which extra error classes it may wait out. */
export interface CallPolicy {
  /** Total time for all attempts (default 2 minutes). */
  deadlineMs?: number;
  /** Deletes: wait while dependants are still going away (DependencyViolation). */
  waitDependencies?: boolean;
}

export interface ApiEvents {
  /** A call is being retried: the class of what failed, and how long until the next try. */
  retrying?: (what: string, action: string, c: Classified, delayMs: number) => void;
  /** For tests of the backoff: the sleep and the randomness the retry helper uses. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** Throttling answers come back for the rest of the minute: never try again sooner than this. */
const THROTTLE_FLOOR_MS = 2000;

export class AliyunApi {
  readonly ecs: EcsClient;
  readonly vpc: VpcClient;
  /** API calls made, retries included: what the benchmark reports. */
  calls = 0;
  private readonly limit: LimitFunction;
  private readonly runtime: $dara.RuntimeOptions;
  private credentialsChecked?: Promise<void>;
  private readonly credential: InstanceType<typeof Credential>;

  constructor(
    settings: ApiSettings,
    private readonly events: ApiEvents = {},
  ) {
    const key = settings.accessKey;
    this.credential = key
      ? new Credential(
          (key.securityToken
            ? { type: 'sts', accessKeyId: key.id, accessKeySecret: key.secret, securityToken: key.securityToken }
            : { type: 'access_key', accessKeyId: key.id, accessKeySecret: key.secret }) as ConstructorParameters<typeof Credential>[0],
        )
      : new Credential();
    const config = (endpoint: string | undefined) =>
      new $OpenApiUtil.Config({
        credential: this.credential,
        regionId: settings.regionId,
        ...(endpoint ? { endpoint } : {}),
        protocol: settings.protocol,
        readTimeout: settings.timeoutMs,
        connectTimeout: Math.min(settings.timeoutMs, 10_000),
      });
    this.ecs = new Ecs(config(settings.endpoint));
    this.vpc = new Vpc(config(settings.vpcEndpoint));
    this.limit = pLimit(settings.maxConcurrentCalls);
    this.runtime = new $dara.RuntimeOptions({ readTimeout: settings.timeoutMs, connectTimeout: Math.min(settings.timeoutMs, 10_000) });
  }

  /** The credentials, found once, registered as secrets so no output ever shows them. */
  private checkCredentials(): Promise<void> {
    this.credentialsChecked ??= this.credential.getCredential().then(
      (c) => {
        registerSecret(c.accessKeyId);
        registerSecret(c.accessKeySecret);
        registerSecret(c.securityToken);
      },
      (err: unknown) => {
        throw new CiError('ALIYUN_NO_CREDENTIALS', `no Aliyun credentials found: ${String((err as Error)?.message ?? err).split('\n')[0]}`, {
          hint: 'export ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, or configure a profile (~/.aliyun/config.json) or an instance RAM role',
        });
      },
    );
    return this.credentialsChecked;
  }

  /**
   * One API action, retried by error class until it succeeds or fails for good. `what` names the resource in
   * messages (`instances of group master`); `fn` makes the SDK call with the runtime options it is given.
   */
  async call<T>(what: string, action: string, fn: (runtime: $dara.RuntimeOptions) => Promise<T>, policy: CallPolicy = {}): Promise<T> {
    await this.checkCredentials();
    const retryable = (err: unknown) => {
      const c = classify(err);
      return retriedAlways(c) || (!!policy.waitDependencies && c.cls === 'dependency');
    };
    try {
      return await retry(
        () =>
          this.limit(() => {
            this.calls++;
            return fn(this.runtime);
          }),
        {
          attempts: Number.MAX_SAFE_INTEGER,
          baseMs: 1000,
          capMs: 20_000,
          deadlineMs: policy.deadlineMs ?? 120_000,
          retryable,
          delayFor: (err, computed) => {
            const c = classify(err);
            // The server knows when it will answer again: wait exactly that.
            if (c.retryAfterMs) return c.retryAfterMs;
            return c.cls === 'throttled' ? Math.max(THROTTLE_FLOOR_MS, computed) : computed;
          },
          onRetry: (err, _attempt, delayMs) => this.events.retrying?.(what, action, classify(err), delayMs),
          ...(this.events.sleep ? { sleep: this.events.sleep } : {}),
          ...(this.events.random ? { random: this.events.random } : {}),
        },
      );
    } catch (err) {
      if (err instanceof CiError) throw err;
      throw new AliyunApiError(what, action, classify(err));
    }
  }
}

/** The class of a failed call, for callers that treat some classes as answers (not found on delete). */
export function classOf(err: unknown): Classified['cls'] | undefined {
  return err instanceof AliyunApiError ? err.classified.cls : undefined;
}
