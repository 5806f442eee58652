/** Parsing of numeric flags shared by several commands. */
import { UsageError } from '../kernel/errors.js';

export function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a whole number of at least 1, not "${v}"`);
  return n;
}
