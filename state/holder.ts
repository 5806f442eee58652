/** Who takes a state lock: the facts every backend records so a second user sees who to ask, and where. */
import { hostname, userInfo } from 'node:os';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { LockInfo } from './backend.js';

let cachedMachine: string | null | undefined;

/** This machine's id (systemd's /etc/machine-id), or undefined where there is none. */
export function machineId(): string | undefined {
  if (cachedMachine === undefined) {
    try {
      cachedMachine = readFileSync('/etc/machine-id', 'utf8').trim() || null;
    } catch {
      cachedMachine = null;
    }
  }
  return cachedMachine ?? undefined;
}

export function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? `uid ${process.getuid?.() ?? '?'}`;
  }
}

/** A new lock's holder: this process, now. */
export function newHolder(operation: string, extra: Partial<LockInfo> = {}): LockInfo {
  const machine = machineId();
  return {
    id: randomUUID(),
    user: safeUser(),
    host: hostname(),
    pid: process.pid,
    operation,
    time: new Date().toISOString(),
    ...(machine ? { machine } : {}),
    ...extra,
  };
}

/** A lock whose text cannot be parsed is still a lock: it is reported, never broken. */
export const UNREADABLE_LOCK: LockInfo = { id: '(unreadable)', user: '?', host: '?', pid: 0, operation: '?', time: '?' };
