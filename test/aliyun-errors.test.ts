/**
 * How provider ALI_CLOUD reads failures and backs off: each error class the SDK can throw is classified by its code,
 * retried or not as it should be, with delays inside their bounds (a floor for throttling, the server's retry-after,
 * the cap), and a failure for good names the resource, the action and the code, never a credential.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ClientError, ServerError, ThrottlingError } from '@alicloud/openapi-core';
import { AliyunApi } from '../providers/aliyun/api.js';
import { AliyunApiError, classify } from '../providers/aliyun/errors.js';
import { redact } from '../engine/kernel/redact.js';

const AK = 'LTAI5tCiTestKey0001';
const SECRET = 'ci-test-secret-7f3a9';
const saved = { ...process.env };
beforeAll(() => {
  Object.assign(process.env, { ALIBABA_CLOUD_ACCESS_KEY_ID: AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET: SECRET, ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true' });
});
afterAll(() => {
  for (const k of ['ALIBABA_CLOUD_ACCESS_KEY_ID', 'ALIBABA_CLOUD_ACCESS_KEY_SECRET', 'ALIBABA_CLOUD_ECS_METADATA_DISABLED']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

// Shaped as the SDK builds them from an error answer: the body in data, the message prefixed with the code.
const client = (code: string, statusCode = 400) =>
  new ClientError({ code, statusCode, message: `code: ${statusCode}, something request id: 1F2E-REQ`, requestId: '1F2E-REQ', data: { Code: code, Message: 'something', RequestId: '1F2E-REQ' } });
const timeout = () => Object.assign(new Error('ReadTimeout(30000)'), { name: 'RequestTimeoutError' });

describe('classification by error code', () => {
  test.each([
    [new ThrottlingError({ code: 'Throttling.User', statusCode: 400, message: 'flow control', retryAfter: 3500 }), 'throttled'],
    [client('Throttling'), 'throttled'],
    [new ServerError({ code: 'ServiceUnavailable', statusCode: 503, message: 'try later' }), 'transient'],
    [new ServerError({ code: 'InternalError', statusCode: 500, message: 'oops' }), 'transient'],
    [new ServerError({ code: 'WhateverFailed', statusCode: 502, message: 'bad gateway' }), 'transient'],
    [timeout(), 'transient'],
    [Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'transient'],
    [client('IncorrectVSwitchStatus'), 'busy'],
    [client('IncorrectInstanceStatus.Initializing'), 'busy'],
    [client('OperationConflict'), 'busy'],
    [client('DependencyViolation.VSwitch'), 'dependency'],
    [client('InvalidInstanceId.NotFound', 404), 'not-found'],
    [client('OperationDenied.NoStock'), 'no-stock'],
    [client('QuotaExceed.ElasticQuota'), 'quota'],
    [client('SignatureDoesNotMatch'), 'auth'],
    [client('InvalidAccessKeyId.NotFound', 404), 'auth'],
    [client('IdempotentParameterMismatch'), 'idempotency'],
    [client('InvalidParameter.InstanceType'), 'invalid'],
  ])('%s is %s', (err, cls) => {
    expect(classify(err).cls).toBe(cls);
  });

  test('the server\'s retry-after is read from a throttling answer', () => {
    expect(classify(new ThrottlingError({ code: 'Throttling.User', statusCode: 400, message: 'x', retryAfter: 3500 })).retryAfterMs).toBe(3500);
  });
});

describe('retries and backoff', () => {
  const api = (delays: number[], random = () => 1) =>
    new AliyunApi(
      { regionId: 'cn-hangzhou', endpoint: '127.0.0.1:1', protocol: 'http', timeoutMs: 5000, maxConcurrentCalls: 2 },
      { sleep: async (ms) => void delays.push(ms), random },
    );
  const failing = (errors: unknown[], then: unknown = 'ok') => {
    let n = 0;
    return async () => {
      if (n < errors.length) throw errors[n++];
      return then;
    };
  };

  test('throttling waits at least its floor, or the server\'s retry-after, and succeeds when the API does', async () => {
    const delays: number[] = [];
    const a = api(delays, () => 0);
    await expect(a.call('instances of group node', 'RunInstances', failing([client('Throttling.User'), new ThrottlingError({ code: 'Throttling.User', statusCode: 400, message: 'x', retryAfter: 7000 })]))).resolves.toBe('ok');
    expect(delays).toEqual([2000, 7000]);
    // A retry-after shorter than the floor is still what the server asked for.
    const short: number[] = [];
    await api(short, () => 1).call('x', 'DescribeVpcs', failing([new ThrottlingError({ code: 'Throttling.User', statusCode: 400, message: 'x', retryAfter: 50 })]));
    expect(short).toEqual([50]);
    expect(a.calls).toBe(3);
  });

  test('5xx and timeouts back off exponentially with full jitter, capped', async () => {
    const delays: number[] = [];
    const errors = Array.from({ length: 7 }, (_, i) => (i % 2 ? timeout() : new ServerError({ code: 'ServiceUnavailable', statusCode: 503, message: 'x' })));
    await expect(api(delays).call('VPC', 'CreateVpc', failing(errors))).resolves.toBe('ok');
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 20000, 20000]);
    const jittered: number[] = [];
    await api(jittered, () => 0.5).call('VPC', 'CreateVpc', failing(errors.slice(0, 3)));
    expect(jittered).toEqual([500, 1000, 2000]);
  });

  test('no stock, quota, credentials and bad parameters stop at once, naming the resource, the action and the code', async () => {
    for (const [code, cls] of [['OperationDenied.NoStock', 'NO_STOCK'], ['QuotaExceed.ElasticQuota', 'QUOTA'], ['SignatureDoesNotMatch', 'AUTH'], ['InvalidParameter', 'INVALID']]) {
      const delays: number[] = [];
      const a = api(delays);
      const err = (await a.call('instances of group node (demo-node-1)', 'RunInstances', failing([client(code)])).catch((e: unknown) => e)) as AliyunApiError;
      expect(err).toBeInstanceOf(AliyunApiError);
      expect(err.code).toBe(`ALIYUN_${cls}`);
      expect(err.message).toBe(`instances of group node (demo-node-1): RunInstances failed with ${code} (HTTP 400): something (request 1F2E-REQ)`);
      expect(err.hint).toBeTruthy();
      expect(delays).toEqual([]);
      expect(a.calls).toBe(1);
      expect(redact(`${err.message} ${err.hint}`)).not.toContain(SECRET);
    }
  });

  test('a delete waits out dependants still going away; other calls do not', async () => {
    const delays: number[] = [];
    await expect(api(delays).call('VPC vpc-1', 'DeleteVpc', failing([client('DependencyViolation.VSwitch'), client('DependencyViolation')]), { waitDependencies: true })).resolves.toBe('ok');
    expect(delays).toHaveLength(2);
    const err = (await api([]).call('VPC vpc-1', 'DeleteVpc', failing([client('DependencyViolation')])).catch((e: unknown) => e)) as AliyunApiError;
    expect(err.code).toBe('ALIYUN_DEPENDENCY');
  });

  test('retrying stops at the operation\'s deadline with the last failure', async () => {
    const a = new AliyunApi({ regionId: 'r', endpoint: '127.0.0.1:1', protocol: 'http', timeoutMs: 5000, maxConcurrentCalls: 1 }, { random: () => 1 });
    const started = Date.now();
    const err = (await a.call('VPC', 'DescribeVpcs', failing(Array(50).fill(client('Throttling.User'))), { deadlineMs: 2500 }).catch((e: unknown) => e)) as AliyunApiError;
    expect(err.code).toBe('ALIYUN_THROTTLED');
    expect(Date.now() - started).toBeLessThan(2500);
    expect(a.calls).toBe(2);
  });

  test('the credentials found are masked everywhere', async () => {
    await api([]).call('x', 'DescribeRegions', async () => 'ok');
    expect(redact(`key ${AK} secret ${SECRET}`)).toBe('key ****** secret ******');
  });
});
