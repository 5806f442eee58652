import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Root of everything cloudimage keeps on the operator's machine. */
export function ciHome(env: NodeJS.ProcessEnv = process.env): string {
  const h = env.CI_HOME;
  return h && h.length > 0 ? resolve(h) : join(homedir(), '.cloudimage');
}
