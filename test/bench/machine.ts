/** Facts about the machine a figure was measured on: without them a timing cannot be compared with another. */
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineFacts {
  date: string;
  node: string;
  platform: string;
  kernel: string;
  arch: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  /** 1-minute load average when the run started: a busy shared machine explains slow figures. */
  loadAverage1m: number;
  root: boolean;
}

export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: os.platform(),
    kernel: os.release(),
    arch: os.arch(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    loadAverage1m: Number(os.loadavg()[0].toFixed(2)),
    root: typeof process.getuid === 'function' && process.getuid() === 0,
  };
}

/** This machine's CPU counters since boot (/proc/stat's first line: user, nice, system, idle, iowait, irq, softirq, steal), in ticks. */
export function cpuTimes(): number[] {
  return readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
}

/** The share of this machine's CPU time that was busy between two readings of cpuTimes. */
export function busyBetween(a: number[], b: number[]): number {
  const d = b.map((v, i) => v - a[i]);
  const total = d.reduce((x, y) => x + y, 0);
  const idle = d[3] + d[4];
  return total > 0 ? Number(((total - idle) / total).toFixed(2)) : 0;
}

/** CPU milliseconds the whole machine (every core, every process) spent busy between two readings (USER_HZ is 100). */
export function busyMsBetween(a: number[], b: number[]): number {
  const d = b.map((v, i) => v - a[i]);
  return (d.reduce((x, y) => x + y, 0) - d[3] - d[4]) * 10;
}
