/** Parsing of numeric flags shared by several commands. */
import { UsageError } from '../kernel/errors.js';

export function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a whole number of at least 1, not "${v}"`);
  return n;
}

/** `--refresh` (alone or `=true`: names, sizes and markers), `--refresh=deep` (also re-hash layers), `--refresh=false`. */
export function refreshMode(v: string | boolean | undefined): 'shallow' | 'deep' | 'off' {
  if (v === undefined || v === true || v === 'true' || v === 'shallow') return 'shallow';
  if (v === false || v === 'false' || v === 'off') return 'off';
  if (v === 'deep') return 'deep';
  throw new UsageError(`--refresh takes true, false or deep, not "${v}"`, 'plain --refresh (the default) asks each host for names and sizes; deep also re-hashes every layer file');
}
