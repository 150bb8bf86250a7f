/**
 * One cold start of the graph, in its own process (started by graph.ts, not by hand): opens the
 * benchmark's database and a fresh in-memory DuckDB, then times loading the big tenant from the
 * snapshots plus the log's tail (BENCH_GRAPH_COLD_MODE=snapshot) or from the whole log (replay),
 * and the first queries after it. A process of its own so that its memory is the load's alone.
 * Prints one JSON line `{"graphCold": ColdResult}` on stdout.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.js';
import { GraphSnapshotter, GraphStore, createSnapshotStore, type GraphSnapshotRestorer } from '../src/graph/index.js';
import { createLogger } from '../src/obs/index.js';
import { openDb } from '../src/store/index.js';
import { foreignShare, snapshot } from './cpu.js';
import { COLD_ENV, duckdbBytes, memorySample as memory, toMiB, type ColdResult } from './graph-report.js';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (graph-cold.ts is started by graph.ts)`);
  return value;
}

async function main(): Promise<ColdResult> {
  const mode = required(COLD_ENV.mode) === 'snapshot' ? 'snapshot' : 'replay';
  const tenantId = required(COLD_ENV.tenant);
  const ctx = { tenantId };
  const query = { id: required(COLD_ENV.nodeId), depth: 1, limit: 1000 };
  const databaseUrl = process.env[COLD_ENV.databaseUrl];
  const database = process.env[COLD_ENV.databaseName];
  const config = loadConfig({
    AETERNA_DATA_DIR: required(COLD_ENV.dataDir),
    AETERNA_JWT_SECRET: randomBytes(32).toString('hex'),
    AETERNA_GRAPH_DUCKDB_PATH: ':memory:',
    AETERNA_SNAPSHOT_DIR: required(COLD_ENV.snapshotDir),
    AETERNA_LOG_LEVEL: 'warn',
    ...(databaseUrl ? { AETERNA_DATABASE_URL: databaseUrl, AETERNA_DATABASE_POOL_SIZE: '4' } : {}),
  });
  const log = createLogger('warn', 'graph-cold');
  const before = memory('cold process before opening');
  const cpuBefore = snapshot([process.pid], database);
  const cpuUsageBefore = process.cpuUsage();

  const opened = performance.now();
  const db = await openDb(config.database);
  let restoreMs: number | undefined;
  let restorer: GraphSnapshotRestorer | undefined;
  const tmpDir = path.join(os.tmpdir(), `aeterna-bench-cold-${process.pid}`);
  if (mode === 'snapshot') {
    const snapshotter = new GraphSnapshotter({ store: createSnapshotStore(config.graph.snapshots), tmpDir, log });
    restorer = {
      async restore(conn, tenant) {
        const started = performance.now();
        try {
          return await snapshotter.restore(conn, tenant);
        } finally {
          restoreMs = performance.now() - started;
        }
      },
    };
  }
  const store = await GraphStore.open({ db, config: config.graph, log, ...(restorer ? { snapshots: restorer } : {}) });
  const openMs = performance.now() - opened;
  try {
    // The tenant's load (snapshot + tail, or the whole log) happens on its first use; sync is that
    // use without a query, so the load and the first query on the loaded tenant are timed apart.
    const loading = performance.now();
    const { seq } = await store.sync(tenantId);
    const loadMs = performance.now() - loading;
    const first = performance.now();
    await store.neighbors(ctx, query);
    const firstQueryMs = performance.now() - first;
    const second = performance.now();
    await store.neighbors(ctx, query);
    const secondQueryMs = performance.now() - second;
    const duckdb = await duckdbBytes(store, tenantId);
    const cpu = process.cpuUsage(cpuUsageBefore);
    const foreignCpu = foreignShare(cpuBefore, snapshot([process.pid], database));
    return {
      mode,
      ok: true,
      openMs,
      loadMs,
      firstQueryMs,
      ...(restoreMs === undefined ? {} : { restoreMs }),
      secondQueryMs,
      seq,
      expectedSeq: Number(required(COLD_ENV.expectedSeq)),
      before,
      after: memory('cold process after its first queries', duckdb),
      maxRssMiB: toMiB(process.resourceUsage().maxRSS * 1024),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      ...(foreignCpu === undefined ? {} : { foreignCpu }),
    };
  } finally {
    await store.close();
    await db.close();
    // The snapshotter empties its scratch folders but leaves their parent.
    rmSync(tmpDir, { recursive: true, force: true });
  }
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify({ graphCold: result })}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`graph-cold: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
