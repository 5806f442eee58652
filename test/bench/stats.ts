/** Timing helpers: wall-clock figures, reported as median of several runs so one noisy run does not skew them. */
import { performance } from 'node:perf_hooks';

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  runs: number;
}

export const round = (ms: number, digits = 1): number => Number(ms.toFixed(digits));

export function summarize(samples: number[]): Timing {
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { medianMs: round(median), minMs: round(s[0]), maxMs: round(s[s.length - 1]), runs: s.length };
}

/** Runs fn `runs` times; returns the timing and the last result (so the caller can report counts from it). */
export function timeSync<T>(runs: number, fn: () => T): { timing: Timing; result: T } {
  const samples: number[] = [];
  let result!: T;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    result = fn();
    samples.push(performance.now() - t0);
  }
  return { timing: summarize(samples), result };
}

export async function timeOnce<T>(fn: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const t0 = performance.now();
  const result = await fn();
  return { ms: round(performance.now() - t0), result };
}
