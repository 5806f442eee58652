/**
 * The one retry helper: exponential backoff with full jitter (sleep = random(0, min(cap, base*2^n))).
 * Every provider and the registry client use it, so back-off behaviour is tuned in one place.
 */
import { TransientError } from './errors.js';

export interface RetryOptions {
  /** Total attempts, including the first. */
  attempts?: number;
  baseMs?: number;
  capMs?: number;
  /** Decides whether an error is worth another try. Default: TransientError only. */
  retryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Adjusts the jittered delay for an error (a server's retry-after, a floor for throttling); default: as computed. */
  delayFor?: (err: unknown, computedMs: number) => number;
  /** Gives up once this much time (ms) has passed since the first attempt, whatever the attempts left. */
  deadlineMs?: number;
  /** Injected for tests; defaults to Math.random and setTimeout. */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  signal?: AbortSignal;
}

export const defaultRetryable = (err: unknown): boolean => err instanceof TransientError;

export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 5;
  const baseMs = opts.baseMs ?? 200;
  const capMs = opts.capMs ?? 10_000;
  const retryable = opts.retryable ?? defaultRetryable;
  const random = opts.random ?? Math.random;
  const sleep = opts.sleep ?? realSleep;
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt + 1 >= attempts || !retryable(err) || opts.signal?.aborted) throw err;
      const computed = backoffDelay(attempt, baseMs, capMs, random);
      const delay = Math.max(0, Math.round(opts.delayFor ? opts.delayFor(err, computed) : computed));
      if (opts.deadlineMs !== undefined && Date.now() - started + delay > opts.deadlineMs) throw err;
      opts.onRetry?.(err, attempt + 1, delay);
      await sleep(delay);
    }
  }
}
