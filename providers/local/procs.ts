/**
 * Processes of lab hosts outlive the process that started them, so they are identified by PID plus the
 * kernel's start time: after a reboot or PID reuse, a recorded PID never kills a stranger.
 */
import { readFileSync, readdirSync } from 'node:fs';

export interface ProcRef {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot). */
  startTime: string;
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest; // rest[0] is field 3 (state)
  } catch {
    return undefined;
  }
}

export function procRef(pid: number): ProcRef | undefined {
  const f = statFields(pid);
  return f ? { pid, startTime: f[19] } : undefined;
}

/** True if the recorded process still runs (not a zombie, same start time). */
export function isAlive(ref: ProcRef | undefined): boolean {
  if (!ref) return false;
  const f = statFields(ref.pid);
  return !!f && f[0] !== 'Z' && f[0] !== 'X' && f[19] === ref.startTime;
}

export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && Number(f[1]) === pid) out.push(Number(name));
  }
  return out;
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (bounded) until the process has exited; returns whether it did. */
export async function waitExit(ref: ProcRef, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(ref)) return true;
    await sleep(50);
  }
  return !isAlive(ref);
}

/** Polite stop with a deadline, then SIGKILL. */
export async function stopProcess(ref: ProcRef | undefined, graceMs: number, first: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!ref || !isAlive(ref)) return;
  signal(ref.pid, first);
  if (await waitExit(ref, graceMs)) return;
  signal(ref.pid, 'SIGKILL');
  await waitExit(ref, 5000);
}
