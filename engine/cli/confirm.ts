/** The approval step shared by apply and destroy: show the plan, then require `yes` on a terminal. */
import { createInterface } from 'node:readline/promises';
import { renderPlanText } from '../../plans/render/text.js';
import type { Plan } from '../../plans/actions.js';
import { UsageError } from '../kernel/errors.js';
import { EXIT } from './exit-codes.js';

export function confirmer(opts: {
  autoApprove?: boolean;
  color: boolean;
  verb: string;
  /** What is shown to be confirmed (default: the plan). */
  render?: (plan: Plan, o: { color: boolean }) => string;
}): (plan: Plan) => Promise<boolean> {
  return async (plan) => {
    process.stdout.write((opts.render ?? renderPlanText)(plan, { color: opts.color }) + '\n');
    if (opts.autoApprove) return true;
    if (!process.stdin.isTTY) {
      throw new UsageError(`no terminal to confirm the ${opts.verb} on`, `review the plan, then run again with --auto-approve`);
    }
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    try {
      const answer = await rl.question(`Do you want to ${opts.verb}? Only 'yes' will be accepted: `);
      return answer.trim() === 'yes';
    } finally {
      rl.close();
    }
  };
}

/** First Ctrl-C: stop starting new steps and let running ones finish and be recorded. Second: leave at once. */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ctl = new AbortController();
  const onSigint = () => {
    if (ctl.signal.aborted) process.exit(EXIT.interrupted);
    process.stderr.write('\ninterrupt: finishing the steps under way (Ctrl-C again to quit at once)\n');
    ctl.abort();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  return {
    signal: ctl.signal,
    dispose: () => {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    },
  };
}
