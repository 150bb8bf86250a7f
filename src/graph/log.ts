import type { Actor } from '../protocol/index.js';
import type { Sql } from '../store/index.js';
import type { GraphBatch, GraphOp } from './schema.js';

interface BatchRow {
  seq: string | number;
  ops: GraphOp[];
  created_at: Date;
}

/**
 * The graph log in PostgreSQL (`graph_events`, migration 004), the source of truth every process
 * projects. All calls run inside the caller's tenant transaction.
 */
export const GraphLog = {
  /**
   * Serialises a tenant's graph writers across processes for the rest of the transaction, so a
   * writer validates against every batch committed before it. '/' cannot occur in an id, so the
   * key never equals a memory scope key.
   */
  async lock(sql: Sql, tenantId: string): Promise<void> {
    await sql.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${tenantId}/graph`]);
  },

  async seqOfJob(sql: Sql, tenantId: string, jobKey: string): Promise<number | undefined> {
    const res = await sql.query<{ seq: string | number }>('SELECT seq FROM graph_events WHERE tenant_id = $1 AND job_key = $2', [tenantId, jobKey]);
    const row = res.rows[0];
    return row ? Number(row.seq) : undefined;
  },

  /**
   * Takes the tenant's next seq (the counter row stays locked until commit, so seqs commit in
   * order) and the batch's time, read after the lock so batch times rise with seq.
   */
  async next(sql: Sql, tenantId: string): Promise<{ seq: number; at: string }> {
    const res = await sql.query<{ seq: string | number; at: Date }>(
      `INSERT INTO graph_streams (tenant_id, seq) VALUES ($1, 1)
       ON CONFLICT (tenant_id) DO UPDATE SET seq = graph_streams.seq + 1
       RETURNING seq, clock_timestamp() AS at`,
      [tenantId],
    );
    const row = res.rows[0];
    if (!row) throw new Error('graph counter returned no row');
    // Milliseconds: what every reader gets back from either driver, so the log and every projection agree.
    return { seq: Number(row.seq), at: row.at.toISOString() };
  },

  async append(sql: Sql, batch: GraphBatch, actor: Actor, jobKey: string | undefined): Promise<void> {
    await sql.query(
      `INSERT INTO graph_events (tenant_id, seq, ops, job_key, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [batch.tenantId, batch.seq, JSON.stringify(batch.ops), jobKey ?? null, JSON.stringify(actor), batch.at],
    );
  },

  /** The tenant's head seq (0 before any batch) and up to `limit` batches after `after`, in order. */
  async tail(sql: Sql, tenantId: string, after: number, limit: number): Promise<{ head: number; batches: GraphBatch[] }> {
    const head = await sql.query<{ seq: string | number }>('SELECT seq FROM graph_streams WHERE tenant_id = $1', [tenantId]);
    const headSeq = Number(head.rows[0]?.seq ?? 0);
    if (headSeq <= after) return { head: headSeq, batches: [] };
    const res = await sql.query<BatchRow>(
      'SELECT seq, ops, created_at FROM graph_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [tenantId, after, limit],
    );
    return {
      head: headSeq,
      batches: res.rows.map((r) => ({ tenantId, seq: Number(r.seq), ops: r.ops, at: r.created_at.toISOString() })),
    };
  },
};
