/**
 * Turns executor events into lines: one line per event with the host as prefix, hook output included, the same
 * text (uncoloured) to the apply's log file. Every line passes through redaction on its way out.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { Chalk, type ChalkInstance } from 'chalk';
import { describeAction, type ExecEvent, type Reporter } from '../executor/events.js';
import type { ExecuteResult } from '../executor/executor.js';
import { CiError } from '../kernel/errors.js';
import type { Released } from '../../providers/contract.js';
import { redact } from '../kernel/redact.js';
import { humanSize } from './format.js';

export class LineReporter implements Reporter {
  private readonly log?: WriteStream;
  private readonly c: ChalkInstance;

  constructor(
    private readonly out: NodeJS.WritableStream,
    opts: { color: boolean; logFile?: string },
  ) {
    this.c = new Chalk({ level: opts.color ? 1 : 0 });
    if (opts.logFile) {
      mkdirSync(dirname(opts.logFile), { recursive: true, mode: 0o700 });
      this.log = createWriteStream(opts.logFile, { flags: 'a', mode: 0o600 });
    }
  }

  private emit(plain: string, coloured = plain): void {
    this.out.write(redact(coloured) + '\n');
    this.log?.write(`${new Date().toISOString()} ${redact(plain)}\n`);
  }

  event(e: ExecEvent): void {
    const c = this.c;
    switch (e.type) {
      case 'action-start': {
        const t = `${prefix(e.action.host)}${describeAction(e.action)}: started`;
        this.emit(t, c.dim(t));
        break;
      }
      case 'action-done': {
        const t = `${prefix(e.action.host)}${describeAction(e.action)}: done in ${(e.ms / 1000).toFixed(1)}s`;
        this.emit(t, c.green(t));
        break;
      }
      case 'action-failed': {
        const t = `${prefix(e.action.host)}${describeAction(e.action)}: FAILED: ${e.error.message}`;
        this.emit(t, c.red(t));
        break;
      }
      case 'action-skipped': {
        const t = `${prefix(e.action.host)}${describeAction(e.action)}: skipped (${e.because})`;
        this.emit(t, c.yellow(t));
        break;
      }
      case 'action-retry': {
        const t = `${prefix(e.action.host)}${describeAction(e.action)}: retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)}s: ${e.error.message}`;
        this.emit(t, c.yellow(t));
        break;
      }
      case 'action-running': {
        const t = `${prefix(e.action.host)}${describeAction(e.action)}: still running after ${Math.round(e.ms / 1000)}s (${e.note})`;
        this.emit(t, c.dim(t));
        break;
      }
      case 'output':
        this.emit(`${prefix(e.host)}${e.line}`, `${c.cyan(prefix(e.host))}${e.line}`);
        break;
      case 'note': {
        const t = `${prefix(e.host)}${e.message}`;
        this.emit(t, c.dim(t));
        break;
      }
      case 'warning': {
        const t = `${prefix(e.host)}warning: ${e.message}`;
        this.emit(t, c.yellow(t));
        break;
      }
      case 'interrupted':
        this.emit('interrupted: no new steps started; the state records what finished. Run the same command again to resume.');
        break;
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.log ? this.log.end(resolve) : resolve()));
  }
}

function prefix(host: string | undefined): string {
  return host ? `[${host}] ` : '[cluster] ';
}

/** The closing summary; failures are repeated here so they are not lost above a wall of output. */
export function renderSummary(r: ExecuteResult, verb: string): string {
  const lines: string[] = [];
  const received = [...r.bytesSent.values()].reduce((a, b) => a + b, 0);
  const relayed = received - r.uplinkBytes;
  const bytes = `layer bytes sent: ${humanSize(r.uplinkBytes)}` + (relayed > 0 ? ` (+${humanSize(relayed)} passed between hosts)` : '');
  const base = `${verb}: ${r.completed.length} done, ${r.failed.length} failed, ${r.skipped.length} skipped; ${bytes}.`;
  if (r.failed.length === 0 && !r.interrupted) return `${verb} complete! ${base.slice(verb.length + 2)}\n`;
  lines.push(base);
  for (const f of r.failed) {
    lines.push(`  failed: ${f.action.host ?? 'cluster'}: ${describeAction(f.action)}: ${f.error.message.split('\n').join('\n    ')}`);
    const hint = f.error instanceof CiError ? f.error.hint : undefined;
    if (hint) lines.push(`    hint: ${hint.split('\n').join('\n    ')}`);
  }
  lines.push('The state records every finished step: fix the cause and run the same command again to resume.');
  return redact(lines.join('\n')) + '\n';
}

/** What went with the cluster's last host: hosts the state did not record, then the rest (bridge, subnet, directory). */
export function renderReleased(r: Released): string {
  const hosts = r.hosts.length > 0 ? [`${r.hosts.length === 1 ? 'host' : 'hosts'} ${r.hosts.join(', ')} (not in state)`] : [];
  return `Removed ${[...hosts, ...r.resources].join(', ')}.\n`;
}
