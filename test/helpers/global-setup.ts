import { execFileSync } from 'node:child_process';

/**
 * CLI tests run the compiled `ci`; compile once before any test file runs (incremental, so cheap when fresh).
 * Type errors fail the run in CI; locally tsc still emits, so unrelated work in progress does not block a test.
 */
export default function setup(): void {
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
  } catch (err) {
    if (process.env.CI) throw err;
  }
}
