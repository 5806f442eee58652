/**
 * Runs a plan's actions as a graph: an action starts once all its deps succeeded, up to `parallelism` at once
 * (relayed layer sends up to `transfers`, apart from the rest).
 * When an action fails, only what depends on it is skipped; independent hosts go on. The state is written by one
 * writer, each write taking every result recorded since the last: a finished action frees its slot at once, and its
 * dependents start only once a write holding its result is done. So every dependency is durable before its
 * dependents start (an apply killed at any moment resumes where it stopped), and the number of writes is bounded by
 * the apply's length and its depth, not by its number of actions (each write holds the whole state).
 */
import { HostUnreachableError, TransientError } from '../kernel/errors.js';
import { retry } from '../kernel/retry.js';
import type { Action } from '../../plans/actions.js';
import type { StateBackend } from '../../state/backend.js';
import type { ClusterState } from '../../state/model.js';
import { recordStart, recordSuccess, type ActionResult } from './record.js';
import { runAction, type RunContext } from './run-action.js';

export interface ExecuteOptions {
  parallelism: number;
  /**
   * Layer sends under way at once when hosts pass layers on to each other (a relay), counted apart from
   * `parallelism`: such a send costs this machine one waiting command, the relay itself bounds what leaves this
   * machine, and hosts form one chain only when they receive together (under `parallelism` alone, more hosts than it
   * would receive in rounds). Default: the larger of `parallelism` and DEFAULT_TRANSFERS.
   */
  transfers?: number;
  backend: StateBackend;
  /** Stops scheduling new actions (SIGINT); running ones finish and are recorded. */
  signal?: AbortSignal;
  /** Attempts per action for transient failures (connection lost, timeouts). */
  attempts?: number;
  retryBaseMs?: number;
  /** What performs one action; the SSH-backed runner unless a test drives the scheduling alone. */
  run?: (ctx: RunContext, action: Action) => Promise<ActionResult>;
}

export interface Failure {
  action: Action;
  error: Error;
}

export interface ExecuteResult {
  completed: Action[];
  failed: Failure[];
  skipped: Action[];
  interrupted: boolean;
  state: ClusterState;
  bytesSent: Map<string, number>;
  /** Layer bytes that left this machine (the rest were passed between hosts). */
  uplinkBytes: number;
}

/** Steps under way at once unless told otherwise (`--parallelism`). */
export const DEFAULT_PARALLELISM = 10;

/** Relayed layer sends under way at once unless told otherwise (`ci apply --transfers`). */
export const DEFAULT_TRANSFERS = 64;

const isTransient = (err: unknown) => err instanceof TransientError || err instanceof HostUnreachableError;

export async function execute(ctx: RunContext, opts: ExecuteOptions): Promise<ExecuteResult> {
  const actions = ctx.plan.actions;
  const byId = new Map(actions.map((a) => [a.id, a]));
  const status = new Map<string, 'pending' | 'running' | 'done' | 'failed' | 'skipped'>(actions.map((a) => [a.id, 'pending']));
  // Counts of unfinished deps and reverse edges: each completion touches only its dependents, so large plans
  // (thousands of hosts) schedule in linear time.
  const waitingOn = new Map<string, number>();
  const dependents = new Map<string, Action[]>();
  for (const a of actions) {
    const deps = a.deps.filter((d) => byId.has(d));
    waitingOn.set(a.id, deps.length);
    for (const d of deps) {
      const list = dependents.get(d);
      if (list) list.push(a);
      else dependents.set(d, [a]);
    }
  }
  // Relayed sends wait apart, under their own cap, so neither kind holds the other back.
  const relayed = (a: Action) => a.kind === 'send-layers' && ctx.relay !== undefined;
  const ready = new Queue<Action>();
  const readySends = new Queue<Action>();
  const release = (a: Action) => {
    for (const next of dependents.get(a.id) ?? []) {
      const left = waitingOn.get(next.id)! - 1;
      waitingOn.set(next.id, left);
      if (left === 0) enqueue(next);
    }
  };
  // A gate only waits: once ready its deps are durable, so what waits for it may be ready at once. It is no step of
  // the plan a user sees, so it is neither reported nor counted.
  const enqueue = (a: Action): void => {
    if (a.kind === 'gate') {
      if (status.get(a.id) !== 'pending' || opts.signal?.aborted) return;
      status.set(a.id, 'done');
      release(a);
    } else (relayed(a) ? readySends : ready).push(a);
  };
  for (const a of actions) if (waitingOn.get(a.id) === 0) enqueue(a);
  const completed: Action[] = [];
  const failed: Failure[] = [];
  const skipped: Action[] = [];
  const parallelism = Math.max(1, opts.parallelism);
  const transfers = Math.max(1, opts.transfers ?? Math.max(parallelism, DEFAULT_TRANSFERS));
  let writing: Promise<void> = Promise.resolve();
  let nextWrite: Promise<void> | undefined;
  let writeError: unknown;

  // Resolves once the state on disk includes every change recorded before the call. Calls made while a write is
  // waiting to start share it, so a burst of completions costs one write, not one each.
  const save = (): Promise<void> => {
    if (nextWrite) return nextWrite;
    const previous = writing;
    const p = (async () => {
      await previous;
      nextWrite = undefined;
      try {
        // Not copied: a backend encodes the state in one synchronous step (StateBackend.write), so the write holds
        // one moment of it while results go on being recorded. A copy cost more than the write at 50,000 hosts.
        const written = await opts.backend.write(ctx.state);
        ctx.state.serial = written.serial;
      } catch (err) {
        writeError ??= err;
      }
    })();
    nextWrite = p;
    writing = p;
    return p;
  };

  // A provider's data written before it acts (a ClientToken before a create) is durable before the call is made.
  ctx.checkpoint ??= async (actionId, data) => {
    ctx.state.pending = { ...ctx.state.pending, [actionId]: data };
    await save();
    if (writeError) throw writeError;
  };

  const skipDependents = (id: string, because: string) => {
    for (const a of dependents.get(id) ?? []) {
      if (status.get(a.id) !== 'pending') continue;
      status.set(a.id, 'skipped');
      if (a.kind !== 'gate') {
        skipped.push(a);
        ctx.reporter.event({ type: 'action-skipped', action: a, because });
      }
      skipDependents(a.id, because);
    }
  };

  // Steps whose results may change an address drop the member lists hooks share (hook-env.ts).
  ctx.envCache = {};
  const changesAddresses = (a: Action, result: ActionResult) =>
    a.kind === 'create-host' || a.kind === 'remove-files' || a.kind === 'delete-host' || result.facts?.ip !== undefined;

  await new Promise<void>((finish) => {
    let running = 0;
    let sending = 0;
    // Completions waiting for the write that makes them durable: their dependents are released after it.
    let awaitingWrite = 0;
    const start = (queue: Queue<Action>, isSend: boolean) => {
      const a = queue.shift()!;
      if (status.get(a.id) !== 'pending') return;
      status.set(a.id, 'running');
      if (isSend) sending++;
      else running++;
      void runOne(a).then(() => {
        if (isSend) sending--;
        else running--;
        pump();
      });
    };
    const pump = () => {
      // Started only when a slot is free, so an interrupt never leaves queued work to start later.
      const go = () => !opts.signal?.aborted && !writeError;
      while (sending < transfers && readySends.size > 0 && go()) start(readySends, true);
      while (running < parallelism && ready.size > 0 && go()) start(ready, false);
      if (running === 0 && sending === 0 && awaitingWrite === 0) finish();
    };

    // Called once the write holding `a`'s result is done: only now may what depends on it start.
    const durable = (a: Action, started: number) => {
      status.set(a.id, 'done');
      completed.push(a);
      ctx.reporter.event({ type: 'action-done', action: a, ms: Date.now() - started });
      release(a);
    };

    const runOne = async (a: Action) => {
      const started = Date.now();
      recordStart(ctx.state, a);
      ctx.reporter.event({ type: 'action-start', action: a });
      try {
        const run = opts.run ?? runAction;
        const result = await retry(() => run(ctx, a), {
          attempts: opts.attempts ?? 3,
          baseMs: opts.retryBaseMs ?? 500,
          retryable: isTransient,
          onRetry: (error, attempt, delayMs) => {
            if (a.host) void ctx.connections.drop(a.host);
            ctx.reporter.event({ type: 'action-retry', action: a, attempt, delayMs, error: error as Error });
          },
        });
        recordSuccess(ctx.state, ctx.desired, a, result, ctx.plan.image?.ref);
        if (changesAddresses(a, result)) ctx.envCache = {};
        // The slot is free now; the dependents wait for the write (shared with every result recorded meanwhile).
        awaitingWrite++;
        void save().then(() => {
          awaitingWrite--;
          durable(a, started);
          pump();
        });
      } catch (err) {
        status.set(a.id, 'failed');
        failed.push({ action: a, error: err as Error });
        ctx.reporter.event({ type: 'action-failed', action: a, error: err as Error });
        // A recorded start (a host now leaving) must survive the failure too: written with the next write, which
        // the apply waits for before it returns. Skipping the dependents needs nothing durable.
        void save();
        skipDependents(a.id, `${a.id} failed`);
      }
    };
    pump();
  });
  await writing;
  if (writeError) throw writeError;
  const interrupted = !!opts.signal?.aborted && actions.some((a) => status.get(a.id) === 'pending');
  if (interrupted) ctx.reporter.event({ type: 'interrupted' });
  return { completed, failed, skipped, interrupted, state: ctx.state, bytesSent: ctx.bytesSent, uplinkBytes: ctx.uplink.bytes };
}

/** First in, first out; taking the first is O(1) (Array#shift copies a long array, and 50,000 hosts make one). */
class Queue<T> {
  private head = 0;

  private items: T[] = [];

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    // Taken items are dropped once they are half the array, so memory stays bounded by what waits.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}
