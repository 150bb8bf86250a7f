import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Forks, not threads: native addons such as uWebSockets.js cannot always be loaded into a
    // worker thread, and a process per worker keeps PGlite's WASM heap out of its neighbours'.
    pool: 'forks',
    fileParallelism: true,
    // CI machines have 2 cores; more workers would only fight over them and trip timeouts.
    maxWorkers: 2,
    minWorkers: 1,
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 30_000,
    // beforeAll hooks start PGlite (~4 s) or create databases on a cold server.
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
