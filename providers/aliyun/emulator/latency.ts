/**
 * How long the emulated cloud takes. `fast` is for tests (tenths of a second); `realistic` follows what the ECS
 * lifecycle notes suggest (Pending 1-3 s, Starting 5-15 s, sshd a few seconds after Running, networks ready in a
 * second or two). Each resource draws its own durations when it is created, so they survive a restart.
 */
import type { LatencyProfile } from './options.js';

type Range = readonly [number, number];

export interface Timings {
  /** Instance Pending, then Starting (the host must also be up before Running). */
  pending: Range;
  starting: Range;
  /** After Running, sshd does not answer yet for this long (the host's link is down meanwhile). */
  sshdDelay: Range;
  /** From DeleteInstances until the instance is gone and no longer holds its vSwitch and security groups. */
  release: Range;
  /** VPC and vSwitch Pending -> Available. */
  network: Range;
  /** Added to every answer. */
  api: Range;
}

export const TIMINGS: Record<LatencyProfile, Timings> = {
  fast: { pending: [100, 200], starting: [100, 300], sshdDelay: [0, 0], release: [200, 400], network: [100, 300], api: [0, 0] },
  realistic: {
    pending: [1000, 3000],
    starting: [5000, 15_000],
    sshdDelay: [3000, 10_000],
    release: [3000, 8000],
    network: [1000, 2000],
    api: [30, 150],
  },
};

export function draw([min, max]: Range, random: () => number = Math.random): number {
  return Math.round(min + (max - min) * random());
}
