/** Facts about the machine a figure was measured on: without them a timing cannot be compared with another. */
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
