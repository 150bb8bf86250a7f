import { afterEach, describe, expect, it } from 'vitest';
import { DuckPool, duckRows } from '../../src/graph/duck.js';
import { KeyedMutex } from '../../src/graph/mutex.js';
import { applyDrafts, prepareProjection, replayBatch, type OpDraft } from '../../src/graph/projection.js';
import type { GraphBatch, GraphOp } from '../../src/graph/index.js';
import { rejectionOf } from '../support/backends.js';

/** The projection's apply engine on DuckDB alone: what every process does with the same log. */
const pools: DuckPool[] = [];
afterEach(() => {
  for (const pool of pools.splice(0)) pool.close();
});

async function projection(): Promise<DuckPool> {
  const pool = await DuckPool.open(':memory:');
  pools.push(pool);
  await pool.use(prepareProjection);
  return pool;
}

const M1 = 'm1';
const M2 = 'm2';
const T = 'acme';
const at = (minute: number) => new Date(Date.UTC(2025, 0, 1, 0, minute)).toISOString();
const node = (id: string, sourceMemoryId: string | null = null): GraphOp => ({
  op: 'node.upsert',
  id,
  label: id.toUpperCase(),
  kind: 'k',
  properties: {},
  sourceMemoryId,
  validFrom: at(0),
  validTo: null,
});
const edge = (id: string, source: string, target: string, sourceMemoryId: string | null = null): GraphOp => ({
  op: 'edge.upsert',
  id,
  source,
  target,
  relation: 'r',
  weight: 1,
  properties: {},
  sourceMemoryId,
  validFrom: at(0),
  validTo: null,
});
const batch = (seq: number, ops: GraphOp[]): GraphBatch => ({ tenantId: T, seq, at: at(seq), ops });

const LOG: GraphBatch[] = [
  batch(1, [node('a', M1), node('b', M1), node('c', M2), edge('ab', 'a', 'b', M1), edge('bc', 'b', 'c', M2)]),
  batch(2, [node('b', M2), { op: 'invalidate', element: 'edge', id: 'ab', validTo: at(30) }]),
  batch(3, [{ op: 'cascade', memoryId: M1 }]),
  batch(4, [node('a', M2), { op: 'node.delete', id: 'c' }]),
  batch(5, [{ op: 'purge', before: at(5) }]),
];

async function replay(pool: DuckPool, batches: GraphBatch[]) {
  return pool.use(async (conn) => {
    const appliers = [];
    for (const b of batches) appliers.push(await replayBatch(conn, b));
    return appliers;
  });
}

type Row = { id: string; tenant_id: string; created_at: Date; deleted_at: Date | null; valid_to: Date | null; updated_seq: bigint; source_memory_id: string | null };
type SourceRow = { element: string; element_id: string; memory_id: string };
const dump = (pool: DuckPool) =>
  pool.use(async (conn) => ({
    nodes: await duckRows<Row>(conn, 'SELECT * EXCLUDE (properties) FROM graph_nodes ORDER BY tenant_id, id'),
    edges: await duckRows<Row>(conn, 'SELECT * EXCLUDE (properties) FROM graph_edges ORDER BY tenant_id, id'),
    sources: await duckRows<SourceRow>(conn, 'SELECT * FROM graph_element_sources ORDER BY element, element_id, memory_id'),
  }));

describe('graph projection', () => {
  it('builds the same rows from the same log in every process', async () => {
    const [one, two] = [await projection(), await projection()];
    await replay(one, LOG);
    await replay(two, LOG.slice(0, 2));
    await replay(two, LOG.slice(2));
    expect(await dump(two)).toEqual(await dump(one));
  });

  it('cascades: drops the memory links, deletes what lost its last support, bumps what kept some', async () => {
    const pool = await projection();
    const [, , cascade] = await replay(pool, LOG.slice(0, 3));
    expect(cascade?.changes.toChanges()).toMatchObject({
      nodes: { deleted: ['a'] },
      edges: { deleted: ['ab'] },
    });
    const { nodes, sources } = await dump(pool);
    const row = (id: string) => nodes.find((n) => n.id === id) as Row;
    expect(row('a').deleted_at?.toISOString()).toBe(at(3));
    // b lost M1 but M2 (batch 2) still supports it: alive, and bumped for delta snapshots.
    expect(row('b')).toMatchObject({ deleted_at: null, updated_seq: 3n });
    expect(row('c')).toMatchObject({ deleted_at: null, updated_seq: 1n });
    expect(sources.map((s) => `${s.element}:${s.element_id}:${s.memory_id}`)).toEqual(['edge:bc:m2', 'node:b:m2', 'node:c:m2']);
  });

  it('revives a deleted node as new, and purges only what was deleted before the cut-off', async () => {
    const pool = await projection();
    const appliers = await replay(pool, LOG);
    const { nodes, edges } = await dump(pool);
    expect(nodes.find((n) => n.id === 'a')).toMatchObject({ deleted_at: null, source_memory_id: M2 });
    expect(nodes.find((n) => n.id === 'a')?.created_at.toISOString()).toBe(at(4));
    // c and bc were deleted at minute 4, before the purge cut-off of minute 5; ab at minute 3.
    expect(nodes.map((n) => n.id)).toEqual(['a', 'b']);
    expect(edges).toEqual([]);
    expect(appliers[4]?.purged).toBe(true);
    expect(appliers[4]?.changes.toChanges()).toMatchObject({ nodes: { purged: ['c'] } });
  });

  it('keeps an invalidated edge as history with its valid_to', async () => {
    const pool = await projection();
    await replay(pool, LOG.slice(0, 2));
    const { edges } = await dump(pool);
    expect(edges.find((e) => e.id === 'ab')?.valid_to?.toISOString()).toBe(at(30));
  });

  it('resolves drafts against the state so far: defaults, kept fields, and clear refusals', async () => {
    const pool = await projection();
    await replay(pool, LOG.slice(0, 1));
    await pool.use(async (conn) => {
      await conn.run('BEGIN TRANSACTION');
      const drafts: OpDraft[] = [
        { op: 'node.upsert', id: 'a', label: 'A2', kind: 'k' },
        { op: 'node.upsert', id: 'n', label: 'New', kind: 'k' },
        { op: 'edge.upsert', id: 'an', source: 'a', target: 'n', relation: 'r' },
        { op: 'invalidate', element: 'node', id: 'c' },
      ];
      const { ops } = await applyDrafts(conn, { tenantId: T, seq: 2, at: at(10) }, drafts, M2);
      expect(ops).toEqual([
        { ...node('a', M2), label: 'A2' },
        { ...node('n', M2), label: 'New', validFrom: at(10) },
        { ...edge('an', 'a', 'n', M2), validFrom: at(10) },
        { op: 'invalidate', element: 'node', id: 'c', validTo: at(10) },
      ]);
      await conn.run('ROLLBACK');

      for (const [drafts, code] of [
        [[{ op: 'edge.upsert', id: 'ab', source: 'b', target: 'a', relation: 'r' }], 'CONFLICT'],
        [[{ op: 'edge.upsert', source: 'a', target: 'zz', relation: 'r' }], 'NOT_FOUND'],
        [[{ op: 'node.delete', id: 'zz' }], 'NOT_FOUND'],
        [[{ op: 'invalidate', element: 'edge', id: 'ab', validTo: '2024-01-01T00:00:00.000Z' }], 'INVALID_ARGUMENT'],
      ] as [OpDraft[], string][]) {
        await conn.run('BEGIN TRANSACTION');
        expect(await rejectionOf(applyDrafts(conn, { tenantId: T, seq: 2, at: at(10) }, drafts, null))).toMatchObject({ code });
        await conn.run('ROLLBACK');
      }
    });
  });

  it("never touches another tenant's rows with the same ids", async () => {
    const pool = await projection();
    await replay(pool, LOG);
    await pool.use((conn) => replayBatch(conn, { tenantId: 'other', seq: 1, at: at(50), ops: [node('a'), { op: 'cascade', memoryId: M2 }, { op: 'purge', before: at(60) }] }));
    const { nodes } = await dump(pool);
    expect(nodes.map((n) => `${n.tenant_id}:${n.id}`)).toEqual(['acme:a', 'acme:b', 'other:a']);
  });
});

describe('KeyedMutex', () => {
  it('runs one key in call order and other keys alongside', async () => {
    const mutex = new KeyedMutex();
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = mutex.run('t1', async () => {
      order.push('t1 first start');
      await new Promise<void>((resolve) => (releaseFirst = resolve));
      order.push('t1 first end');
    });
    const second = mutex.run('t1', async () => void order.push('t1 second'));
    await mutex.run('t2', async () => void order.push('t2'));
    releaseFirst();
    await Promise.all([first, second]);
    expect(order).toEqual(['t1 first start', 't2', 't1 first end', 't1 second']);
    // A failure releases the key for the next caller.
    await expect(mutex.run('t1', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(mutex.run('t1', async () => 'next')).resolves.toBe('next');
  });
});
