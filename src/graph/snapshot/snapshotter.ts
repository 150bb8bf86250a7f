import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Logger } from '../../obs/index.js';
import { AeternaError } from '../../protocol/index.js';
import { assertId } from '../../tenancy/index.js';
import { SNAPSHOT_TABLES, type SnapshotTable } from '../schema.js';
import type { GraphSnapshotRestorer } from './index.js';
import {
  MANIFEST_FORMAT,
  groupSnapshots,
  manifestKey,
  manifestSchema,
  snapshotDir,
  type SnapshotFile,
  type SnapshotKind,
  type SnapshotManifest,
  type SnapshotRef,
} from './manifest.js';
import { assertKey, type SnapshotStore } from './store.js';
import { inTransaction } from '../duck.js';

/** How far a tenant's projection has applied the graph log: the position a snapshot captures. */
export interface SnapshotPosition {
  seq: number;
  /** Seq of the newest purge (hard delete) the projection has applied; 0 if none. */
  purgedSeq: number;
}

export interface GraphSnapshotterOptions {
  store: SnapshotStore;
  /** Local scratch space for Parquet files on their way to or from the store. */
  tmpDir: string;
  log: Logger;
}

/**
 * Graph element rows whose own row changed after $2. A delta carries every link of such an
 * element, and restoring it first drops the element's old links: that is how a delta expresses
 * a link removed by a cascade, which leaves no row behind to select on. It relies on the writer
 * bumping an element's `updated_seq` whenever its set of source links changes.
 */
const CHANGED_ELEMENTS = `((element = 'node' AND element_id IN (SELECT id FROM graph_nodes WHERE tenant_id = $1 AND updated_seq > $2))
  OR (element = 'edge' AND element_id IN (SELECT id FROM graph_edges WHERE tenant_id = $1 AND updated_seq > $2)))`;

/** The rows of `table` a delta after $2 holds (the tenant is $1). */
function deltaRows(table: SnapshotTable): string {
  return table === 'graph_element_sources' ? `(updated_seq > $2 OR ${CHANGED_ELEMENTS})` : 'updated_seq > $2';
}

/** COPY takes its target only as a literal; the path is ours (tmpDir + fixed names), quoting keeps it a literal. */
const sqlLiteral = (text: string): string => `'${text.replaceAll("'", "''")}'`;

async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

function assertPosition(position: SnapshotPosition): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (!ok(position.seq) || !ok(position.purgedSeq) || position.purgedSeq > position.seq) {
    throw new AeternaError('INVALID_ARGUMENT', 'snapshot position must be whole seqs with purgedSeq <= seq', { ...position });
  }
}

const elapsedMs = (since: number): number => Math.round(performance.now() - since);
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** A snapshot whose manifest parsed and whose files are local and match their checksums. */
interface VerifiedSnapshot {
  manifest: SnapshotManifest;
  localFiles: Record<SnapshotTable, string>;
}

/** A reason to refuse a snapshot, with the key it concerns: what the warning names. */
class Refusal extends Error {
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(reason);
  }
}

/**
 * Writes a tenant's DuckDB projection to Parquet snapshots (full, or a delta since the newest
 * snapshot) and rebuilds it from them. A snapshot is only ever trusted whole: its manifest must
 * exist (written last, so a crash mid-write leaves nothing visible), and every file must match
 * the manifest's sha256 — a flipped byte inside a compressed Parquet page can otherwise read
 * back as plausible wrong numbers. A snapshot that fails either is refused with a warning and an
 * older one is used; the caller replays the graph log from whatever seq restore returns, so
 * refusing costs time, never data.
 *
 * Each call runs its own DuckDB transactions on `conn`: pass a connection that is not inside a
 * transaction and that nothing else uses until the call returns.
 */
export class GraphSnapshotter implements GraphSnapshotRestorer {
  private readonly store: SnapshotStore;
  private readonly tmpDir: string;
  private readonly log: Logger;

  constructor(opts: GraphSnapshotterOptions) {
    this.store = opts.store;
    this.tmpDir = path.resolve(opts.tmpDir);
    this.log = opts.log;
  }

  /**
   * Snapshots the tenant at `position`, which must be what `conn`'s tables hold for it. A delta
   * is written only on top of an existing full snapshot and never across a purge (it cannot say
   * "this row is gone"); otherwise a full one is written. Returns the committed manifest; when
   * the newest snapshot is already at this seq, returns that one without writing.
   */
  async write(conn: DuckDBConnection, tenantId: string, position: SnapshotPosition, opts: { kind: SnapshotKind }): Promise<SnapshotManifest> {
    const tenant = assertId('tenantId', tenantId);
    assertPosition(position);
    const started = performance.now();
    const committed = (await this.scan(tenant)).filter((ref) => ref.committed);
    const newest = committed.at(-1);
    const newestFull = committed.filter((ref) => ref.kind === 'full').at(-1);
    if (newest && newest.seq > position.seq) {
      throw new AeternaError('CONFLICT', `the snapshot store already holds seq ${newest.seq} of this tenant, newer than ${position.seq}`, {
        snapshotSeq: newest.seq,
        seq: position.seq,
      });
    }
    // Nothing changed since the newest snapshot. A full request still writes when the newest is
    // a delta: a full shortens the chain restore must walk and lets prune drop the old one.
    let kind = opts.kind;
    const current = kind === 'delta' ? newest : newestFull;
    if (current && current.seq === position.seq) {
      const manifest = await this.readManifest(tenant, current).catch(() => null);
      if (manifest) return manifest;
      // Unreadable: a delta on top of it would be unreachable, so replace it with a full one.
      kind = 'full';
    }

    let fromSeq = 0;
    if (kind === 'delta') {
      if (!newestFull || !newest) {
        kind = 'full';
      } else if (position.purgedSeq > newest.seq) {
        kind = 'full';
        this.log.info({ tenantId: tenant, fromSeq: newest.seq, purgedSeq: position.purgedSeq }, 'graph snapshot: a purge happened since the last snapshot, writing a full one instead of a delta');
      } else {
        fromSeq = newest.seq;
      }
    }

    const dir = snapshotDir(tenant, kind, fromSeq, position.seq);
    const writeId = randomBytes(4).toString('hex');
    const work = await this.workDir(tenant);
    try {
      const rows = await this.exportTables(conn, tenant, kind, fromSeq, work);
      const files = {} as Record<SnapshotTable, SnapshotFile>;
      for (const table of SNAPSHOT_TABLES) {
        const local = path.join(work, `${table}.parquet`);
        const { sha256, bytes } = await sha256File(local);
        const key = assertKey(`${dir}/${table}.${writeId}.parquet`);
        await this.store.put(key, { file: local });
        files[table] = { key, sha256, bytes, rows: rows[table] };
      }
      const manifest: SnapshotManifest = {
        format: MANIFEST_FORMAT,
        tenantId: tenant,
        kind,
        fromSeq,
        seq: position.seq,
        purgedSeq: position.purgedSeq,
        createdAt: new Date().toISOString(),
        files,
      };
      // Last: its presence is what makes the snapshot exist.
      await this.store.put(manifestKey(dir), Buffer.from(JSON.stringify(manifest, null, 2)));
      const totals = sumFiles(manifest);
      this.log.info(
        { tenantId: tenant, kind, fromSeq, seq: position.seq, rows: totals.rows, bytes: totals.bytes, ms: elapsedMs(started), store: this.store.description },
        `graph snapshot written: ${kind} ${dir} (${totals.rows} rows, ${totals.bytes} bytes)`,
      );
      return manifest;
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Replaces the tenant's rows in `conn` with the newest usable full snapshot plus every
   * contiguous delta after it, and returns the seq they reach (the caller replays the log from
   * there). No usable snapshot: the tenant's rows are cleared and `{seq: 0, purgedSeq: 0}` returned.
   */
  async restore(conn: DuckDBConnection, tenantId: string): Promise<SnapshotPosition> {
    const tenant = assertId('tenantId', tenantId);
    const started = performance.now();
    const committed = (await this.scan(tenant)).filter((ref) => ref.committed);
    const fulls = committed.filter((ref) => ref.kind === 'full').reverse();
    const deltas = committed.filter((ref) => ref.kind === 'delta');
    const work = await this.workDir(tenant);
    const totals = { rows: 0, bytes: 0, snapshots: 0 };
    const count = (manifest: SnapshotManifest) => {
      const sums = sumFiles(manifest);
      totals.rows += sums.rows;
      totals.bytes += sums.bytes;
      totals.snapshots += 1;
    };
    try {
      let position: SnapshotPosition | null = null;
      for (const full of fulls) {
        const manifest = await this.applyIfValid(conn, tenant, full, work, (snapshot) => this.loadFull(conn, tenant, snapshot));
        if (manifest) {
          count(manifest);
          position = { seq: manifest.seq, purgedSeq: manifest.purgedSeq };
          break;
        }
      }
      if (!position) {
        await inTransaction(conn, () => this.clearTenant(conn, tenant));
        this.log.info({ tenantId: tenant, ms: elapsedMs(started) }, 'graph snapshot restore: no usable snapshot, replaying the whole log');
        return { seq: 0, purgedSeq: 0 };
      }
      // Several deltas can start at one seq (two writers); the one reaching furthest wins, and a
      // refused one gives way to the next before the chain is declared to end here.
      for (;;) {
        const from: number = position.seq;
        const next = deltas.filter((ref) => ref.fromSeq === from).sort((a, b) => b.seq - a.seq);
        let manifest: SnapshotManifest | null = null;
        for (const delta of next) {
          manifest = await this.applyIfValid(conn, tenant, delta, work, (snapshot) => this.applyDelta(conn, tenant, snapshot));
          if (manifest) break;
        }
        if (!manifest) break;
        count(manifest);
        position = { seq: manifest.seq, purgedSeq: manifest.purgedSeq };
      }
      this.log.info(
        { tenantId: tenant, seq: position.seq, purgedSeq: position.purgedSeq, snapshots: totals.snapshots, rows: totals.rows, bytes: totals.bytes, ms: elapsedMs(started) },
        `graph snapshot restored to seq ${position.seq} from ${totals.snapshots} snapshot(s) (${totals.rows} rows, ${totals.bytes} bytes)`,
      );
      return position;
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Deletes every full snapshot older than the newest `keep` ones, with the deltas built on
   * them, plus folders of writes that never finished. Returns the folders removed.
   */
  async prune(tenantId: string, keep = 2): Promise<{ deleted: string[] }> {
    const tenant = assertId('tenantId', tenantId);
    if (!Number.isInteger(keep) || keep < 1) throw new AeternaError('INVALID_ARGUMENT', 'keep must be a whole number >= 1', { keep });
    const refs = await this.scan(tenant);
    const committed = refs.filter((ref) => ref.committed);
    const fulls = committed.filter((ref) => ref.kind === 'full');
    const oldestKept = fulls.at(-Math.min(keep, fulls.length))?.seq ?? 0;
    const newestSeq = committed.at(-1)?.seq ?? 0;
    const deleted: string[] = [];
    for (const ref of refs) {
      const drop = ref.committed
        ? (ref.kind === 'full' ? ref.seq : ref.fromSeq) < oldestKept
        : // No manifest and older than a committed snapshot: a write that died, not one under way.
          ref.seq < newestSeq;
      if (!drop) continue;
      // Manifest first: from then on the folder is an unfinished write, never a broken snapshot.
      const manifest = manifestKey(ref.dir);
      if (ref.keys.includes(manifest)) await this.store.delete(manifest);
      for (const key of ref.keys) if (key !== manifest) await this.store.delete(key);
      deleted.push(ref.dir);
    }
    if (deleted.length > 0) this.log.info({ tenantId: tenant, deleted: deleted.length, keep }, 'graph snapshots pruned');
    return { deleted };
  }

  private async scan(tenant: string): Promise<SnapshotRef[]> {
    return groupSnapshots(tenant, await this.store.list(`${tenant}/`));
  }

  private async workDir(tenant: string): Promise<string> {
    await fs.mkdir(this.tmpDir, { recursive: true });
    return fs.mkdtemp(path.join(this.tmpDir, `snapshot-${tenant}-`));
  }

  /** Every table's rows of the tenant (full) or changed after fromSeq (delta), as one consistent cut. */
  private async exportTables(conn: DuckDBConnection, tenant: string, kind: SnapshotKind, fromSeq: number, work: string): Promise<Record<SnapshotTable, number>> {
    const rows = {} as Record<SnapshotTable, number>;
    await inTransaction(conn, async () => {
      for (const table of SNAPSHOT_TABLES) {
        const where = kind === 'full' ? 'tenant_id = $1' : `tenant_id = $1 AND ${deltaRows(table)}`;
        const target = sqlLiteral(path.join(work, `${table}.parquet`));
        const started = performance.now();
        const result = await conn.run(
          `COPY (SELECT * FROM ${table} WHERE ${where}) TO ${target} (FORMAT parquet, COMPRESSION zstd)`,
          kind === 'full' ? [tenant] : [tenant, BigInt(fromSeq)],
        );
        rows[table] = result.rowsChanged;
        this.log.debug({ tenantId: tenant, table, kind, rows: rows[table], ms: elapsedMs(started) }, `graph snapshot: exported ${table}`);
      }
    });
    return rows;
  }

  private async readManifest(tenant: string, ref: SnapshotRef): Promise<SnapshotManifest> {
    const key = manifestKey(ref.dir);
    const bytes = await this.store.get(key);
    if (!bytes) throw new Refusal(key, 'manifest missing');
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      throw new Refusal(key, 'manifest is not JSON');
    }
    const parsed = manifestSchema.safeParse(json);
    if (!parsed.success) throw new Refusal(key, `manifest invalid: ${parsed.error.issues[0]?.message ?? 'unknown'}`);
    const manifest = parsed.data;
    if (manifest.tenantId !== tenant || manifest.kind !== ref.kind || manifest.seq !== ref.seq || manifest.fromSeq !== ref.fromSeq) {
      throw new Refusal(key, 'manifest does not match its folder (tenant, kind or seqs)');
    }
    for (const table of SNAPSHOT_TABLES) {
      const fileKey = manifest.files[table].key;
      // A manifest may only name files inside its own folder: never another tenant's.
      if (!fileKey.startsWith(`${ref.dir}/`)) throw new Refusal(key, `manifest names a file outside its folder: ${fileKey}`);
      assertKey(fileKey);
    }
    return manifest;
  }

  private async download(tenant: string, ref: SnapshotRef, localDir: string): Promise<VerifiedSnapshot> {
    const manifest = await this.readManifest(tenant, ref);
    const localFiles = {} as Record<SnapshotTable, string>;
    for (const table of SNAPSHOT_TABLES) {
      const expected = manifest.files[table];
      const local = path.join(localDir, `${table}.parquet`);
      let found: boolean;
      try {
        found = await this.store.getToFile(expected.key, local);
      } catch (err) {
        throw new Refusal(expected.key, `could not be read: ${messageOf(err)}`);
      }
      if (!found) throw new Refusal(expected.key, 'file missing');
      const actual = await sha256File(local);
      if (actual.sha256 !== expected.sha256 || actual.bytes !== expected.bytes) {
        throw new Refusal(expected.key, `checksum mismatch (expected sha256 ${expected.sha256}, ${expected.bytes} bytes; got ${actual.sha256}, ${actual.bytes} bytes)`);
      }
      localFiles[table] = local;
    }
    return { manifest, localFiles };
  }

  /**
   * Downloads and verifies a snapshot, then applies it; any failure refuses the snapshot with a
   * warning naming the key and reason, leaves the tables as they were (the apply is one
   * transaction) and returns null so the caller can fall back.
   */
  private async applyIfValid(
    conn: DuckDBConnection,
    tenant: string,
    ref: SnapshotRef,
    work: string,
    apply: (snapshot: VerifiedSnapshot) => Promise<void>,
  ): Promise<SnapshotManifest | null> {
    const localDir = await fs.mkdtemp(path.join(work, 'dl-'));
    try {
      const snapshot = await this.download(tenant, ref, localDir);
      await inTransaction(conn, () => apply(snapshot));
      return snapshot.manifest;
    } catch (err) {
      const refusal = err instanceof Refusal ? err : new Refusal(manifestKey(ref.dir), `unreadable: ${messageOf(err)}`);
      this.log.warn(
        { tenantId: tenant, key: refusal.key, reason: refusal.message, snapshot: ref.dir },
        `graph snapshot refused: ${refusal.key}: ${refusal.message}; falling back to an older snapshot and the log`,
      );
      return null;
    } finally {
      // One snapshot's files at a time on local disk, however long the chain.
      await fs.rm(localDir, { recursive: true, force: true });
    }
  }

  private async clearTenant(conn: DuckDBConnection, tenant: string): Promise<void> {
    for (const table of SNAPSHOT_TABLES) await conn.run(`DELETE FROM ${table} WHERE tenant_id = $1`, [tenant]);
  }

  private async loadFull(conn: DuckDBConnection, tenant: string, snapshot: VerifiedSnapshot): Promise<void> {
    await this.clearTenant(conn, tenant);
    for (const table of SNAPSHOT_TABLES) {
      await this.insertFile(conn, tenant, table, snapshot, 'INSERT');
    }
  }

  private async applyDelta(conn: DuckDBConnection, tenant: string, snapshot: VerifiedSnapshot): Promise<void> {
    for (const table of SNAPSHOT_TABLES) {
      if (table === 'graph_element_sources') {
        // The delta carries the whole link set of every node and edge in it (CHANGED_ELEMENTS).
        await conn.run(
          `DELETE FROM graph_element_sources WHERE tenant_id = $1
             AND ((element = 'node' AND element_id IN (SELECT id FROM read_parquet($2)))
               OR (element = 'edge' AND element_id IN (SELECT id FROM read_parquet($3))))`,
          [tenant, snapshot.localFiles.graph_nodes, snapshot.localFiles.graph_edges],
        );
      }
      await this.insertFile(conn, tenant, table, snapshot, 'INSERT OR REPLACE');
    }
  }

  /**
   * BY NAME: columns match by name, not position, so a file stays loadable if a column is added
   * later. Rows of any other tenant in a file are ignored, and the count must match the manifest.
   */
  private async insertFile(conn: DuckDBConnection, tenant: string, table: SnapshotTable, snapshot: VerifiedSnapshot, verb: 'INSERT' | 'INSERT OR REPLACE'): Promise<void> {
    const expected = snapshot.manifest.files[table];
    const started = performance.now();
    let result;
    try {
      result = await conn.run(`${verb} INTO ${table} BY NAME SELECT * FROM read_parquet($1) WHERE tenant_id = $2`, [snapshot.localFiles[table], tenant]);
    } catch (err) {
      throw new Refusal(expected.key, `unreadable: ${messageOf(err)}`);
    }
    if (result.rowsChanged !== expected.rows) {
      throw new Refusal(expected.key, `holds ${result.rowsChanged} rows of the tenant, the manifest says ${expected.rows}`);
    }
    this.log.debug({ tenantId: tenant, table, rows: expected.rows, ms: elapsedMs(started) }, `graph snapshot: loaded ${table}`);
  }
}

function sumFiles(manifest: SnapshotManifest): { rows: number; bytes: number } {
  let rows = 0;
  let bytes = 0;
  for (const table of SNAPSHOT_TABLES) {
    rows += manifest.files[table].rows;
    bytes += manifest.files[table].bytes;
  }
  return { rows, bytes };
}
