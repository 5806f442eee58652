/**
 * What goes on the wire besides the action fields: API errors (HTTP status, code, message), request IDs, resource IDs
 * and the time formats the APIs use. Answers are JSON with PascalCase keys, lists wrapped twice
 * (`{"Instances":{"Instance":[...]}}`), as the SDK's models expect.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { CiError } from '../../../engine/kernel/errors.js';

/** One answer of the API that is not a success: sent as `{RequestId, HostId, Code, Message, Recommend}`. */
export class ApiError extends CiError {
  constructor(
    readonly status: number,
    /** The API's own error code, e.g. `InvalidInstanceId.NotFound`. */
    readonly apiCode: string,
    message: string,
    /** Extra response headers, e.g. `x-acs-retry-after` on throttling. */
    readonly headers: Record<string, string> = {},
  ) {
    super(`ALIYUN_API_${apiCode.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`, message, { source: status >= 500 ? 'external' : 'user' });
  }
}

/** Uppercase UUID, as every answer carries. */
export const newRequestId = (): string => randomUUID().toUpperCase();

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** `<prefix>-` + 20 lowercase letters and digits: `i-`, `vpc-`, `vsw-`, `sg-`, `eni-`, `vrt-`, `vtb-`, `sgr-`. */
export function newId(prefix: string): string {
  const bytes = randomBytes(20);
  let s = '';
  for (const b of bytes) s += ID_ALPHABET[b % ID_ALPHABET.length];
  return `${prefix}-${s}`;
}

/** ECS instance times: `2024-01-01T10:00Z` (minutes, UTC). */
export function isoMinutes(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16) + 'Z';
}

/** Security group, rule, VPC and vSwitch times: `2024-01-01T10:00:00Z`. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19) + 'Z';
}

export type Body = Record<string, unknown>;

/** The error body the real gateway sends; `Recommend` is the troubleshooting link it would give. */
export function errorBody(err: ApiError, requestId: string, hostId: string, product: string): Body {
  return {
    RequestId: requestId,
    HostId: hostId,
    Code: err.apiCode,
    Message: err.message,
    Recommend: `https://api.aliyun.com/troubleshoot?q=${encodeURIComponent(err.apiCode)}&product=${product}&requestId=${requestId}`,
  };
}
