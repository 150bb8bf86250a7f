import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { DuckDBConnection } from '@duckdb/node-api';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphStore, type GraphSnapshotRestorer, type GraphWriteContext } from '../../src/graph/index.js';
import type { Logger } from '../../src/obs/index.js';
import { backends, openTestCore, rejectionOf, type TestCore } from '../support/backends.js';

const actor = { userId: 'alice' };

/** A logger whose lines the test can read. */
function capturingLogger(): { log: Logger; lines: () => { level: number; msg: string }[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines: () => lines.map((l) => JSON.parse(l) as { level: number; msg: string }) };
}

/** Stands in for the snapshot loader: plants one row and claims the snapshot reached `seq`. */
function fakeRestorer(result: { seq: number; purgedSeq: number } | Error): GraphSnapshotRestorer & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async restore(conn: DuckDBConnection, tenantId: string) {
      calls.push(tenantId);
      if (result instanceof Error) throw result;
      await conn.run(
        `INSERT INTO graph_nodes VALUES ($1, 'snap', 'From snapshot', 'k', '{}', NULL, now(), NULL, now(), NULL, $2)`,
        [tenantId, result.seq],
      );
      return result;
    },
  };
}

describe.each(backends())('GraphStore recovery on %s', (backend) => {
  let t: TestCore;
  let dir: string;
  let n = 0;
  const tenant = (): GraphWriteContext => ({ tenantId: `${backend}-rec${++n}`, actor });
  const open = (opts: { file?: string; snapshots?: GraphSnapshotRestorer; log?: Logger; core?: TestCore } = {}) =>
    GraphStore.open({
      db: (opts.core ?? t).core.db,
      config: { ...t.config.graph, duckdbPath: opts.file ?? ':memory:' },
      log: opts.log ?? capturingLogger().log,
      ...(opts.snapshots ? { snapshots: opts.snapshots } : {}),
    });

  beforeAll(async () => {
    t = await openTestCore(backend);
    dir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-graph-'));
  });
  afterAll(async () => {
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Three batches: a, b, c. */
  async function threeBatches(ctx: GraphWriteContext): Promise<void> {
    const writer = await open();
    for (const id of ['a', 'b', 'c']) await writer.upsertNode(ctx, { id, label: id.toUpperCase(), kind: 'k' });
    await writer.close();
  }

  it('loads a tenant from its snapshot once, then replays only the tail after it', async () => {
    const ctx = tenant();
    await threeBatches(ctx);
    const restorer = fakeRestorer({ seq: 2, purgedSeq: 1 });
    const store = await open({ snapshots: restorer });
    expect((await store.node(ctx, 'snap')).node.label).toBe('From snapshot');
    expect((await store.node(ctx, 'c')).node.label).toBe('C');
    // Batches 1 and 2 are the snapshot's: not replayed.
    expect(await rejectionOf(store.node(ctx, 'a'))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await store.sync(ctx.tenantId)).toEqual({ seq: 3, purgedSeq: 1 });
    await store.upsertNode(ctx, { id: 'd', label: 'D', kind: 'k' });
    expect(restorer.calls).toEqual([ctx.tenantId]);
    await store.close();
  });

  it('refuses a snapshot ahead of the log and rebuilds from the log, saying so', async () => {
    const ctx = tenant();
    await threeBatches(ctx);
    const logger = capturingLogger();
    const store = await open({ snapshots: fakeRestorer({ seq: 50, purgedSeq: 0 }), log: logger.log });
    expect((await store.node(ctx, 'a')).node.label).toBe('A');
    expect(await rejectionOf(store.node(ctx, 'snap'))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await store.sync(ctx.tenantId)).toEqual({ seq: 3, purgedSeq: 0 });
    expect(logger.lines().some((l) => l.level === 40 && l.msg.includes('at seq 50 but the log ends at 3'))).toBe(true);
    await store.close();
  });

  it('replays the whole log when the restorer fails', async () => {
    const ctx = tenant();
    await threeBatches(ctx);
    const logger = capturingLogger();
    const store = await open({ snapshots: fakeRestorer(new Error('bucket unreachable')), log: logger.log });
    expect((await store.neighbors(ctx, { id: 'a' })).node.id).toBe('a');
    expect(await store.sync(ctx.tenantId)).toEqual({ seq: 3, purgedSeq: 0 });
    expect(logger.lines().some((l) => l.level === 50 && l.msg.includes('restore failed'))).toBe(true);
    await store.close();
  });

  it('keeps its projection in a DuckDB file across restarts, and rebuilds it when the database was reset', async () => {
    const ctx = tenant();
    const file = path.join(dir, `${backend}-graph.duckdb`);
    const first = await open({ file });
    await first.upsertNode(ctx, { id: 'old', label: 'Old', kind: 'k' });
    await first.upsertNode(ctx, { id: 'older', label: 'Older', kind: 'k' });
    await first.close();

    const restorer = fakeRestorer({ seq: 0, purgedSeq: 0 });
    const again = await open({ file, snapshots: restorer });
    expect((await again.node(ctx, 'old')).node.label).toBe('Old');
    expect(restorer.calls).toEqual([]);
    await again.close();

    // A new, empty database under the same file: the projection is ahead of the log.
    const fresh = await openTestCore(backend);
    try {
      const logger = capturingLogger();
      const reset = await open({ file, core: fresh, log: logger.log });
      expect(await rejectionOf(reset.node(ctx, 'old'))).toMatchObject({ code: 'NOT_FOUND' });
      expect(await reset.upsertNode(ctx, { id: 'new', label: 'New', kind: 'k' })).toMatchObject({ seq: 1 });
      expect((await reset.search(ctx, { q: 'o' })).results.map((r) => r.node.id)).toEqual([]);
      expect(logger.lines().some((l) => l.msg.includes('database reset'))).toBe(true);
      await reset.close();
    } finally {
      await fresh.close();
    }
  });

  it('holds the tenant still while withProjection runs, and refuses calls after close', async () => {
    const ctx = tenant();
    const store = await open();
    await store.upsertNode(ctx, { id: 'x', label: 'X', kind: 'k' });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let seenSeq = -1;
    const snapshot = store.withProjection(ctx.tenantId, async (conn, position) => {
      seenSeq = position.seq;
      await held;
      const rows = await conn.runAndReadAll('SELECT count(*)::INTEGER AS n FROM graph_nodes WHERE tenant_id = $1', [ctx.tenantId]);
      return rows.getRowObjectsJS()[0]?.n;
    });
    let written = false;
    const write = store.upsertNode(ctx, { id: 'y', label: 'Y', kind: 'k' }).then(() => (written = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(written).toBe(false);
    release();
    expect(await snapshot).toBe(1);
    await write;
    expect(seenSeq).toBe(1);
    expect(await store.sync(ctx.tenantId)).toEqual({ seq: 2, purgedSeq: 0 });
    await store.close();
    expect(await rejectionOf(store.node(ctx, 'x'))).toMatchObject({ code: 'UNAVAILABLE' });
  });
});
