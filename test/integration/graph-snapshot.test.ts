/**
 * Graph snapshots to Parquet against a real DuckDB with the graph schema, over both snapshot
 * stores: a directory and S3 (s3rver on loopback). One contract suite, run once per store.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection, type DuckDBValue } from '@duckdb/node-api';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DirectorySnapshotStore,
  GraphSnapshotter,
  S3SnapshotStore,
  createSnapshotStore,
  type SnapshotManifest,
  type SnapshotStore,
} from '../../src/graph/snapshot/index.js';
import { DUCKDB_SCHEMA, SNAPSHOT_TABLES, type SnapshotTable } from '../../src/graph/schema.js';
import { rejectionOf } from '../support/backends.js';
import type { Logger } from '../../src/obs/index.js';
import { startTestS3, type TestS3 } from '../support/index.js';

// ---------------------------------------------------------------------------------------------
// DuckDB fixtures: plain INSERTs, independent of the graph store's code.

interface Projection {
  instance: DuckDBInstance;
  conn: DuckDBConnection;
}

async function openProjection(): Promise<Projection> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  for (const ddl of DUCKDB_SCHEMA) await conn.run(ddl);
  return { instance, conn };
}

function closeProjection(p: Projection): void {
  p.conn.closeSync();
  p.instance.closeSync();
}

interface NodeRow {
  id: string;
  label?: string;
  properties?: unknown;
  sourceMemoryId?: string | null;
  validTo?: string | null;
  deletedAt?: string | null;
  seq: number;
}

async function putNode(conn: DuckDBConnection, tenant: string, n: NodeRow): Promise<void> {
  const values: DuckDBValue[] = [
    tenant,
    n.id,
    n.label ?? `Label ${n.id}`,
    JSON.stringify(n.properties ?? {}),
    n.sourceMemoryId === undefined ? 'm-1' : n.sourceMemoryId,
    n.validTo ?? null,
    n.deletedAt ?? null,
    BigInt(n.seq),
  ];
  await conn.run(
    `INSERT OR REPLACE INTO graph_nodes VALUES ($1, $2, $3, 'entity', $4, $5, '2025-03-01 10:00:00.123456+00', $6::TIMESTAMPTZ, '2025-03-01 10:00:00.654321+00', $7::TIMESTAMPTZ, $8)`,
    values,
  );
}

async function putEdge(conn: DuckDBConnection, tenant: string, e: { id: string; source: string; target: string; weight?: number; deletedAt?: string | null; seq: number }): Promise<void> {
  await conn.run(
    `INSERT OR REPLACE INTO graph_edges VALUES ($1, $2, $3, $4, 'uses', $5, '{"why":"test"}', NULL, '2025-03-01 10:00:00+00', NULL, '2025-03-01 10:00:00+00', $6::TIMESTAMPTZ, $7)`,
    [tenant, e.id, e.source, e.target, e.weight ?? 0.5, e.deletedAt ?? null, BigInt(e.seq)],
  );
}

async function putLink(conn: DuckDBConnection, tenant: string, element: 'node' | 'edge', elementId: string, memoryId: string, seq: number): Promise<void> {
  await conn.run(`INSERT OR REPLACE INTO graph_element_sources VALUES ($1, $2, $3, $4, $5)`, [tenant, element, elementId, memoryId, BigInt(seq)]);
}

/** A small graph with the awkward values: nested JSON, unicode, µs timestamps, NULLs, a soft delete. */
async function seedGraph(conn: DuckDBConnection, tenant: string, seq = 10): Promise<void> {
  await putNode(conn, tenant, { id: 'n-a', label: 'PostgreSQL', properties: { aliases: ['pg', 'postgres'], nested: { depth: 2, ok: true }, nothing: null }, seq: 3 });
  await putNode(conn, tenant, { id: 'n-b', label: 'Zürich «office» 東京', properties: { quote: "it's \"quoted\"" }, sourceMemoryId: null, seq: 5 });
  await putNode(conn, tenant, { id: 'n-c', label: 'Old fact', validTo: '2025-04-01 00:00:00.000001+00', seq: 7 });
  await putNode(conn, tenant, { id: 'n-d', label: 'Deleted', deletedAt: '2025-05-01 12:34:56.789012+00', seq: seq });
  await putEdge(conn, tenant, { id: 'e-ab', source: 'n-a', target: 'n-b', weight: 0.25, seq: 5 });
  await putEdge(conn, tenant, { id: 'e-bc', source: 'n-b', target: 'n-c', weight: 1, seq: 7 });
  await putLink(conn, tenant, 'node', 'n-a', 'm-1', 3);
  await putLink(conn, tenant, 'node', 'n-a', 'm-2', 5);
  await putLink(conn, tenant, 'edge', 'e-ab', 'm-1', 5);
}

type Dump = Record<string, Record<string, unknown>[]>;

/** Every snapshot table's rows of a tenant, as JSON-safe values (timestamps keep their µs). */
async function dump(conn: DuckDBConnection, tenant: string): Promise<Dump> {
  const out: Dump = {};
  for (const table of SNAPSHOT_TABLES) {
    const reader = await conn.runAndReadAll(`SELECT * FROM ${table} WHERE tenant_id = $1 ORDER BY ALL`, [tenant]);
    out[table] = reader.getRowObjectsJson() as Record<string, unknown>[];
  }
  return out;
}

async function rowCount(conn: DuckDBConnection, tenant: string): Promise<number> {
  let total = 0;
  for (const table of SNAPSHOT_TABLES) {
    const reader = await conn.runAndReadAll(`SELECT count(*)::INTEGER AS c FROM ${table} WHERE tenant_id = $1`, [tenant]);
    total += reader.getRowObjectsJS()[0]?.c as number;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// A logger whose lines the test can read.

interface LogLine {
  level: number;
  msg: string;
  key?: string;
  reason?: string;
}

function capturingLogger(): { log: Logger; lines: LogLine[]; warnings(): LogLine[] } {
  const lines: LogLine[] = [];
  const log: Logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

// ---------------------------------------------------------------------------------------------
// The stores under test.

interface StoreFixture {
  name: string;
  /** A fresh, empty store for one test. */
  open(): Promise<SnapshotStore>;
}

let s3: TestS3 | undefined;
let tmpRoot = '';
let storeCounter = 0;

beforeAll(async () => {
  tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'aeterna-snapshot-test-'));
  s3 = await startTestS3();
});

afterAll(async () => {
  await s3?.stop();
  await rm(tmpRoot, { recursive: true, force: true });
});

const fixtures: StoreFixture[] = [
  {
    name: 'directory store',
    open: async () => new DirectorySnapshotStore(await mkdtemp(path.join(tmpRoot, 'store-'))),
  },
  {
    name: 'S3 store (s3rver)',
    open: async () => {
      if (!s3) throw new Error('s3rver did not start');
      // A prefix per test keeps tests apart in the one bucket.
      return createSnapshotStore({
        kind: 's3',
        bucket: s3.bucket,
        prefix: `run/t${++storeCounter}`,
        region: s3.region,
        endpoint: s3.endpoint,
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        forcePathStyle: true,
      });
    },
  },
];

describe.each(fixtures)('$name', (fixture) => {
  let store: SnapshotStore;
  let logs: ReturnType<typeof capturingLogger>;
  let snapshotter: GraphSnapshotter;
  let source: Projection;
  let target: Projection;

  beforeEach(async () => {
    store = await fixture.open();
    logs = capturingLogger();
    snapshotter = new GraphSnapshotter({ store, tmpDir: path.join(tmpRoot, 'work'), log: logs.log });
    source = await openProjection();
    target = await openProjection();
  });

  afterEach(async () => {
    closeProjection(source);
    closeProjection(target);
    await store.close();
  });

  /** A writer bug rather than bit rot: replaces a file and re-signs the manifest to match it. */
  async function forgeFile(manifest: SnapshotManifest, table: SnapshotTable, content: Buffer): Promise<void> {
    const file = manifest.files[table];
    const sha256 = createHash('sha256').update(content).digest('hex');
    await store.put(file.key, content);
    const forged: SnapshotManifest = { ...manifest, files: { ...manifest.files, [table]: { ...file, sha256, bytes: content.length } } };
    await store.put(`${path.posix.dirname(file.key)}/manifest.json`, Buffer.from(JSON.stringify(forged)));
  }

  describe('store contract', () => {
    it('puts, gets, lists by prefix in order, overwrites and deletes', async () => {
      await store.put('acme/full-1/b.bin', Buffer.from('bee'));
      await store.put('acme/full-1/a.bin', new Uint8Array([1, 2, 3]));
      await store.put('acmeco/full-1/a.bin', Buffer.from('other tenant'));
      expect(Buffer.from((await store.get('acme/full-1/a.bin')) ?? []).toString('hex')).toBe('010203');
      expect(await store.list('acme/')).toEqual(['acme/full-1/a.bin', 'acme/full-1/b.bin']);
      expect(await store.list('acme/full-1/b')).toEqual(['acme/full-1/b.bin']);
      expect(await store.list('nobody/')).toEqual([]);

      await store.put('acme/full-1/a.bin', Buffer.from('replaced'));
      expect(Buffer.from((await store.get('acme/full-1/a.bin')) ?? []).toString()).toBe('replaced');

      await store.delete('acme/full-1/a.bin');
      await store.delete('acme/full-1/a.bin');
      expect(await store.get('acme/full-1/a.bin')).toBeNull();
      expect(await store.list('acme/')).toEqual(['acme/full-1/b.bin']);
    });

    it('puts from a file and downloads to a file; a missing key is null/false', async () => {
      const dir = await mkdtemp(path.join(tmpRoot, 'files-'));
      const src = path.join(dir, 'src.bin');
      const payload = Buffer.alloc(300_000, 7);
      await writeFile(src, payload);
      await store.put('t1/x/file.bin', { file: src });
      const dst = path.join(dir, 'dst.bin');
      expect(await store.getToFile('t1/x/file.bin', dst)).toBe(true);
      expect((await readFile(dst)).equals(payload)).toBe(true);
      expect(await store.getToFile('t1/x/missing.bin', path.join(dir, 'none.bin'))).toBe(false);
      expect(await store.get('t1/x/missing.bin')).toBeNull();
    });

    it('refuses keys that could escape the store or alias another key', async () => {
      for (const key of ['../etc/passwd', 'a/../b', 'a//b', '', '/abs', 'a/.hidden', 'a/b c']) {
        expect((await rejectionOf(store.put(key, Buffer.from('x')))).code, key).toBe('INVALID_ARGUMENT');
      }
      expect((await rejectionOf(store.list('../'))).code).toBe('INVALID_ARGUMENT');
    });
  });

  it('round-trips a full snapshot: rows identical, JSON, µs timestamps and NULLs included', async () => {
    await seedGraph(source.conn, 'acme');
    const before = await dump(source.conn, 'acme');
    const manifest = await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    expect(manifest).toMatchObject({ format: 1, tenantId: 'acme', kind: 'full', fromSeq: 0, seq: 10, purgedSeq: 0 });
    expect(manifest.files.graph_nodes.rows).toBe(4);
    expect(manifest.files.graph_edges.rows).toBe(2);
    expect(manifest.files.graph_element_sources.rows).toBe(3);
    expect(manifest.files.graph_nodes.key).toMatch(/^acme\/full-0000000000000010\/graph_nodes\.[0-9a-f]+\.parquet$/);

    // Into an empty projection (cold start) …
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 10, purgedSeq: 0 });
    expect(await dump(target.conn, 'acme')).toEqual(before);
    expect(before.graph_nodes?.find((r) => r.id === 'n-d')?.deleted_at).toBe('2025-05-01 12:34:56.789012+00');

    // … and over a projection that drifted: rows added, changed and lost since are all put back.
    await putNode(source.conn, 'acme', { id: 'n-x', seq: 11 });
    await putNode(source.conn, 'acme', { id: 'n-a', label: 'changed', seq: 11 });
    await source.conn.run(`DELETE FROM graph_edges WHERE tenant_id = 'acme' AND id = 'e-ab'`);
    expect(await snapshotter.restore(source.conn, 'acme')).toEqual({ seq: 10, purgedSeq: 0 });
    expect(await dump(source.conn, 'acme')).toEqual(before);

    const done = logs.lines.filter((l) => l.level === 30).map((l) => l.msg);
    expect(done.some((m) => m.startsWith('graph snapshot written: full'))).toBe(true);
    expect(done.some((m) => m.startsWith('graph snapshot restored to seq 10'))).toBe(true);
  });

  it('restores a full snapshot plus two deltas to the latest state, and deltas hold only changes', async () => {
    await seedGraph(source.conn, 'acme');
    await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });

    await putNode(source.conn, 'acme', { id: 'n-a', label: 'PostgreSQL 17', properties: { version: 17 }, seq: 11 });
    await putNode(source.conn, 'acme', { id: 'n-e', label: 'Redis', seq: 12 });
    await putEdge(source.conn, 'acme', { id: 'e-bc', source: 'n-b', target: 'n-c', deletedAt: '2025-06-01 00:00:00+00', seq: 12 });
    await putLink(source.conn, 'acme', 'node', 'n-e', 'm-3', 12);
    const first = await snapshotter.write(source.conn, 'acme', { seq: 12, purgedSeq: 0 }, { kind: 'delta' });
    expect(first).toMatchObject({ kind: 'delta', fromSeq: 10, seq: 12 });
    expect(first.files.graph_nodes.rows).toBe(2);
    expect(first.files.graph_edges.rows).toBe(1);

    // A cascade of memory m-1 drops n-a's link to it: no row is left to select on, but n-a's row
    // is touched, so the delta carries n-a's whole link set and restore replaces it.
    await source.conn.run(`DELETE FROM graph_element_sources WHERE tenant_id = 'acme' AND element = 'node' AND element_id = 'n-a' AND memory_id = 'm-1'`);
    await putNode(source.conn, 'acme', { id: 'n-a', label: 'PostgreSQL 17', properties: { version: 17 }, sourceMemoryId: 'm-2', seq: 14 });
    await putNode(source.conn, 'acme', { id: 'n-f', properties: { big: 'x'.repeat(5000) }, seq: 15 });
    const second = await snapshotter.write(source.conn, 'acme', { seq: 15, purgedSeq: 0 }, { kind: 'delta' });
    expect(second).toMatchObject({ kind: 'delta', fromSeq: 12, seq: 15 });

    const latest = await dump(source.conn, 'acme');
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 15, purgedSeq: 0 });
    expect(await dump(target.conn, 'acme')).toEqual(latest);
    expect(latest.graph_element_sources?.filter((r) => r.element_id === 'n-a').map((r) => r.memory_id)).toEqual(['m-2']);

    // Writing again at the same seq is a no-op that returns the existing manifest.
    const keysBefore = await store.list('acme/');
    expect(await snapshotter.write(source.conn, 'acme', { seq: 15, purgedSeq: 0 }, { kind: 'delta' })).toEqual(second);
    expect(await store.list('acme/')).toEqual(keysBefore);
  });

  it('writes a full snapshot instead of a delta that would span a purge', async () => {
    await seedGraph(source.conn, 'acme');
    await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    // A purge hard-deletes n-d: a delta has no row to say so, and would let n-d come back.
    await source.conn.run(`DELETE FROM graph_nodes WHERE tenant_id = 'acme' AND id = 'n-d'`);
    const manifest = await snapshotter.write(source.conn, 'acme', { seq: 11, purgedSeq: 11 }, { kind: 'delta' });
    expect(manifest).toMatchObject({ kind: 'full', fromSeq: 0, seq: 11, purgedSeq: 11 });

    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 11, purgedSeq: 11 });
    const nodes = (await dump(target.conn, 'acme')).graph_nodes ?? [];
    expect(nodes.map((r) => r.id)).toEqual(['n-a', 'n-b', 'n-c']);

    // The first snapshot of a tenant is full whatever was asked for.
    await seedGraph(source.conn, 'other');
    expect((await snapshotter.write(source.conn, 'other', { seq: 10, purgedSeq: 0 }, { kind: 'delta' })).kind).toBe('full');
  });

  it('refuses to write a snapshot older than one the store already holds', async () => {
    await seedGraph(source.conn, 'acme');
    await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    const err = await rejectionOf(snapshotter.write(source.conn, 'acme', { seq: 9, purgedSeq: 0 }, { kind: 'full' }));
    expect(err).toMatchObject({ code: 'CONFLICT', details: { snapshotSeq: 10, seq: 9 } });
  });

  it('refuses a snapshot whose Parquet file was corrupted, falls back to the previous full one and says so in the log', async () => {
    await seedGraph(source.conn, 'acme');
    const atTen = await dump(source.conn, 'acme');
    await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    await putNode(source.conn, 'acme', { id: 'n-new', seq: 20 });
    const newer = await snapshotter.write(source.conn, 'acme', { seq: 20, purgedSeq: 0 }, { kind: 'full' });
    await putNode(source.conn, 'acme', { id: 'n-newer', seq: 25 });
    await snapshotter.write(source.conn, 'acme', { seq: 25, purgedSeq: 0 }, { kind: 'delta' });

    // Flip bytes in the middle of the newest full snapshot's node file.
    const badKey = newer.files.graph_nodes.key;
    const bytes = Buffer.from((await store.get(badKey)) ?? []);
    expect(bytes.length).toBeGreaterThan(100);
    for (let i = 40; i < 48; i++) bytes[i] = (bytes[i] ?? 0) ^ 0xff;
    await store.put(badKey, bytes);

    // The tenant's rows must not be a mix: the target starts with junk rows of the tenant.
    await putNode(target.conn, 'acme', { id: 'n-junk', seq: 99 });
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 10, purgedSeq: 0 });
    expect(await dump(target.conn, 'acme')).toEqual(atTen);

    const warnings = logs.warnings();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ key: badKey });
    expect(warnings[0]?.reason).toMatch(/checksum mismatch/);
    expect(warnings[0]?.msg).toContain(badKey);
    // The delta on top of the refused full does not connect to seq 10 and is not applied.
    expect(logs.lines.some((l) => l.msg.startsWith('graph snapshot restored to seq 10 from 1 snapshot'))).toBe(true);
  });

  it('refuses a snapshot whose file matches its checksum but is not Parquet, leaving no half-loaded rows', async () => {
    await seedGraph(source.conn, 'acme');
    const manifest = await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    await forgeFile(manifest, 'graph_edges', Buffer.from('PAR1 this is not really parquet PAR1'));

    await putNode(target.conn, 'acme', { id: 'n-junk', seq: 99 });
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 0, purgedSeq: 0 });
    // Nothing usable: the tenant is cleared for a replay from the start, not left half-loaded.
    expect(await rowCount(target.conn, 'acme')).toBe(0);
    expect(logs.warnings()[0]?.reason).toMatch(/^unreadable: /);
  });

  it('applies a delta whole or not at all: a bad last file rolls back the tables before it', async () => {
    await seedGraph(source.conn, 'acme');
    const atTen = await dump(source.conn, 'acme');
    await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    await putNode(source.conn, 'acme', { id: 'n-a', label: 'changed in the delta', seq: 11 });
    await putLink(source.conn, 'acme', 'node', 'n-a', 'm-9', 11);
    const delta = await snapshotter.write(source.conn, 'acme', { seq: 11, purgedSeq: 0 }, { kind: 'delta' });
    await forgeFile(delta, 'graph_element_sources', Buffer.from('not parquet at all'));

    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 10, purgedSeq: 0 });
    expect(await dump(target.conn, 'acme')).toEqual(atTen);
    expect(logs.warnings().map((w) => w.key)).toEqual([delta.files.graph_element_sources.key]);
  });

  it('ignores a snapshot whose write crashed before its manifest, and prune clears it away', async () => {
    await seedGraph(source.conn, 'acme');
    const atTen = await dump(source.conn, 'acme');
    await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    await putNode(source.conn, 'acme', { id: 'n-new', seq: 20 });
    await snapshotter.write(source.conn, 'acme', { seq: 20, purgedSeq: 0 }, { kind: 'full' });
    await snapshotter.write(source.conn, 'acme', { seq: 30, purgedSeq: 0 }, { kind: 'full' });
    // The process died after uploading seq 20's files but before its manifest: simulate it.
    await store.delete('acme/full-0000000000000020/manifest.json');
    await store.delete('acme/full-0000000000000030/manifest.json');
    expect((await store.list('acme/full-0000000000000020/')).length).toBe(3);

    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 10, purgedSeq: 0 });
    expect(await dump(target.conn, 'acme')).toEqual(atTen);
    expect(logs.warnings()).toEqual([]);

    // A later write of the same seq succeeds; prune then removes the dead folder.
    await snapshotter.write(source.conn, 'acme', { seq: 30, purgedSeq: 0 }, { kind: 'full' });
    const { deleted } = await snapshotter.prune('acme', 2);
    expect(deleted).toEqual(['acme/full-0000000000000020']);
    expect(await store.list('acme/full-0000000000000020/')).toEqual([]);
  });

  it('prune keeps the newest fulls and their deltas; restore still reaches the latest seq', async () => {
    await seedGraph(source.conn, 'acme');
    for (const [seq, kind] of [[10, 'full'], [11, 'delta'], [20, 'full'], [21, 'delta'], [30, 'full'], [31, 'delta'], [32, 'delta']] as const) {
      await putNode(source.conn, 'acme', { id: `n-${seq}`, seq });
      await snapshotter.write(source.conn, 'acme', { seq, purgedSeq: 0 }, { kind });
    }
    const { deleted } = await snapshotter.prune('acme', 2);
    expect(deleted).toEqual(['acme/full-0000000000000010', 'acme/delta-0000000000000010-0000000000000011']);
    const folders = [...new Set((await store.list('acme/')).map((k) => k.split('/')[1]))];
    expect(folders).toEqual([
      'delta-0000000000000020-0000000000000021',
      'delta-0000000000000030-0000000000000031',
      'delta-0000000000000031-0000000000000032',
      'full-0000000000000020',
      'full-0000000000000030',
    ]);
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 32, purgedSeq: 0 });
    expect(await dump(target.conn, 'acme')).toEqual(await dump(source.conn, 'acme'));
    expect((await rejectionOf(snapshotter.prune('acme', 0))).code).toBe('INVALID_ARGUMENT');
  });

  it('keeps tenants apart: restoring one never touches another, and a manifest cannot name another tenant\'s file', async () => {
    await seedGraph(source.conn, 'acme');
    await seedGraph(source.conn, 'globex');
    await snapshotter.write(source.conn, 'acme', { seq: 10, purgedSeq: 0 }, { kind: 'full' });
    const globexManifest = await snapshotter.write(source.conn, 'globex', { seq: 10, purgedSeq: 0 }, { kind: 'full' });

    await putNode(source.conn, 'globex', { id: 'n-only-globex', seq: 11 });
    const globexBefore = await dump(source.conn, 'globex');
    await snapshotter.restore(source.conn, 'acme');
    expect(await dump(source.conn, 'globex')).toEqual(globexBefore);

    // A tampered manifest of acme pointing at globex's files is refused.
    const acmeKey = 'acme/full-0000000000000010/manifest.json';
    const acme = JSON.parse(Buffer.from((await store.get(acmeKey)) ?? []).toString()) as SnapshotManifest;
    await store.put(acmeKey, Buffer.from(JSON.stringify({ ...acme, files: globexManifest.files })));
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 0, purgedSeq: 0 });
    expect(logs.warnings()[0]?.reason).toMatch(/outside its folder/);
    expect(await rowCount(target.conn, 'globex')).toBe(0);

    // A file in acme's own folder that holds globex's rows loads none of them, and is refused.
    const fresh = await snapshotter.write(source.conn, 'acme', { seq: 12, purgedSeq: 0 }, { kind: 'full' });
    await forgeFile(fresh, 'graph_nodes', Buffer.from((await store.get(globexManifest.files.graph_nodes.key)) ?? []));
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 0, purgedSeq: 0 });
    expect(await rowCount(target.conn, 'globex')).toBe(0);
    expect(logs.warnings().map((w) => w.reason)).toContainEqual(expect.stringMatching(/holds 0 rows of the tenant, the manifest says 4/));
  });

  it('refuses tenant ids that break the id rule before any key or query is built', async () => {
    await seedGraph(source.conn, 'acme');
    for (const bad of ['../acme', 'acme/full-1', '', ' acme', 'a'.repeat(129), "x' OR 1=1"]) {
      expect((await rejectionOf(snapshotter.write(source.conn, bad, { seq: 10, purgedSeq: 0 }, { kind: 'full' }))).code, bad).toBe('INVALID_ARGUMENT');
      expect((await rejectionOf(snapshotter.restore(source.conn, bad))).code, bad).toBe('INVALID_ARGUMENT');
      expect((await rejectionOf(snapshotter.prune(bad))).code, bad).toBe('INVALID_ARGUMENT');
    }
    expect(await store.list('')).toEqual([]);
    expect(await rowCount(source.conn, 'acme')).toBe(9);
    // Ids that merely look like keywords are fine.
    await seedGraph(source.conn, 'dropbox');
    expect((await snapshotter.write(source.conn, 'dropbox', { seq: 10, purgedSeq: 0 }, { kind: 'full' })).tenantId).toBe('dropbox');
    expect((await rejectionOf(snapshotter.write(source.conn, 'dropbox', { seq: 5, purgedSeq: 9 }, { kind: 'full' }))).code).toBe('INVALID_ARGUMENT');
  });

  it('restores a tenant without snapshots as empty at seq 0', async () => {
    await putNode(target.conn, 'acme', { id: 'n-stale', seq: 4 });
    expect(await snapshotter.restore(target.conn, 'acme')).toEqual({ seq: 0, purgedSeq: 0 });
    expect(await rowCount(target.conn, 'acme')).toBe(0);
  });
});

describe('directory store', () => {
  it('leaves no temp files behind and removes emptied folders', async () => {
    const dir = await mkdtemp(path.join(tmpRoot, 'atomic-'));
    const store = new DirectorySnapshotStore(dir);
    await store.put('acme/full-1/a.parquet', Buffer.from('x'));
    await store.put('acme/full-1/a.parquet', Buffer.from('y'));
    expect(await readdir(path.join(dir, 'acme/full-1'))).toEqual(['a.parquet']);
    await store.delete('acme/full-1/a.parquet');
    expect(await readdir(dir)).toEqual([]);
  });

  it('is what createSnapshotStore builds for a dir config; s3 config builds the S3 store', () => {
    expect(createSnapshotStore({ kind: 'dir', dir: tmpRoot })).toBeInstanceOf(DirectorySnapshotStore);
    const s3Store = createSnapshotStore({ kind: 's3', bucket: 'b', prefix: '', region: 'us-east-1', forcePathStyle: true });
    expect(s3Store).toBeInstanceOf(S3SnapshotStore);
    return s3Store.close();
  });
});
