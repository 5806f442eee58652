/**
 * Local test hosts for tests: a lab in a temp directory that is always destroyed, even when the test fails.
 * Labs need root; off CI a non-root run skips them, on CI (CI=true) that is an error, never a silent skip.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalLab } from '../../providers/local/lab.js';

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** True when lab tests can run here; throws on CI when they cannot. Use with `describe.skipIf(!labsAvailable())`. */
export function labsAvailable(): boolean {
  if (isRoot) return true;
  if (process.env.CI === 'true') throw new Error('local lab tests need root, and CI=true forbids skipping them');
  return false;
}

export interface TestLab {
  lab: LocalLab;
  /** Destroys the lab and deletes its temp directory; safe to call twice. */
  cleanup(): Promise<void>;
}

/** A lab in a fresh directory under `under` (the temp directory unless told). */
export async function openTestLab(prefix = 'ci-lab-', under = tmpdir()): Promise<TestLab> {
  const parent = mkdtempSync(join(under, prefix));
  let lab: LocalLab;
  try {
    lab = await LocalLab.open(join(parent, 'lab'));
  } catch (err) {
    rmSync(parent, { recursive: true, force: true });
    throw err;
  }
  return {
    lab,
    async cleanup() {
      try {
        await lab.destroy();
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    },
  };
}

/** Runs fn with a fresh lab; the lab is destroyed afterwards whatever happens. */
export async function withLab<T>(fn: (lab: LocalLab) => Promise<T>): Promise<T> {
  const t = await openTestLab();
  try {
    return await fn(t.lab);
  } finally {
    await t.cleanup();
  }
}
