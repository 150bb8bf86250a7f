import { randomUUID } from 'node:crypto';
import type { Actor, EventEnvelope } from '../protocol/index.js';
import { newId, type Sql } from '../store/index.js';

interface EventRow {
  tenant_id: string;
  seq: string | number;
  id: string;
  type: string;
  actor: Actor;
  data: unknown;
  trace_id: string | null;
  created_at: Date;
}

function toEnvelope(row: EventRow): EventEnvelope {
  return {
    seq: Number(row.seq),
    id: row.id,
    tenantId: row.tenant_id,
    type: row.type,
    at: row.created_at.toISOString(),
    actor: row.actor,
    data: row.data,
    traceId: row.trace_id,
  };
}

export interface AppendEventInput {
  type: string;
  actor: Actor;
  data: unknown;
  traceId?: string;
}

/**
 * The tenant's event log (transactional outbox). Appends run inside the writing transaction:
 * the counter row's UPDATE locks it until commit, so a tenant's seqs commit in order with no gap,
 * and a reader of `seq > cursor` can never skip a row that commits late.
 */
export const EventLog = {
  async append(sql: Sql, tenantId: string, input: AppendEventInput): Promise<EventEnvelope> {
    const counter = await sql.query<{ seq: string | number }>(
      `INSERT INTO tenant_streams (tenant_id, seq, epoch) VALUES ($1, 1, $2)
       ON CONFLICT (tenant_id) DO UPDATE SET seq = tenant_streams.seq + 1
       RETURNING seq`,
      [tenantId, randomUUID()],
    );
    const seq = counter.rows[0]?.seq;
    if (seq === undefined) throw new Error('event counter returned no row');
    const res = await sql.query<EventRow>(
      `INSERT INTO events (tenant_id, seq, id, type, actor, data, trace_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       RETURNING tenant_id, seq, id, type, actor, data, trace_id, created_at`,
      [tenantId, seq, newId(), input.type, JSON.stringify(input.actor), JSON.stringify(input.data), input.traceId ?? null],
    );
    return toEnvelope(res.rows[0] as EventRow);
  },

  /** Records that the relay delivered everything up to `seq` (never moves backwards). */
  async markRelayed(sql: Sql, tenantId: string, seq: number): Promise<void> {
    await sql.query(
      `INSERT INTO relay_positions (tenant_id, seq) VALUES ($1, $2)
       ON CONFLICT (tenant_id) DO UPDATE SET seq = GREATEST(relay_positions.seq, EXCLUDED.seq), updated_at = now()`,
      [tenantId, seq],
    );
  },

  /** The stream's current position (0 and no epoch before the first event). */
  async head(sql: Sql, tenantId: string): Promise<{ seq: number; epoch: string | null }> {
    const res = await sql.query<{ seq: string | number; epoch: string }>('SELECT seq, epoch FROM tenant_streams WHERE tenant_id = $1', [tenantId]);
    const row = res.rows[0];
    return row ? { seq: Number(row.seq), epoch: row.epoch } : { seq: 0, epoch: null };
  },

  /** Events after `since`, in seq order, plus the stream's current position and epoch. */
  async read(
    sql: Sql,
    tenantId: string,
    since: number,
    limit: number,
  ): Promise<{ events: EventEnvelope[]; head: number; epoch: string | null }> {
    const head = await EventLog.head(sql, tenantId);
    const res = await sql.query<EventRow>(
      `SELECT tenant_id, seq, id, type, actor, data, trace_id, created_at FROM events
        WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [tenantId, since, limit],
    );
    return { events: res.rows.map(toEnvelope), head: head.seq, epoch: head.epoch };
  },
};
