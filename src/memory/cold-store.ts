import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, LIST, VARCHAR, listValue, timestampTZValue, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import { z } from 'zod';
import type { SnapshotStoreConfig } from '../config.js';
import { contentHash } from '../embed/index.js';
import { createSnapshotStore, type SnapshotStore } from '../graph/index.js';
import type { Logger } from '../obs/index.js';
import { AeternaError, LAYERS, type Layer } from '../protocol/index.js';
import { newId } from '../store/index.js';
import { ID_PATTERN, assertId } from '../tenancy/index.js';

/**
 * One memory as the cold tier archives it: every column of its live row. Timestamps are Unix
 * microseconds (PostgreSQL's own precision; a JS Date would round them to milliseconds) and
 * json columns are PostgreSQL's text of the jsonb, which reads back as the identical jsonb.
 */
export interface ColdRow {
  id: string;
  tenantId: string;
  layer: Layer;
  scopeId: string;
  content: string;
  metadata: string;
  tags: string[];
  importance: number;
  embeddingModel: string | null;
  embedding: Float32Array | null;
  contentHash: string;
  version: number;
  accessCount: number;
  lastAccessedUs: bigint | null;
  createdBy: string;
  createdUs: bigint;
  updatedUs: bigint;
}

/** What one archive write produced: a Parquet file and the manifest that vouches for it. */
export interface ColdBatch {
  key: string;
  manifestKey: string;
  sha256: string;
  bytes: number;
  rows: number;
}

export interface ColdStoreOptions {
  store: SnapshotStore;
  /** Local scratch space for Parquet files on their way to or from the store. */
  tmpDir: string;
  log: Logger;
}

/**
 * Layout of a tenant's cold archive in the store:
 *
 *   {tenant}/cold/{yyyy-mm}/{batchId}.parquet         the memories of one move, one row each
 *   {tenant}/cold/{yyyy-mm}/{batchId}.manifest.json   sha256, size and row count of that file
 *
 * `yyyy-mm` is the UTC month of the memories' last activity (last access, else last update or
 * creation), so a month's folder holds what went quiet then. `batchId` is a UUIDv7: unique per
 * write (two processes never overwrite each other) and time-ordered (garbage collection reads a
 * file's age from its name). The manifest is written after the file and read back: a Parquet
 * file without one is a write that died and is never trusted.
 */
export const COLD_MANIFEST_FORMAT = 1;
const MANIFEST_SUFFIX = '.manifest.json';
const PARQUET_SUFFIX = '.parquet';
const MONTH = /^\d{4}-(0[1-9]|1[0-2])$/;
const BATCH_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const manifestSchema = z.object({
  format: z.literal(COLD_MANIFEST_FORMAT),
  tenantId: z.string().regex(ID_PATTERN),
  month: z.string().regex(MONTH),
  batchId: z.string().regex(BATCH_ID),
  createdAt: z.string().datetime({ offset: true }),
  files: z
    .array(
      z.object({
        key: z.string().min(1),
        sha256: z.string().regex(/^[0-9a-f]{64}$/),
        bytes: z.number().int().min(0),
        rows: z.number().int().min(0),
      }),
    )
    .length(1),
  memories: z.array(z.object({ id: z.string().uuid(), contentHash: z.string().regex(/^[0-9a-f]{64}$/), version: z.number().int().min(1) })),
});
export type ColdManifest = z.infer<typeof manifestSchema>;

export function coldPrefix(tenantId: string): string {
  return `${assertId('tenantId', tenantId)}/cold/`;
}

/** The UTC `yyyy-mm` of an instant: the archive folder of memories that went quiet then. */
export function coldMonth(at: Date): string {
  return at.toISOString().slice(0, 7);
}

export function manifestKeyOf(key: string): string {
  return `${key.slice(0, -PARQUET_SUFFIX.length)}${MANIFEST_SUFFIX}`;
}

/** A listed key split into its parts, or null when it is not a cold archive key of this tenant. */
export function parseColdKey(tenantId: string, key: string): { month: string; batchId: string; kind: 'parquet' | 'manifest' } | null {
  const prefix = coldPrefix(tenantId);
  if (!key.startsWith(prefix)) return null;
  const [month, file, ...rest] = key.slice(prefix.length).split('/');
  if (rest.length > 0 || month === undefined || file === undefined || !MONTH.test(month)) return null;
  const kind = file.endsWith(MANIFEST_SUFFIX) ? 'manifest' : file.endsWith(PARQUET_SUFFIX) ? 'parquet' : null;
  if (!kind) return null;
  const batchId = file.slice(0, -(kind === 'manifest' ? MANIFEST_SUFFIX : PARQUET_SUFFIX).length);
  return BATCH_ID.test(batchId) ? { month, batchId, kind } : null;
}

/** When a batch was written, from its UUIDv7 id (48 bits of Unix milliseconds). */
export function batchTime(batchId: string): Date {
  return new Date(Number.parseInt(batchId.replaceAll('-', '').slice(0, 12), 16));
}

/** A damaged or missing archive is data the server cannot produce: INTERNAL, naming the key. */
function damaged(key: string, problem: string, extra: Record<string, unknown> = {}): AeternaError {
  return new AeternaError('INTERNAL', `cold archive ${key}: ${problem}`, { key, ...extra });
}

/** The store could not be reached or read: UNAVAILABLE (try again later), naming the key. */
function unreachable(key: string, err: unknown): AeternaError {
  if (err instanceof AeternaError) return err;
  return new AeternaError('UNAVAILABLE', `cold archive ${key} could not be read: ${(err as Error).message}`, { key });
}

/** A batch is at most batchSize memories of bounded size: hashing it whole in memory is fine. */
async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const data = await fs.readFile(file);
  return { sha256: createHash('sha256').update(data).digest('hex'), bytes: data.length };
}

/** COPY takes its target only as a literal; the path is ours (tmpDir + fixed names), quoting keeps it one. */
const sqlLiteral = (text: string): string => `'${text.replaceAll("'", "''")}'`;

/**
 * The embedding is a BLOB of float32 little-endian: exact, compact, and one value per row for the
 * appender (a FLOAT[] of 384 values costs 384 crossings into DuckDB per row, measured ~4 ms).
 */
const COLUMNS_DDL = `id VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, layer VARCHAR NOT NULL, scope_id VARCHAR NOT NULL,
  content VARCHAR NOT NULL, metadata VARCHAR NOT NULL, tags VARCHAR[] NOT NULL, importance FLOAT NOT NULL,
  embedding_model VARCHAR, embedding BLOB, content_hash VARCHAR NOT NULL, version INTEGER NOT NULL,
  access_count INTEGER NOT NULL, last_accessed_at TIMESTAMPTZ, created_by VARCHAR NOT NULL,
  created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL`;

/** Timestamps leave DuckDB as microseconds, exactly as they went in. */
const READ_COLUMNS = `id, tenant_id, layer, scope_id, content, metadata, tags, importance, embedding_model, embedding,
  content_hash, version, access_count, epoch_us(last_accessed_at) AS last_accessed_us, created_by,
  epoch_us(created_at) AS created_us, epoch_us(updated_at) AS updated_us`;

interface ParquetRow {
  id: string;
  tenant_id: string;
  layer: string;
  scope_id: string;
  content: string;
  metadata: string;
  tags: string[];
  importance: number;
  embedding_model: string | null;
  embedding: Uint8Array | null;
  content_hash: string;
  version: number;
  access_count: number;
  last_accessed_us: bigint | null;
  created_by: string;
  created_us: bigint;
  updated_us: bigint;
}

function appendRow(appender: DuckDBAppender, row: ColdRow): void {
  appender.appendVarchar(row.id);
  appender.appendVarchar(row.tenantId);
  appender.appendVarchar(row.layer);
  appender.appendVarchar(row.scopeId);
  appender.appendVarchar(row.content);
  appender.appendVarchar(row.metadata);
  appender.appendList(row.tags, LIST(VARCHAR));
  appender.appendFloat(row.importance);
  if (row.embeddingModel === null) appender.appendNull();
  else appender.appendVarchar(row.embeddingModel);
  if (row.embedding === null) appender.appendNull();
  else appender.appendBlob(float32Bytes(row.embedding));
  appender.appendVarchar(row.contentHash);
  appender.appendInteger(row.version);
  appender.appendInteger(row.accessCount);
  if (row.lastAccessedUs === null) appender.appendNull();
  else appender.appendTimestampTZ(timestampTZValue(row.lastAccessedUs));
  appender.appendVarchar(row.createdBy);
  appender.appendTimestampTZ(timestampTZValue(row.createdUs));
  appender.appendTimestampTZ(timestampTZValue(row.updatedUs));
  appender.endRow();
}

/** Little-endian whatever the host: the archive must read back the same on any machine. */
function float32Bytes(v: Float32Array): Uint8Array {
  const out = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => out.writeFloatLE(x, i * 4));
  return out;
}

function float32s(bytes: Uint8Array): Float32Array {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length % 4 !== 0) throw new Error('embedding blob is not a whole number of float32s');
  return Float32Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
}

function fromParquet(row: ParquetRow): ColdRow {
  if (!(LAYERS as readonly string[]).includes(row.layer)) throw new Error(`unknown layer ${row.layer}`);
  return {
    id: row.id,
    tenantId: row.tenant_id,
    layer: row.layer as Layer,
    scopeId: row.scope_id,
    content: row.content,
    metadata: row.metadata,
    tags: row.tags,
    importance: row.importance,
    embeddingModel: row.embedding_model,
    embedding: row.embedding === null ? null : float32s(row.embedding),
    contentHash: row.content_hash,
    version: row.version,
    accessCount: row.access_count,
    lastAccessedUs: row.last_accessed_us,
    createdBy: row.created_by,
    createdUs: row.created_us,
    updatedUs: row.updated_us,
  };
}

/** The cold store config.tiering.store names, with scratch space private to this process. */
export function createColdStore(config: SnapshotStoreConfig, log: Logger, tmpDir = path.join(os.tmpdir(), `aeterna-cold-${process.pid}`)): ColdStore {
  return new ColdStore({ store: createSnapshotStore(config), tmpDir, log });
}

/**
 * The cold tier's archive: memories written to Parquet through DuckDB, kept in a SnapshotStore
 * (a directory, or S3 in cluster mode) under `{tenant}/cold/`. Nothing is trusted that has not
 * been checked: a write is read back from the store and compared (checksum, ids, content hashes)
 * before its manifest exists, and every read checks the file against its manifest's sha256 and
 * each memory's content against its content_hash.
 */
export class ColdStore {
  readonly description: string;
  private readonly store: SnapshotStore;
  private readonly tmpDir: string;
  private readonly log: Logger;
  private duck: Promise<DuckDBInstance> | undefined;

  constructor(opts: ColdStoreOptions) {
    this.store = opts.store;
    this.tmpDir = path.resolve(opts.tmpDir);
    this.log = opts.log;
    this.description = opts.store.description;
  }

  /** Archives `rows` (all of `tenantId`) as one Parquet file under `month`; resolves once verified. */
  async write(tenantId: string, month: string, rows: readonly ColdRow[]): Promise<ColdBatch> {
    const tenant = assertId('tenantId', tenantId);
    if (!MONTH.test(month)) throw new AeternaError('INVALID_ARGUMENT', 'month must be yyyy-mm', { month });
    if (rows.length === 0) throw new AeternaError('INVALID_ARGUMENT', 'nothing to archive');
    for (const row of rows) {
      if (row.tenantId !== tenant) throw new AeternaError('INTERNAL', 'a cold batch holds one tenant only', { tenantId: tenant, id: row.id });
    }
    const batchId = newId();
    const key = `${coldPrefix(tenant)}${month}/${batchId}${PARQUET_SUFFIX}`;
    const manifestKey = manifestKeyOf(key);
    const work = await this.workDir();
    let stored = false;
    try {
      const local = path.join(work, 'batch.parquet');
      await this.withConnection(async (conn) => {
        const table = `cold_${batchId.replaceAll('-', '')}`;
        await conn.run(`CREATE TABLE ${table} (${COLUMNS_DDL})`);
        try {
          const appender = await conn.createAppender(table);
          try {
            for (const row of rows) appendRow(appender, row);
            appender.flushSync();
          } finally {
            appender.closeSync();
          }
          await conn.run(`COPY (SELECT * FROM ${table} WHERE tenant_id = $1 ORDER BY id) TO ${sqlLiteral(local)} (FORMAT parquet, COMPRESSION zstd)`, [tenant]);
        } finally {
          await conn.run(`DROP TABLE IF EXISTS ${table}`);
        }
      });
      const { sha256, bytes } = await sha256File(local);
      stored = true;
      await this.store.put(key, { file: local });
      await this.verifyWritten(tenant, key, { sha256, bytes }, rows, work);
      const manifest: ColdManifest = {
        format: COLD_MANIFEST_FORMAT,
        tenantId: tenant,
        month,
        batchId,
        createdAt: new Date().toISOString(),
        files: [{ key, sha256, bytes, rows: rows.length }],
        memories: rows.map((r) => ({ id: r.id, contentHash: r.contentHash, version: r.version })),
      };
      // Last: its presence is what makes the batch exist.
      await this.store.put(manifestKey, Buffer.from(JSON.stringify(manifest)));
      const readBack = await this.readManifest(tenant, key);
      if (readBack.files[0]?.sha256 !== sha256) throw damaged(manifestKey, 'manifest read back differs from what was written');
      this.log.debug({ tenantId: tenant, key, rows: rows.length, bytes }, 'cold batch written');
      return { key, manifestKey, sha256, bytes, rows: rows.length };
    } catch (err) {
      // A file that never got a verified manifest is not an archive; remove what we can.
      if (stored) await this.deleteBatch(tenant, key).catch(() => undefined);
      throw err;
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  /**
   * The archived rows of `ids` in the file `key`, after checking the file against its manifest
   * and each memory's content against its hash. Throws INTERNAL naming the key when the archive
   * is missing or damaged, UNAVAILABLE when the store cannot be read. Ids the file does not hold
   * are absent from the result.
   */
  async read(tenantId: string, key: string, ids: readonly string[]): Promise<Map<string, ColdRow>> {
    const tenant = assertId('tenantId', tenantId);
    if (parseColdKey(tenant, key)?.kind !== 'parquet') throw damaged(key, `is not a cold archive key of tenant ${tenant}`);
    const manifest = await this.readManifest(tenant, key);
    const expected = manifest.files[0];
    if (!expected || expected.key !== key) throw damaged(key, 'the manifest names another file');
    const work = await this.workDir();
    try {
      const local = path.join(work, 'batch.parquet');
      let found: boolean;
      try {
        found = await this.store.getToFile(key, local);
      } catch (err) {
        throw unreachable(key, err);
      }
      if (!found) throw damaged(key, 'file missing');
      const actual = await sha256File(local);
      if (actual.sha256 !== expected.sha256 || actual.bytes !== expected.bytes) {
        throw damaged(key, `checksum mismatch (expected sha256 ${expected.sha256}, ${expected.bytes} bytes; got ${actual.sha256}, ${actual.bytes} bytes)`, {
          expectedSha256: expected.sha256,
          actualSha256: actual.sha256,
        });
      }
      const rows = await this.readRows(local, key, tenant, ids);
      const result = new Map<string, ColdRow>();
      for (const row of rows) {
        if (contentHash(row.content) !== row.contentHash) throw damaged(key, `content of memory ${row.id} does not match its content_hash`, { id: row.id });
        result.set(row.id, row);
      }
      return result;
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  /** Every archive key of the tenant (Parquet files and manifests), sorted. */
  async list(tenantId: string): Promise<string[]> {
    const prefix = coldPrefix(tenantId);
    return (await this.store.list(prefix)).filter((key) => parseColdKey(tenantId, key) !== null);
  }

  /** Removes a batch: manifest first, so a crash half-way leaves a file nothing trusts, never a manifest without its file. */
  async deleteBatch(tenantId: string, key: string): Promise<void> {
    const parsed = parseColdKey(tenantId, key);
    if (!parsed) throw new AeternaError('INVALID_ARGUMENT', 'not a cold archive key of this tenant', { key });
    const parquet = parsed.kind === 'parquet' ? key : `${key.slice(0, -MANIFEST_SUFFIX.length)}${PARQUET_SUFFIX}`;
    await this.store.delete(manifestKeyOf(parquet));
    await this.store.delete(parquet);
  }

  /** Closes DuckDB and the store (the cold store owns its SnapshotStore). */
  async close(): Promise<void> {
    const duck = this.duck;
    this.duck = undefined;
    if (duck) (await duck).closeSync();
    await this.store.close();
  }

  private async readManifest(tenant: string, key: string): Promise<ColdManifest> {
    const manifestKey = manifestKeyOf(key);
    let bytes: Uint8Array | null;
    try {
      bytes = await this.store.get(manifestKey);
    } catch (err) {
      throw unreachable(manifestKey, err);
    }
    if (!bytes) throw damaged(key, `manifest ${manifestKey} missing`);
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      throw damaged(key, `manifest ${manifestKey} is not JSON`);
    }
    const parsed = manifestSchema.safeParse(json);
    if (!parsed.success) throw damaged(key, `manifest ${manifestKey} is invalid: ${parsed.error.issues[0]?.message ?? 'unknown'}`);
    if (parsed.data.tenantId !== tenant) throw damaged(key, `manifest ${manifestKey} belongs to another tenant`);
    return parsed.data;
  }

  /** Reads the stored copy back and compares it with what was meant to be written. */
  private async verifyWritten(tenant: string, key: string, expected: { sha256: string; bytes: number }, rows: readonly ColdRow[], work: string): Promise<void> {
    const copy = path.join(work, 'verify.parquet');
    if (!(await this.store.getToFile(key, copy))) throw damaged(key, 'not found right after it was written');
    const actual = await sha256File(copy);
    if (actual.sha256 !== expected.sha256 || actual.bytes !== expected.bytes) throw damaged(key, 'stored copy differs from the file written');
    // Identity and content of every row, hashed inside DuckDB: the verification reads no embedding.
    const stored = await this.withConnection(async (conn) =>
      (
        await conn.runAndReadAll('SELECT id, content_hash, version, sha256(content) AS actual FROM read_parquet($1) WHERE tenant_id = $2', [copy, tenant], [VARCHAR, VARCHAR])
      ).getRowObjectsJS() as unknown as { id: string; content_hash: string; version: number; actual: string }[],
    ).catch((err: unknown) => {
      throw damaged(key, `stored copy is unreadable: ${(err as Error).message}`);
    });
    const want = new Map(rows.map((r) => [r.id, r]));
    if (stored.length !== rows.length) throw damaged(key, `stored copy holds ${stored.length} rows, expected ${rows.length}`);
    for (const row of stored) {
      const original = want.get(row.id);
      if (!original || original.contentHash !== row.content_hash || original.version !== row.version || row.actual !== row.content_hash) {
        throw damaged(key, `stored copy of memory ${row.id} differs from the live row`, { id: row.id });
      }
    }
  }

  /** The rows of `ids` of the tenant in a local Parquet file. */
  private async readRows(file: string, key: string, tenant: string, ids: readonly string[]): Promise<ColdRow[]> {
    try {
      return await this.withConnection(async (conn) => {
        const reader = await conn.runAndReadAll(
          `SELECT ${READ_COLUMNS} FROM read_parquet($1) WHERE tenant_id = $2 AND list_contains($3, id)`,
          [file, tenant, listValue([...ids])],
          [VARCHAR, VARCHAR, LIST(VARCHAR)],
        );
        return (reader.getRowObjectsJS() as unknown as ParquetRow[]).map(fromParquet);
      });
    } catch (err) {
      if (err instanceof AeternaError) throw err;
      throw damaged(key, `unreadable: ${(err as Error).message}`);
    }
  }

  private async withConnection<T>(fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
    // One in-memory DuckDB for the process; a connection per call, so calls never share a transaction.
    if (!this.duck) {
      const created = DuckDBInstance.create(':memory:');
      // A failed start is retried by the next call, not remembered forever.
      created.catch(() => {
        if (this.duck === created) this.duck = undefined;
      });
      this.duck = created;
    }
    const conn = await (await this.duck).connect();
    try {
      return await fn(conn);
    } finally {
      conn.closeSync();
    }
  }

  private async workDir(): Promise<string> {
    await fs.mkdir(this.tmpDir, { recursive: true });
    return fs.mkdtemp(path.join(this.tmpDir, 'cold-'));
  }
}
