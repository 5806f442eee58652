/**
 * Per-blob progress for push and pull, for a terminal: one line per blob, redrawn in place at most ten
 * times a second. The CLI passes its stderr and only uses this when stderr is a TTY.
 */
import { shortDigest } from '../kernel/digest.js';
import type { ProgressEvent } from './transfer.js';

const WORDS: Record<ProgressEvent['state'], string> = {
  exists: 'already in registry',
  mounted: 'mounted',
  sending: 'pushing',
  sent: 'pushed',
  receiving: 'pulling',
  received: 'pulled',
  present: 'already in store',
};

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export class ProgressView {
  private readonly lines = new Map<string, ProgressEvent>();
  private drawn = 0;
  private last = 0;

  constructor(private readonly out: NodeJS.WriteStream) {}

  readonly update = (e: ProgressEvent): void => {
    this.lines.set(e.digest, e);
    const now = Date.now();
    const final = e.state !== 'sending' && e.state !== 'receiving';
    if (final || now - this.last > 100) {
      this.last = now;
      this.draw();
    }
  };

  private draw(): void {
    let text = this.drawn ? `\x1b[${this.drawn}A` : '';
    for (const e of this.lines.values()) {
      const moving = e.state === 'sending' || e.state === 'receiving';
      const amount = moving ? ` ${formatBytes(e.bytes)} / ${formatBytes(e.total)}` : ` ${formatBytes(e.total)}`;
      text += `\x1b[2K${shortDigest(e.digest)} ${e.kind.padEnd(6)} ${WORDS[e.state]}${amount}\n`;
    }
    this.drawn = this.lines.size;
    this.out.write(text);
  }

  finish(): void {
    this.draw();
  }
}
