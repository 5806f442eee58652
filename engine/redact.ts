/**
 * Secrets never reach output, logs, plans or state. Values registered here (SSH passwords, key passphrases,
 * registry passwords, access keys) are replaced wherever text leaves the process through our writers.
 */
const secrets = new Set<string>();

export function registerSecret(value: string | undefined | null): void {
  if (value && value.length >= 3) secrets.add(value);
}

export function redact(text: string): string {
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join('******');
  }
  return out;
}

/** For tests. */
export function clearSecrets(): void {
  secrets.clear();
}
