/**
 * Every test file gets a CI_HOME of its own unless it sets one: code that falls back to the default home (a state
 * backend's keys, say) must never write into the home of the user who runs the tests. Commands a test spawns
 * inherit it; the demo test runs its commands without it, on purpose, as a user does.
 */
import { afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

if (process.env.CI_HOME === undefined) {
  const home = mkdtempSync(join(tmpdir(), 'ci-test-home-'));
  process.env.CI_HOME = home;
  afterAll(() => {
    if (process.env.CI_HOME === home) delete process.env.CI_HOME;
    rmSync(home, { recursive: true, force: true });
  });
}
