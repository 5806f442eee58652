/** Keeps the last `cap` bytes of a stream: enough for error reports without unbounded memory. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly cap = 1024 * 1024) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.cap && this.chunks.length > 0) {
      const over = this.size - this.cap;
      const first = this.chunks[0];
      if (first.length <= over) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(over);
        this.size -= over;
      }
      this.truncated = true;
    }
  }

  toString(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** Last lines of command output, for error messages. */
export function tailLines(text: string, n = 20): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}
