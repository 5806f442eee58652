/**
 * The CLI's standard output and error pass every write through the redaction registry: whatever a command, commander
 * (usage, help) or a library prints, a registered secret leaves this process masked. Writers that already redact
 * (the progress reporter, error reports) cost one more scan.
 */
import { redact } from '../kernel/redact.js';

type Write = NodeJS.WriteStream['write'];

function redacting(write: Write): Write {
  return function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
    let out = chunk;
    if (typeof chunk === 'string') out = redact(chunk);
    else if (chunk instanceof Uint8Array) {
      const text = Buffer.from(chunk).toString('utf8');
      const masked = redact(text);
      // Bytes that are not text (or hold no secret) go out untouched.
      if (masked !== text) out = Buffer.from(masked, 'utf8');
    }
    return (write as (...a: unknown[]) => boolean).call(this, out, ...rest);
  } as Write;
}

let installed = false;

export function redactStandardStreams(): void {
  if (installed) return;
  installed = true;
  for (const stream of [process.stdout, process.stderr]) stream.write = redacting(stream.write.bind(stream));
}
