/**
 * Secrets never reach output, logs, plans or state. Values registered here (SSH passwords, key passphrases,
 * registry passwords, access keys, hook outputs) are replaced wherever text leaves the process through our writers.
 */
const MASK = '******';
const MIN_LENGTH = 3;

const secrets = new Set<string>();
/** Longest first, so a secret that contains a shorter one is masked whole rather than leaving its rest in clear. */
let ordered: string[] = [];

function add(value: string): void {
  if (value.length < MIN_LENGTH || secrets.has(value)) return;
  secrets.add(value);
  ordered = [...secrets].sort((a, b) => b.length - a.length);
}

export function registerSecret(value: string | undefined | null): void {
  if (!value || value.length < MIN_LENGTH) return;
  add(value);
  // The same value as it appears inside JSON text (plans, `--json` output): quotes, backslashes, newlines escaped.
  add(JSON.stringify(value).slice(1, -1));
  // Output is shown line by line, so each line of a multi-line secret (a private key) must be masked on its own.
  if (value.includes('\n')) {
    for (const line of value.split(/\r?\n/)) {
      const t = line.trim();
      if (t.length >= 16) add(t);
    }
  }
}

export function redact(text: string): string {
  let out = text;
  for (const s of ordered) {
    if (out.includes(s)) out = out.split(s).join(MASK);
  }
  return out;
}

/** For tests. */
export function clearSecrets(): void {
  secrets.clear();
  ordered = [];
}
