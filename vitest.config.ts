import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    setupFiles: ['test/helpers/test-home.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Two files at a time: most of an end-to-end test is waiting on hosts, and clusters on one machine must not
    // disturb each other anyway (each lab claims its own subnet and bridge under a lock, each test has its own
    // CI_HOME, and what a test checks is left behind is its own labs' footprint).
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
    pool: 'forks',
  },
});
