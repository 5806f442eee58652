/**
 * Runs a plan's actions as a graph: an action starts once all its deps succeeded, up to `parallelism` at once.
 * When an action fails, only what depends on it is skipped; independent hosts go on. The state is written after
 * every action (one writer, in completion order), so an apply killed at any moment resumes where it stopped.
 */
import pLimit from 'p-limit';
import { TransientError } from '../errors.js';
import { retry } from '../retry.js';
import type { Action } from '../../plans/actions.js';
import type { StateBackend } from '../../state/backend.js';
import type { ClusterState } from '../../state/model.js';
import { HostUnreachableError } from '../errors.js';
import { recordStart, recordSuccess } from './record.js';
import { runAction, type RunContext } from './run-action.js';

export interface ExecuteOptions {
  parallelism: number;
  backend: StateBackend;
  /** Stops scheduling new actions (SIGINT); running ones finish and are recorded. */
  signal?: AbortSignal;
  /** Attempts per action for transient failures (connection lost, timeouts). */
  attempts?: number;
  retryBaseMs?: number;
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
}

const isTransient = (err: unknown) => err instanceof TransientError || err instanceof HostUnreachableError;

export async function execute(ctx: RunContext, opts: ExecuteOptions): Promise<ExecuteResult> {
  const actions = ctx.plan.actions;
  const byId = new Map(actions.map((a) => [a.id, a]));
  const status = new Map<string, 'pending' | 'running' | 'done' | 'failed' | 'skipped'>(actions.map((a) => [a.id, 'pending']));
  const completed: Action[] = [];
  const failed: Failure[] = [];
  const skipped: Action[] = [];
  const limit = pLimit(Math.max(1, opts.parallelism));
  let writes: Promise<void> = Promise.resolve();
  let writeError: unknown;

  const save = () => {
    const snapshot = structuredClone(ctx.state);
    writes = writes.then(async () => {
      try {
        const written = await opts.backend.write(snapshot);
        ctx.state.serial = written.serial;
      } catch (err) {
        writeError ??= err;
      }
    });
    return writes;
  };

  const skipDependents = (id: string, because: string) => {
    for (const a of actions) {
      if (status.get(a.id) === 'pending' && a.deps.includes(id)) {
        status.set(a.id, 'skipped');
        skipped.push(a);
        ctx.reporter.event({ type: 'action-skipped', action: a, because });
        skipDependents(a.id, because);
      }
    }
  };

  await new Promise<void>((finish) => {
    let running = 0;
    const pump = () => {
      for (const a of actions) {
        if (status.get(a.id) !== 'pending') continue;
        if (opts.signal?.aborted || writeError) continue;
        if (!a.deps.every((d) => status.get(d) === 'done' || !byId.has(d))) continue;
        status.set(a.id, 'running');
        running++;
        void limit(() => runOne(a)).then(() => {
          running--;
          pump();
        });
      }
      if (running === 0) finish();
    };

    const runOne = async (a: Action) => {
      const started = Date.now();
      recordStart(ctx.state, a);
      ctx.reporter.event({ type: 'action-start', action: a });
      try {
        const result = await retry(() => runAction(ctx, a), {
          attempts: opts.attempts ?? 3,
          baseMs: opts.retryBaseMs ?? 500,
          retryable: isTransient,
          onRetry: (error, attempt, delayMs) => {
            if (a.host) void ctx.connections.drop(a.host);
            ctx.reporter.event({ type: 'action-retry', action: a, attempt, delayMs, error: error as Error });
          },
        });
        recordSuccess(ctx.state, ctx.desired, a, result);
        await save();
        status.set(a.id, 'done');
        completed.push(a);
        ctx.reporter.event({ type: 'action-done', action: a, ms: Date.now() - started });
      } catch (err) {
        status.set(a.id, 'failed');
        failed.push({ action: a, error: err as Error });
        ctx.reporter.event({ type: 'action-failed', action: a, error: err as Error });
        // A recorded start (a host now leaving) must survive the failure too.
        await save();
        skipDependents(a.id, `${a.id} failed`);
      }
    };
    pump();
  });
  await writes;
  if (writeError) throw writeError;
  const interrupted = !!opts.signal?.aborted && actions.some((a) => status.get(a.id) === 'pending');
  if (interrupted) ctx.reporter.event({ type: 'interrupted' });
  return { completed, failed, skipped, interrupted, state: ctx.state, bytesSent: ctx.bytesSent };
}
