/** Everything the executor reports, as typed events; the CLI decides how they look. Nothing below prints. */
import type { Action } from '../../plans/actions.js';

export type ExecEvent =
  | { type: 'action-start'; action: Action }
  | { type: 'action-done'; action: Action; ms: number; detail?: string }
  | { type: 'action-failed'; action: Action; error: Error }
  | { type: 'action-skipped'; action: Action; because: string }
  | { type: 'action-retry'; action: Action; attempt: number; delayMs: number; error: Error }
  /** A long step is still under way (its output is held until it ends). */
  | { type: 'action-running'; action: Action; ms: number; note: string }
  | { type: 'output'; host: string; stream: 'stdout' | 'stderr'; line: string }
  | { type: 'interrupted' }
  /** Something could not be checked before the plan; the step that needs it checks again. */
  | { type: 'warning'; host?: string; message: string }
  /** What a provider says while it works (waiting for instances, retrying a throttled call). */
  | { type: 'note'; host?: string; message: string };

export interface Reporter {
  event(e: ExecEvent): void;
}

export { describeAction } from '../../plans/render/text.js';
