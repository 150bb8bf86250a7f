import * as Y from 'yjs';
import { AeternaError, type Actor } from '../protocol/index.js';
import type { Db, Sql } from '../store/index.js';
import { assertId } from '../tenancy/index.js';
import { readSyncMessage, syncStep1Message, syncStep2Message } from './sync.js';

export const DEFAULT_MAX_UPDATE_BYTES = 1024 * 1024;
export const DEFAULT_COMPACT_EVERY = 100;

export interface DocStoreOptions {
  db: Db;
  /** A larger update is refused with PAYLOAD_TOO_LARGE. */
  maxUpdateBytes?: number;
  /** Fold the update log into the snapshot once this many updates follow it. */
  compactEvery?: number;
}

export interface AppendResult {
  /** The update's position in the document's log; null when it changed nothing and was not stored. */
  seq: number | null;
  /** True when this append also folded the log into a new snapshot. */
  compacted: boolean;
}

export interface SyncResult {
  /** The answer to send back: step 2 for a step 1, null for messages that need none. */
  reply: Uint8Array | null;
  /** For a step 1, the server's own step 1, so the client can answer with what the server lacks. */
  step1: Uint8Array | null;
  /** What a step 2 or update message stored, for relaying to the document's other editors. */
  stored: { update: Uint8Array; seq: number } | null;
}

type Seq = string | number | bigint;

/**
 * Yjs documents kept as bytes in the tenant's database: an append-only log of updates and a
 * snapshot that periodically absorbs it. Nothing is held in memory between calls, so every gateway
 * node can serve every document and a crash loses nothing that was acknowledged.
 */
export class DocStore {
  private readonly db: Db;
  private readonly maxUpdateBytes: number;
  private readonly compactEvery: number;

  constructor(opts: DocStoreOptions) {
    this.db = opts.db;
    this.maxUpdateBytes = opts.maxUpdateBytes ?? DEFAULT_MAX_UPDATE_BYTES;
    this.compactEvery = opts.compactEvery ?? DEFAULT_COMPACT_EVERY;
    for (const [name, value] of [['maxUpdateBytes', this.maxUpdateBytes], ['compactEvery', this.compactEvery]] as const) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
    }
  }

  /** The whole document as one Yjs update; a document never written is an empty one. */
  async load(tenantId: string, docId: string): Promise<Uint8Array> {
    assertId('docId', docId);
    return this.db.withTenant(tenantId, (sql) => readState(sql, tenantId, docId));
  }

  /** Validates and stores one Yjs update; resolves after the commit. */
  async append(tenantId: string, docId: string, update: Uint8Array, actor: Actor): Promise<AppendResult> {
    assertId('docId', docId);
    if (this.inspect(update).empty) return { seq: null, compacted: false };
    return this.db.withTenant(tenantId, async (sql) => {
      const head = await sql.query<{ head_seq: Seq; snapshot_seq: Seq }>(
        `INSERT INTO docs (tenant_id, doc_id, head_seq) VALUES ($1, $2, 1)
         ON CONFLICT (tenant_id, doc_id) DO UPDATE SET head_seq = docs.head_seq + 1, updated_at = now()
         RETURNING head_seq, snapshot_seq`,
        [tenantId, docId],
      );
      const row = head.rows[0];
      if (!row) throw new Error('document head upsert returned no row');
      const seq = Number(row.head_seq);
      await sql.query('INSERT INTO doc_updates (tenant_id, doc_id, seq, data, actor) VALUES ($1, $2, $3, $4, $5)', [
        tenantId,
        docId,
        seq,
        update,
        JSON.stringify(actor),
      ]);
      const compacted = seq - Number(row.snapshot_seq) >= this.compactEvery;
      if (compacted) await compactLocked(sql, tenantId, docId, seq);
      return { seq, compacted };
    });
  }

  /** Folds the update log into the snapshot now; false when there was nothing to fold. */
  async compact(tenantId: string, docId: string): Promise<boolean> {
    assertId('docId', docId);
    return this.db.withTenant(tenantId, async (sql) => {
      const head = await sql.query<{ head_seq: Seq; snapshot_seq: Seq }>(
        'SELECT head_seq, snapshot_seq FROM docs WHERE tenant_id = $1 AND doc_id = $2 FOR UPDATE',
        [tenantId, docId],
      );
      const row = head.rows[0];
      if (!row || Number(row.head_seq) === Number(row.snapshot_seq)) return false;
      await compactLocked(sql, tenantId, docId, Number(row.head_seq));
      return true;
    });
  }

  /**
   * Answers one y-protocols sync message: a step 1 gets step 2 computed from the stored state
   * (plus the server's step 1); a step 2 or update is appended. A `readOnly` caller may still
   * complete the handshake with an empty step 2, but any change it sends is FORBIDDEN.
   */
  async syncReply(
    tenantId: string,
    docId: string,
    message: Uint8Array,
    actor: Actor,
    opts: { readOnly?: boolean } = {},
  ): Promise<SyncResult> {
    assertId('docId', docId);
    const parsed = readSyncMessage(message);
    if (parsed.type === 'step1') {
      const state = await this.load(tenantId, docId);
      return {
        reply: syncStep2Message(Y.diffUpdate(state, parsed.stateVector)),
        step1: syncStep1Message(Y.encodeStateVectorFromUpdate(state)),
        stored: null,
      };
    }
    const { update } = parsed;
    if (opts.readOnly) {
      if (!this.inspect(update).empty) throw new AeternaError('FORBIDDEN', 'this document is read-only for you', { docId });
      return { reply: null, step1: null, stored: null };
    }
    const { seq } = await this.append(tenantId, docId, update, actor);
    return { reply: null, step1: null, stored: seq === null ? null : { update, seq } };
  }

  /**
   * Refuses anything that is not a Yjs update before it reaches the log: one bad row would break
   * every later load of the document. Applying it to a scratch document is the check Yjs itself
   * makes; its errors are many and untyped, so any of them means "malformed". `empty` is an update
   * that adds and deletes nothing, such as the step 2 of a client that is up to date.
   */
  private inspect(update: Uint8Array): { empty: boolean } {
    if (update.byteLength > this.maxUpdateBytes) {
      throw new AeternaError('PAYLOAD_TOO_LARGE', `a document update may be at most ${this.maxUpdateBytes} bytes`, {
        limit: this.maxUpdateBytes,
        size: update.byteLength,
      });
    }
    try {
      Y.applyUpdate(new Y.Doc(), update);
      const { structs, ds } = Y.decodeUpdate(update);
      return { empty: structs.length === 0 && ds.clients.size === 0 };
    } catch (err) {
      throw new AeternaError('INVALID_ARGUMENT', `not a Yjs update: ${(err as Error).message}`);
    }
  }
}

/**
 * Snapshot and later updates in one statement: under READ COMMITTED each statement has its own
 * snapshot, so two separate reads could straddle a compaction and miss the updates it folded.
 */
async function readState(sql: Sql, tenantId: string, docId: string): Promise<Uint8Array> {
  const res = await sql.query<{ bytes: Uint8Array }>(
    `SELECT snapshot_seq AS seq, snapshot AS bytes FROM docs
      WHERE tenant_id = $1 AND doc_id = $2 AND snapshot IS NOT NULL
     UNION ALL
     SELECT u.seq, u.data FROM doc_updates u
       JOIN docs d ON d.tenant_id = u.tenant_id AND d.doc_id = u.doc_id
      WHERE u.tenant_id = $1 AND u.doc_id = $2 AND u.seq > d.snapshot_seq
     ORDER BY seq`,
    [tenantId, docId],
  );
  return Y.mergeUpdates(res.rows.map((r) => r.bytes));
}

/** Needs the document's head row locked by the caller's transaction. */
async function compactLocked(sql: Sql, tenantId: string, docId: string, throughSeq: number): Promise<void> {
  const state = await readState(sql, tenantId, docId);
  await sql.query('UPDATE docs SET snapshot = $3, snapshot_seq = $4, updated_at = now() WHERE tenant_id = $1 AND doc_id = $2', [
    tenantId,
    docId,
    state,
    throughSeq,
  ]);
  await sql.query('DELETE FROM doc_updates WHERE tenant_id = $1 AND doc_id = $2 AND seq <= $3', [tenantId, docId, throughSeq]);
}
