/**
 * Injected failures. Draws come from a seeded generator, a fixed number per call in a fixed order, so the same seed
 * and the same sequence of calls give the same faults.
 */
import { randomInt } from 'node:crypto';
import { errors } from './api-errors.js';
import type { FaultOptions } from './options.js';
import type { ApiError } from './wire.js';

/** mulberry32: small, fast, good enough for shares and jitter; not for anything secret. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const randomSeed = (): number => randomInt(0, 2 ** 31);

export class Faults {
  private readonly random: () => number;
  private readonly timeoutPending: Set<string>;

  constructor(private readonly opts: FaultOptions = {}, seed = opts.seed ?? randomSeed()) {
    this.random = seededRandom(seed);
    this.timeoutPending = new Set(opts.timeoutOnce ?? []);
  }

  /** A fault answer for this call instead of performing it, or undefined. Consumes three draws every call. */
  before(): ApiError | undefined {
    const throttle = this.random();
    const server = this.random();
    const which = this.random();
    const headers: Record<string, string> = this.opts.retryAfterMs !== undefined ? { 'x-acs-retry-after': String(this.opts.retryAfterMs) } : {};
    if (throttle < (this.opts.throttling ?? 0)) return errors.throttling(headers);
    if (server < (this.opts.serverError ?? 0)) return which < 0.5 ? errors.serviceUnavailable(headers) : errors.internalError();
    return undefined;
  }

  /** Whether this RunInstances call finds no stock. One draw per call. */
  noStock(): boolean {
    return this.random() < (this.opts.noStock ?? 0);
  }

  /** True once per listed action: its first call's answer is held back. */
  takeTimeout(action: string): boolean {
    return this.timeoutPending.delete(action);
  }
}
