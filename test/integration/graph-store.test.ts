import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLog } from '../../src/events/index.js';
import { GraphStore, nodeIdFor, type GraphWriteContext } from '../../src/graph/index.js';
import { createLogger } from '../../src/obs/index.js';
import { backends, openTestCore, rejectionOf, type TestCore } from '../support/backends.js';

const MEMORY_A = '01900000-0000-7000-8000-00000000000a';
const MEMORY_B = '01900000-0000-7000-8000-00000000000b';
const actor = { userId: 'alice' };

describe.each(backends())('GraphStore on %s', (backend) => {
  let t: TestCore;
  let store: GraphStore;
  /** A second process's projection over the same database. */
  let other: GraphStore;
  let n = 0;
  /** A fresh tenant per test: no test sees another's graph or seqs. */
  const tenant = (): GraphWriteContext => ({ tenantId: `${backend}-g${++n}`, actor });
  const open = () =>
    GraphStore.open({
      db: t.core.db,
      config: { ...t.config.graph, duckdbPath: ':memory:' },
      commits: t.core.commits,
      log: createLogger('silent'),
      embeddings: t.core.embeddings,
    });

  beforeAll(async () => {
    t = await openTestCore(backend);
    store = await open();
    other = await open();
  });
  afterAll(async () => {
    await other?.close();
    await store?.close();
    await t?.close();
  });

  /** a → b → c → a (a cycle) plus c → d; ids are the labels. */
  async function cycle(ctx: GraphWriteContext) {
    await store.write(ctx, [
      ...['a', 'b', 'c', 'd'].map((id) => ({ op: 'node.upsert' as const, id, label: `Node ${id.toUpperCase()}`, kind: 'thing' })),
      { op: 'edge.upsert', id: 'ab', source: 'a', target: 'b', relation: 'next' },
      { op: 'edge.upsert', id: 'bc', source: 'b', target: 'c', relation: 'next' },
      { op: 'edge.upsert', id: 'ca', source: 'c', target: 'a', relation: 'next' },
      { op: 'edge.upsert', id: 'cd', source: 'c', target: 'd', relation: 'owns' },
    ]);
  }

  const graphEvents = (tenantId: string) =>
    t.core.db.withTenant(tenantId, async (sql) => (await EventLog.read(sql, tenantId, 0, 100)).events.filter((e) => e.type === 'graph.changed'));
  const logHead = (tenantId: string) =>
    t.core.db.withTenant(tenantId, async (sql) => Number((await sql.query<{ seq: string }>('SELECT seq FROM graph_streams')).rows[0]?.seq ?? 0));

  describe('writes', () => {
    it('upserts a node and an edge, logs the batch and appends graph.changed', async () => {
      const ctx = tenant();
      const { node } = await store.upsertNode(ctx, { label: 'PostgreSQL', kind: 'entity', properties: { site: 'postgresql.org' } });
      expect(node).toMatchObject({ id: nodeIdFor('entity', 'PostgreSQL'), label: 'PostgreSQL', kind: 'entity', properties: { site: 'postgresql.org' }, validTo: null, deletedAt: null });
      const app = await store.upsertNode(ctx, { id: 'app', label: 'App', kind: 'service' });
      const { edge } = await store.upsertEdge(ctx, { source: 'app', target: node.id, relation: 'uses', weight: 0.8 });
      expect(edge).toMatchObject({ source: 'app', target: node.id, relation: 'uses', weight: 0.8, properties: {} });
      expect(app.seq).toBe(2);
      const events = await graphEvents(ctx.tenantId);
      expect(events.map((e) => e.data)).toEqual([
        { graphSeq: 1, nodes: { upserted: [node.id], deleted: [], invalidated: [] }, edges: { upserted: [], deleted: [], invalidated: [] } },
        { graphSeq: 2, nodes: { upserted: ['app'], deleted: [], invalidated: [] }, edges: { upserted: [], deleted: [], invalidated: [] } },
        { graphSeq: 3, nodes: { upserted: [], deleted: [], invalidated: [] }, edges: { upserted: [edge.id], deleted: [], invalidated: [] } },
      ]);
      expect(events[0]?.actor).toEqual(actor);
      expect(await store.node(ctx, 'app')).toMatchObject({ node: { id: 'app' }, degree: { out: 1, in: 0, total: 1 } });
    });

    it('keeps created_at and the first source on update, and replaces what the update gives', async () => {
      const ctx = tenant();
      const first = await store.upsertNode(ctx, { id: 'n', label: 'Old', kind: 'k', properties: { a: 1 }, sourceMemoryId: MEMORY_A });
      const second = await store.upsertNode(ctx, { id: 'n', label: 'New', kind: 'k', sourceMemoryId: MEMORY_B });
      expect(second.node).toMatchObject({ label: 'New', properties: { a: 1 }, sourceMemoryId: MEMORY_A, createdAt: first.node.createdAt, validFrom: first.node.validFrom });
      const third = await store.upsertNode(ctx, { id: 'n', label: 'New', kind: 'k', properties: {} });
      expect(third.node.properties).toEqual({});
    });

    it('refuses an edge to an unknown node, naming it, and writes nothing', async () => {
      const ctx = tenant();
      await store.upsertNode(ctx, { id: 'x', label: 'X', kind: 'k' });
      const err = await rejectionOf(store.upsertEdge(ctx, { source: 'x', target: 'ghost', relation: 'r' }));
      expect(err).toMatchObject({ code: 'NOT_FOUND', details: { id: 'ghost', field: 'target' } });
      expect(err.message).toContain('ghost');
      expect(await logHead(ctx.tenantId)).toBe(1);
      expect((await store.node(ctx, 'x')).degree.total).toBe(0);
    });

    it('refuses an edge to a deleted node', async () => {
      const ctx = tenant();
      await cycle(ctx);
      const deleted = await store.deleteNode(ctx, 'd');
      expect(deleted.changes.nodes.deleted).toEqual(['d']);
      expect(deleted.changes.edges.deleted).toEqual(['cd']);
      const err = await rejectionOf(store.upsertEdge(ctx, { source: 'a', target: 'd', relation: 'r' }));
      expect(err).toMatchObject({ code: 'NOT_FOUND', details: { id: 'd' } });
      expect(await rejectionOf(store.node(ctx, 'd'))).toMatchObject({ code: 'NOT_FOUND' });
      // Deleting it again is a no-op; an id that never existed is an error.
      expect(await store.deleteNode(ctx, 'd')).toMatchObject({ applied: false });
      expect(await rejectionOf(store.deleteNode(ctx, 'never'))).toMatchObject({ code: 'NOT_FOUND' });
    });

    it('lets an edge connect nodes upserted earlier in the same batch, and rolls the whole batch back on a bad op', async () => {
      const ctx = tenant();
      const err = await rejectionOf(
        store.write(ctx, [
          { op: 'node.upsert', id: 'p', label: 'P', kind: 'k' },
          { op: 'node.upsert', id: 'q', label: 'Q', kind: 'k' },
          { op: 'edge.upsert', source: 'p', target: 'q', relation: 'r' },
          { op: 'edge.upsert', source: 'p', target: 'nowhere', relation: 'r' },
        ]),
      );
      expect(err.code).toBe('NOT_FOUND');
      expect(await logHead(ctx.tenantId)).toBe(0);
      expect(await rejectionOf(store.node(ctx, 'p'))).toMatchObject({ code: 'NOT_FOUND' });
      const ok = await store.write(ctx, [
        { op: 'node.upsert', id: 'p', label: 'P', kind: 'k' },
        { op: 'node.upsert', id: 'q', label: 'Q', kind: 'k' },
        { op: 'edge.upsert', source: 'p', target: 'q', relation: 'r' },
      ]);
      expect(ok).toMatchObject({ applied: true, seq: 1 });
      expect(ok.changes.edges.upserted).toHaveLength(1);
    });

    it('refuses huge property blobs with PAYLOAD_TOO_LARGE and writes nothing', async () => {
      const ctx = tenant();
      const blob = { text: 'x'.repeat(t.config.graph.maxPropertiesBytes + 1) };
      const err = await rejectionOf(store.upsertNode(ctx, { id: 'big', label: 'Big', kind: 'k', properties: blob }));
      expect(err).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { maxBytes: t.config.graph.maxPropertiesBytes } });
      expect(await logHead(ctx.tenantId)).toBe(0);
      expect(await graphEvents(ctx.tenantId)).toEqual([]);
      expect(await rejectionOf(store.node(ctx, 'big'))).toMatchObject({ code: 'NOT_FOUND' });
    });

    it.each([
      ['an empty label', { id: 'a', label: '  ', kind: 'k' }],
      ['a kind with spaces', { id: 'a', label: 'A', kind: 'two words' }],
      ['an id with SQL in it', { id: "a'; DROP TABLE graph_nodes; --", label: 'A', kind: 'k' }],
      ['an unknown field', { id: 'a', label: 'A', kind: 'k', colour: 'red' }],
      ['a label with NUL', { id: 'a', label: 'A\u0000', kind: 'k' }],
      ['validTo before validFrom', { id: 'a', label: 'A', kind: 'k', validFrom: '2025-01-02T00:00:00Z', validTo: '2025-01-01T00:00:00Z' }],
    ])('refuses %s with INVALID_ARGUMENT', async (_what, input) => {
      const ctx = tenant();
      expect(await rejectionOf(store.upsertNode(ctx, input))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await logHead(ctx.tenantId)).toBe(0);
    });

    it('writes a job once: the same job key again is a no-op', async () => {
      const ctx = tenant();
      const ops = [{ op: 'node.upsert', id: 'j', label: 'J', kind: 'k' }];
      const first = await store.write(ctx, ops, { jobKey: 'graph.extract:evt-1' });
      const again = await other.write(ctx, ops, { jobKey: 'graph.extract:evt-1' });
      expect(first).toMatchObject({ applied: true, seq: 1 });
      expect(again).toMatchObject({ applied: false, duplicate: true, seq: 1 });
      expect(await logHead(ctx.tenantId)).toBe(1);
      expect(await graphEvents(ctx.tenantId)).toHaveLength(1);
    });

    it('works for a tenant id like "dropbox"', async () => {
      const ctx = { tenantId: 'dropbox', actor };
      await store.upsertNode(ctx, { id: 'select', label: 'DROP TABLE', kind: 'k' });
      expect((await other.node({ tenantId: 'dropbox' }, 'select')).node.label).toBe('DROP TABLE');
    });

    it('refuses a malformed tenant id before any query', async () => {
      expect(await rejectionOf(store.node({ tenantId: "x'; --" }, 'a'))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejectionOf(store.upsertNode({ tenantId: '', actor }, { id: 'a', label: 'A', kind: 'k' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    });
  });

  describe('queries', () => {
    it('neighbors honours depth, direction and relation, and terminates on a cycle', async () => {
      const ctx = tenant();
      await cycle(ctx);
      const ids = (r: { neighbors: { node: { id: string }; depth: number }[] }) => r.neighbors.map((x) => [x.node.id, x.depth]);
      expect(ids(await store.neighbors(ctx, { id: 'a', direction: 'out' }))).toEqual([['b', 1]]);
      expect(ids(await store.neighbors(ctx, { id: 'a', direction: 'out', depth: 2 }))).toEqual([['b', 1], ['c', 2]]);
      expect(ids(await store.neighbors(ctx, { id: 'a', direction: 'out', depth: 5 }))).toEqual([['b', 1], ['c', 2], ['d', 3]]);
      expect(ids(await store.neighbors(ctx, { id: 'a', direction: 'in' }))).toEqual([['c', 1]]);
      expect(ids(await store.neighbors(ctx, { id: 'a' }))).toEqual([['b', 1], ['c', 1]]);
      expect(ids(await store.neighbors(ctx, { id: 'c', direction: 'out', relation: 'owns' }))).toEqual([['d', 1]]);
      expect(ids(await store.neighbors(ctx, { id: 'c', direction: 'out', relation: ['next'], depth: 5 }))).toEqual([['a', 1], ['b', 2]]);
      const two = await store.neighbors(ctx, { id: 'a', direction: 'out', depth: 2 });
      expect(two.edges.map((e) => e.id)).toEqual(['ab', 'bc']);
      expect(two.node.id).toBe('a');
      const limited = await store.neighbors(ctx, { id: 'a', direction: 'out', depth: 5, limit: 2 });
      expect(limited).toMatchObject({ truncated: true });
      expect(ids(limited)).toEqual([['b', 1], ['c', 2]]);
      expect((await store.neighbors(ctx, { id: 'a', direction: 'out', depth: 5, limit: 3 })).truncated).toBe(false);
    });

    it.each([0, 6, 2.5, 'deep'])('refuses depth %s for neighbors and path', async (depth) => {
      const ctx = tenant();
      await cycle(ctx);
      expect(await rejectionOf(store.neighbors(ctx, { id: 'a', depth }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejectionOf(store.path(ctx, { from: 'a', to: 'b', maxDepth: depth }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    it('refuses unknown directions and node ids', async () => {
      const ctx = tenant();
      await cycle(ctx);
      expect(await rejectionOf(store.neighbors(ctx, { id: 'a', direction: 'sideways' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejectionOf(store.neighbors(ctx, { id: 'nope' }))).toMatchObject({ code: 'NOT_FOUND', details: { id: 'nope' } });
      expect(await rejectionOf(store.related(ctx, { id: 'nope' }))).toMatchObject({ code: 'NOT_FOUND' });
      expect(await rejectionOf(store.path(ctx, { from: 'a', to: 'nope' }))).toMatchObject({ code: 'NOT_FOUND', details: { field: 'to' } });
      expect(await rejectionOf(store.node(ctx, { id: 'nope' }))).toMatchObject({ code: 'NOT_FOUND' });
    });

    it('finds shortest paths on a cyclic graph, respecting direction and depth', async () => {
      const ctx = tenant();
      await cycle(ctx);
      const path = await store.path(ctx, { from: 'a', to: 'd' });
      expect(path).toMatchObject({ found: true, length: 3 });
      if (!path.found) throw new Error('no path');
      expect(path.nodes.map((x) => x.id)).toEqual(['a', 'b', 'c', 'd']);
      expect(path.edges.map((e) => e.id)).toEqual(['ab', 'bc', 'cd']);
      // Against the arrows d ← c ← b ← a; undirected, c – a is one hop.
      const back = await store.path(ctx, { from: 'd', to: 'a', direction: 'in' });
      expect(back.found && back.nodes.map((x) => x.id)).toEqual(['d', 'c', 'b', 'a']);
      const both = await store.path(ctx, { from: 'a', to: 'd', direction: 'both' });
      expect(both.found && both.nodes.map((x) => x.id)).toEqual(['a', 'c', 'd']);
      expect(await store.path(ctx, { from: 'd', to: 'a' })).toEqual({ found: false, maxDepth: 5 });
      expect(await store.path(ctx, { from: 'a', to: 'd', maxDepth: 2 })).toEqual({ found: false, maxDepth: 2 });
      expect(await store.path(ctx, { from: 'a', to: 'a' })).toMatchObject({ found: true, length: 0, edges: [] });
      expect(await store.path(ctx, { from: 'a', to: 'd', relation: 'next' })).toMatchObject({ found: false });
    });

    it("answers NOT_FOUND for a path to another tenant's node, without revealing it", async () => {
      const mine = tenant();
      const theirs = tenant();
      await cycle(mine);
      await store.upsertNode(theirs, { id: 'secret', label: 'Payroll', kind: 'k' });
      const err = await rejectionOf(store.path(mine, { from: 'a', to: 'secret' }));
      expect(err).toMatchObject({ code: 'NOT_FOUND', details: { id: 'secret', field: 'to' } });
      expect(JSON.stringify(err)).not.toContain('Payroll');
      expect(await rejectionOf(store.node(mine, 'secret'))).toMatchObject({ code: 'NOT_FOUND' });
      // The same node ids in two tenants stay two graphs.
      await cycle(theirs);
      await store.write(theirs, [{ op: 'edge.upsert', id: 'ad', source: 'a', target: 'd', relation: 'next' }]);
      expect(await store.path(theirs, { from: 'a', to: 'd' })).toMatchObject({ found: true, length: 1 });
      expect(await store.path(mine, { from: 'a', to: 'd' })).toMatchObject({ found: true, length: 3 });
    });

    it('ranks related nodes by weight with a per-hop decay', async () => {
      const ctx = tenant();
      await store.write(ctx, [
        ...['s', 'x', 'y', 'z'].map((id) => ({ op: 'node.upsert' as const, id, label: id, kind: 'k' })),
        { op: 'edge.upsert', source: 's', target: 'x', relation: 'r', weight: 0.3 },
        { op: 'edge.upsert', source: 'y', target: 's', relation: 'r', weight: 0.9 },
        { op: 'edge.upsert', source: 'y', target: 'z', relation: 'r', weight: 1 },
      ]);
      const result = await store.related(ctx, { id: 's', hops: 2 });
      expect(result.related.map((r) => [r.node.id, r.hops, Number(r.score.toFixed(3))])).toEqual([
        ['y', 1, 0.9],
        ['z', 2, 0.45],
        ['x', 1, 0.3],
      ]);
      expect((await store.related(ctx, { id: 's', hops: 1 })).related.map((r) => r.node.id)).toEqual(['y', 'x']);
      expect(await rejectionOf(store.related(ctx, { id: 's', hops: 4 }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    it('searches labels and properties case-insensitively, exact before prefix before contains', async () => {
      const ctx = tenant();
      await store.write(ctx, [
        { op: 'node.upsert', id: 'n1', label: 'Postgres', kind: 'db' },
        { op: 'node.upsert', id: 'n2', label: 'PostgreSQL', kind: 'db' },
        { op: 'node.upsert', id: 'n3', label: 'Managed postgres service', kind: 'service' },
        { op: 'node.upsert', id: 'n4', label: 'Redis', kind: 'db', properties: { note: 'sits next to POSTGRES' } },
        { op: 'node.upsert', id: 'n5', label: '100% coverage_report', kind: 'doc' },
        { op: 'node.upsert', id: 'n6', label: '100 coverageXreport', kind: 'doc' },
      ]);
      const hits = await store.search(ctx, { q: 'postgres' });
      expect(hits.mode).toBe('text');
      expect(hits.results.map((r) => [r.node.id, r.match])).toEqual([
        ['n1', 'exact'],
        ['n2', 'prefix'],
        ['n3', 'label'],
        ['n4', 'properties'],
      ]);
      expect((await store.search(ctx, { q: 'postgres', kind: 'service' })).results.map((r) => r.node.id)).toEqual(['n3']);
      expect((await store.search(ctx, { q: 'postgres', limit: 1 })).results).toHaveLength(1);
      // LIKE wildcards are plain characters.
      expect((await store.search(ctx, { q: '0% coverage_' })).results.map((r) => r.node.id)).toEqual(['n5']);
      expect((await store.search(ctx, { q: '%' })).results.map((r) => r.node.id)).toEqual(['n5']);
      expect(await rejectionOf(store.search(ctx, { q: '' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    it('searches by label embedding when asked, embedding labels on demand', async () => {
      const ctx = tenant();
      await store.write(ctx, [
        { op: 'node.upsert', id: 'k1', label: 'continuous integration pipeline', kind: 'topic' },
        { op: 'node.upsert', id: 'k2', label: 'quarterly revenue forecast', kind: 'topic' },
      ]);
      const hits = await store.search(ctx, { q: 'continuous integration pipeline', semantic: true });
      expect(hits.mode).toBe('semantic');
      expect(hits.results[0]).toMatchObject({ node: { id: 'k1' }, match: 'semantic' });
      expect(hits.results[0]?.similarity).toBeGreaterThan(0.99);
      expect((hits.results[1]?.similarity ?? 1) < 0.5).toBe(true);
      // A renamed node is re-embedded, not matched by its old label.
      await store.upsertNode(ctx, { id: 'k2', label: 'continuous integration pipeline', kind: 'topic' });
      const again = await store.search(ctx, { q: 'continuous integration pipeline', semantic: true });
      expect(again.results.map((r) => Number(r.similarity?.toFixed(3)))).toEqual([1, 1]);
    });
  });

  describe('time, deletion and retention', () => {
    it('answers as of a time before and after an invalidation', async () => {
      const ctx = tenant();
      await cycle(ctx);
      const before = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 5));
      const result = await store.invalidate(ctx, 'edge', 'cd');
      expect(result.changes.edges.invalidated).toEqual(['cd']);
      const after = new Date(Date.now() + 5).toISOString();
      const out = (asOf?: string) => store.neighbors(ctx, { id: 'c', direction: 'out', ...(asOf ? { asOf } : {}) }).then((r) => r.neighbors.map((x) => x.node.id));
      expect(await out(before)).toEqual(['a', 'd']);
      expect(await out(after)).toEqual(['a']);
      expect(await out()).toEqual(['a']);
      expect((await store.path(ctx, { from: 'a', to: 'd', asOf: before })).found).toBe(true);
      expect((await store.path(ctx, { from: 'a', to: 'd' })).found).toBe(false);
      // Before anything existed, nothing did.
      expect(await rejectionOf(store.node(ctx, { id: 'a', asOf: '2000-01-01T00:00:00Z' }))).toMatchObject({ code: 'NOT_FOUND' });
      // The invalidated edge itself still exists (it is history, not deleted).
      expect((await store.node(ctx, { id: 'c', asOf: before })).degree).toEqual({ out: 2, in: 1, total: 3 });
      expect((await store.node(ctx, 'c')).degree).toEqual({ out: 1, in: 1, total: 2 });
    });

    it('does not walk through an invalidated node, whose edges are still valid', async () => {
      const ctx = tenant();
      await cycle(ctx);
      const before = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 5));
      expect((await store.invalidate(ctx, 'node', 'b')).changes.nodes.invalidated).toEqual(['b']);
      expect((await store.neighbors(ctx, { id: 'a', direction: 'out', depth: 3 })).neighbors).toEqual([]);
      expect(await store.path(ctx, { from: 'a', to: 'd' })).toMatchObject({ found: false });
      expect(await store.path(ctx, { from: 'a', to: 'd', direction: 'both' })).toMatchObject({ found: true, length: 2 });
      expect(await store.path(ctx, { from: 'a', to: 'd', asOf: before })).toMatchObject({ found: true, length: 3 });
      expect(await rejectionOf(store.node(ctx, 'b'))).toMatchObject({ code: 'NOT_FOUND' });
      // Re-asserting the fact with an explicit open validity makes it current again.
      await store.upsertNode(ctx, { id: 'b', label: 'Node B', kind: 'thing', validTo: null });
      expect((await store.path(ctx, { from: 'a', to: 'd' })).found).toBe(true);
    });

    it("refuses to move an existing edge's ends", async () => {
      const ctx = tenant();
      await cycle(ctx);
      const err = await rejectionOf(store.upsertEdge(ctx, { id: 'ab', source: 'a', target: 'c', relation: 'next' }));
      expect(err).toMatchObject({ code: 'CONFLICT', details: { id: 'ab', source: 'a', target: 'b' } });
      expect((await store.neighbors(ctx, { id: 'a', direction: 'out' })).neighbors.map((x) => x.node.id)).toEqual(['b']);
    });

    it('cascades a deleted memory: what another memory still supports survives', async () => {
      const ctx = tenant();
      await store.write(ctx, [
        { op: 'node.upsert', id: 'shared', label: 'Shared', kind: 'k' },
        { op: 'node.upsert', id: 'onlyA', label: 'Only A', kind: 'k' },
        { op: 'edge.upsert', id: 'e1', source: 'shared', target: 'onlyA', relation: 'r' },
      ], { sourceMemory: { id: MEMORY_A, layer: 'project', scopeId: 'apollo' } });
      await store.write(ctx, [{ op: 'node.upsert', id: 'shared', label: 'Shared', kind: 'k' }, { op: 'node.upsert', id: 'api', label: 'API node', kind: 'k', sourceMemoryId: null }], {
        sourceMemory: { id: MEMORY_B, layer: 'project', scopeId: 'apollo' },
      });
      expect((await store.memorySupport(ctx, MEMORY_A)).nodes).toEqual([
        { id: 'onlyA', sourceMemoryIds: [MEMORY_A] },
        { id: 'shared', sourceMemoryIds: [MEMORY_A, MEMORY_B].sort() },
      ]);
      const first = await store.cascadeMemory(ctx.tenantId, MEMORY_A, `graph.cascade:${MEMORY_A}`);
      expect(first.changes.nodes.deleted).toEqual(['onlyA']);
      expect(first.changes.edges.deleted).toEqual(['e1']);
      expect((await store.node(ctx, 'shared')).node.label).toBe('Shared');
      expect(await rejectionOf(store.node(ctx, 'onlyA'))).toMatchObject({ code: 'NOT_FOUND' });
      // Through the other process too, and a repeat of the job changes nothing.
      expect(await rejectionOf(other.node(ctx, 'onlyA'))).toMatchObject({ code: 'NOT_FOUND' });
      expect(await other.cascadeMemory(ctx.tenantId, MEMORY_A, `graph.cascade:${MEMORY_A}`)).toMatchObject({ applied: false, duplicate: true });
      const second = await other.cascadeMemory(ctx.tenantId, MEMORY_B);
      expect(second.changes.nodes.deleted).toEqual(['shared']);
      expect(await rejectionOf(store.node(ctx, 'shared'))).toMatchObject({ code: 'NOT_FOUND' });
      // Written through the API, with no source: no cascade touches it.
      expect((await store.node(ctx, 'api')).node.id).toBe('api');
      expect(await store.cascadeMemory(ctx.tenantId, MEMORY_B)).toMatchObject({ applied: false });
      const events = await graphEvents(ctx.tenantId);
      expect(events[0]?.data).toMatchObject({ sourceMemoryId: MEMORY_A, layer: 'project', scopeId: 'apollo' });
      expect(events[2]?.data).toMatchObject({ jobKey: `graph.cascade:${MEMORY_A}`, nodes: { deleted: ['onlyA'] } });
      expect(events[2]?.actor).toEqual({ userId: 'system', agentId: 'graph' });
    });

    it('purges soft-deleted rows after the retention period, and only those', async () => {
      const ctx = tenant();
      await cycle(ctx);
      await store.deleteNode(ctx, 'd');
      const early = await store.purgeExpired(ctx.tenantId);
      expect(early).toMatchObject({ applied: false });
      const later = new Date(Date.now() + (t.config.graph.retentionDays + 1) * 86_400_000);
      const purge = await store.purgeExpired(ctx.tenantId, later);
      expect(purge.applied).toBe(true);
      expect(purge.changes.nodes.purged).toEqual(['d']);
      expect(purge.changes.edges.purged).toEqual(['cd']);
      const position = await other.sync(ctx.tenantId);
      expect(position).toEqual({ seq: purge.seq, purgedSeq: purge.seq });
      const rows = await other.withProjection(ctx.tenantId, async (conn) => {
        const r = await conn.runAndReadAll('SELECT id FROM graph_nodes WHERE tenant_id = $1 ORDER BY id', [ctx.tenantId]);
        return r.getRowObjectsJS().map((x) => x.id);
      });
      expect(rows).toEqual(['a', 'b', 'c']);
      expect((await graphEvents(ctx.tenantId)).at(-1)?.data).toMatchObject({ purged: { nodes: 1, edges: 1 } });
    });
  });

  describe('processes and isolation', () => {
    it("reads another process's writes at once, and both agree on every seq", async () => {
      const ctx = tenant();
      await store.upsertNode(ctx, { id: 'one', label: 'One', kind: 'k' });
      expect((await other.node(ctx, 'one')).node.label).toBe('One');
      await other.upsertNode(ctx, { id: 'two', label: 'Two', kind: 'k' });
      await store.upsertEdge(ctx, { source: 'one', target: 'two', relation: 'r' });
      expect((await other.neighbors(ctx, { id: 'one' })).neighbors.map((x) => x.node.id)).toEqual(['two']);
      // Concurrent writers in two processes: serialised, gap-free, both applied everywhere.
      const writes = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? store : other).upsertNode(ctx, { id: `c${i}`, label: `C${i}`, kind: 'k' }));
      const seqs = (await Promise.all(writes)).map((w) => w.seq).sort((a, b) => a - b);
      expect(seqs).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
      expect(await store.sync(ctx.tenantId)).toEqual({ seq: 13, purgedSeq: 0 });
      expect(await other.sync(ctx.tenantId)).toEqual({ seq: 13, purgedSeq: 0 });
      const labels = await Promise.all([store, other].map((s) => s.search(ctx, { q: 'c', kind: 'k', limit: 100 }).then((r) => r.results.length)));
      expect(labels).toEqual([10, 10]);
    });

    it('applies writes of several tenants at once, with the same node ids, without mixing them', async () => {
      const tenants = [tenant(), tenant(), tenant()];
      await Promise.all(
        tenants.flatMap((ctx, ti) =>
          Array.from({ length: 4 }, (_, i) =>
            store.write(ctx, [
              { op: 'node.upsert', id: `shared${i}`, label: `T${ti} N${i}`, kind: 'k' },
              { op: 'node.upsert', id: 'hub', label: `Hub ${ti}`, kind: 'k' },
              { op: 'edge.upsert', source: 'hub', target: `shared${i}`, relation: 'has' },
            ]),
          ),
        ),
      );
      for (const [ti, ctx] of tenants.entries()) {
        const around = await other.neighbors(ctx, { id: 'hub', direction: 'out' });
        expect(around.node.label).toBe(`Hub ${ti}`);
        expect(around.neighbors.map((x) => x.node.label).sort()).toEqual([0, 1, 2, 3].map((i) => `T${ti} N${i}`));
      }
    });

    it("keeps graph_events of one tenant invisible to another tenant's transaction (RLS)", async () => {
      const victim = tenant();
      await store.upsertNode(victim, { id: 'v', label: 'Victim', kind: 'k' });
      const seen = await t.core.db.withTenant('attacker', async (sql) => ({
        events: (await sql.query('SELECT seq FROM graph_events WHERE tenant_id = $1', [victim.tenantId])).rows,
        streams: (await sql.query('SELECT * FROM graph_streams')).rows,
      }));
      expect(seen).toEqual({ events: [], streams: [] });
      const own = await t.core.db.withTenant(victim.tenantId, (sql) => sql.query('SELECT seq FROM graph_events'));
      expect(own.rows).toHaveLength(1);
    });
  });
});
