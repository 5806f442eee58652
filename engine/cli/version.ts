/** The product version, read from the package.json this code ships in (the same file npm installs). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InternalError } from '../kernel/errors.js';

let cached: string | undefined;

export function productVersion(): string {
  if (cached) return cached;
  // The compiled CLI lives one directory deeper (dist/) than the sources: walk up to the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = readPackage(join(dir, 'package.json'));
    if (pkg?.name === 'cloudimage' && typeof pkg.version === 'string') return (cached = pkg.version);
    const parent = dirname(dir);
    if (parent === dir) throw new InternalError('cannot find the package.json of cloudimage to read its version');
    dir = parent;
  }
}

function readPackage(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}
