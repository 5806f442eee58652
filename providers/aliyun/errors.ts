/**
 * What an Aliyun API failure means, decided by its error code (and, for transport failures, by what the SDK threw),
 * never by guessing: throttling, server errors and timeouts are retried with backoff; a resource that is busy, or whose
 * dependants are still going away, is retried while the operation's deadline allows; no stock, quota, credentials,
 * signature and parameter errors stop at once, with a message naming the resource, the API action and the code.
 */
import { CiError } from '../../engine/kernel/errors.js';

export type ErrorClass =
  | 'throttled'
  | 'transient'
  | 'busy'
  | 'dependency'
  | 'not-found'
  | 'no-stock'
  | 'quota'
  | 'auth'
  | 'idempotency'
  | 'invalid';

export interface Classified {
  cls: ErrorClass;
  code: string;
  status?: number;
  message: string;
  requestId?: string;
  /** From `x-acs-retry-after`, when the server said how long to wait. */
  retryAfterMs?: number;
}

const THROTTLED = /^(Throttling|Throttling\.User|Throttling\.Api|Rejected\.Throttling)$/;
const TRANSIENT = /^(ServiceUnavailable|InternalError|UnknownError|SystemBusy|ServiceBusy)$/;
const BUSY =
  /^(OperationConflict|Operation\.Conflict|InvalidOperation\.Conflict|TaskConflict|IncorrectInstanceStatus(\..+)?|IncorrectVSwitchStatus|IncorrectVpcStatus|IncorrectStatus(\..+)?|LastTokenProcessing|OperationFailed\.LastTokenProcessing|OperationFailed\.IdempotentTokenProcessing|IdempotenceProcessing)$/;
const DEPENDENCY = /^DependencyViolation(\..+)?$/;
const NOT_FOUND = /NotFound|^Forbidden\.InstanceNotFound$|^Forbidden\.VpcNotFound$/i;
const NO_STOCK =
  /^(OperationDenied\.NoStock|Zone\.NotOnSale|Zone\.NotOpen|InvalidInstanceType\.ZoneNotSupported|InvalidInstanceType\.NotSupported|ResourceNotAvailable|InvalidVpcZone\.NotSupported|OperationDenied\.ZoneNotAllowed|OperationDenied\.ZoneSystemCategoryNotMatch|OperationDenied\.CloudSSDNotSupported)$/;
const QUOTA = /^QuotaExceed(\..+)?$|^QuotaExceeded/;
const AUTH = /^(InvalidAccessKeyId(\..+)?|SignatureDoesNotMatch|IncompleteSignature|SignatureNonceUsed|InvalidCredentials|Forbidden(\..+)?|NoPermission)$/;
const TRANSPORT = /^(ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|ENETUNREACH|EHOSTUNREACH|ECONNABORTED|UND_ERR_SOCKET)$/;

/** Reads what the SDK threw: `ClientError`/`ServerError`/`ThrottlingError` with a code, or a timeout or socket error. */
export function classify(err: unknown): Classified {
  const e = err as { name?: string; code?: string; statusCode?: number; message?: string; requestId?: string; retryAfter?: number; data?: { Message?: string } };
  const code = String(e?.code ?? e?.name ?? 'Error');
  const status = typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  const message = String(e?.data?.Message ?? e?.message ?? err);
  const base = { code, message, ...(status ? { status } : {}), ...(e?.requestId ? { requestId: e.requestId } : {}) };
  const retryAfterMs = typeof e?.retryAfter === 'number' && e.retryAfter > 0 ? e.retryAfter : undefined;
  if (e?.name === 'RequestTimeoutError' || /ReadTimeout|ConnectTimeout|socket hang up/i.test(message) || TRANSPORT.test(code)) {
    return { cls: 'transient', ...base, code: e?.name === 'RequestTimeoutError' ? 'RequestTimeout' : code };
  }
  if (THROTTLED.test(code) || e?.name === 'ThrottlingError') return { cls: 'throttled', ...base, ...(retryAfterMs ? { retryAfterMs } : {}) };
  if (TRANSIENT.test(code) || (status !== undefined && status >= 500)) return { cls: 'transient', ...base, ...(retryAfterMs ? { retryAfterMs } : {}) };
  if (code === 'IdempotentParameterMismatch') return { cls: 'idempotency', ...base };
  if (DEPENDENCY.test(code)) return { cls: 'dependency', ...base };
  if (BUSY.test(code)) return { cls: 'busy', ...base };
  if (NO_STOCK.test(code)) return { cls: 'no-stock', ...base };
  if (QUOTA.test(code)) return { cls: 'quota', ...base };
  if (AUTH.test(code)) return { cls: 'auth', ...base };
  if (NOT_FOUND.test(code) || status === 404) return { cls: 'not-found', ...base };
  return { cls: 'invalid', ...base };
}

/** Whether a call may simply be made again (the same ClientToken, for creates). */
export const retriedAlways = (c: Classified) => c.cls === 'throttled' || c.cls === 'transient' || c.cls === 'busy';

const HINTS: Partial<Record<ErrorClass, string>> = {
  'no-stock': 'the zone has no capacity for this instance type now: choose another instanceType or zoneId in the Clusterfile, or try again later',
  quota: 'the account has reached a quota: raise it in the Aliyun Quota Center, or ask for fewer or smaller instances',
  auth: 'check the credentials: ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, ~/.aliyun/config.json or the instance RAM role, and that the clock of this machine is right',
  idempotency: 'a create was retried with other settings under the same request token: run the command again to start a new request',
  invalid: 'check the cloud settings in the Clusterfile (spec.cloud and the host groups) against what this region offers',
  throttled: 'the API kept throttling this account: wait a minute and run the command again, or lower spec.cloud.maxConcurrentCalls',
  transient: 'the API did not answer: check spec.cloud.endpoint and the network, then run the command again (nothing is made twice)',
  busy: 'the resource stayed busy: run the command again in a moment (nothing is made twice)',
  dependency: 'something still uses the resource: run the command again once the instances are gone',
};

/** An Aliyun API call that failed for good, or that kept failing until its deadline. */
export class AliyunApiError extends CiError {
  readonly classified: Classified;
  readonly action: string;
  constructor(what: string, action: string, c: Classified) {
    const id = c.requestId ? ` (request ${c.requestId})` : '';
    super(`ALIYUN_${c.cls.toUpperCase().replace(/-/g, '_')}`, `${what}: ${action} failed with ${c.code}${c.status ? ` (HTTP ${c.status})` : ''}: ${firstLine(c.message)}${id}`, {
      source: c.cls === 'invalid' || c.cls === 'no-stock' || c.cls === 'quota' ? 'user' : 'external',
      hint: HINTS[c.cls],
    });
    this.classified = c;
    this.action = action;
  }
}

function firstLine(s: string): string {
  // The SDK's message repeats the code and adds the request id; keep the server's own words, one line.
  const line = s.split('\n')[0];
  return line.replace(/^[A-Za-z.]+: code: \d+, /, '').replace(/ request id: [A-F0-9-]+.*$/i, '').slice(0, 400);
}
