import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Tests that build real hosts share one machine's network namespaces: keep files serial.
    fileParallelism: false,
    pool: 'forks',
  },
});
