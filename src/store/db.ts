/** What a query returns, the same for `pg` and PGlite. */
export interface SqlResult<R> {
  rows: R[];
  affectedRows: number;
}

/** Something that runs parameterised SQL: a pooled client, a transaction, PGlite. */
export interface Sql {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>>;
}

export interface DbCapabilities {
  /** pgvector is installed: embeddings are `vector` columns with an HNSW index. */
  pgvector: boolean;
}

/**
 * The database as the rest of the core sees it. Every tenant query runs inside `withTenant`, which
 * opens a transaction, pins `app.tenant_id` with SET LOCAL and lets row-level security do the rest:
 * a query cannot reach another tenant's rows even with a forged WHERE clause.
 */
export interface Db {
  readonly kind: 'pglite' | 'postgres';
  readonly capabilities: DbCapabilities;
  withTenant<T>(tenantId: string, fn: (sql: Sql) => Promise<T>): Promise<T>;
  /** Every tenant's stream position, read as the system role (which sees nothing else). */
  streamHeads(): Promise<StreamHead[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface StreamHead {
  tenantId: string;
  seq: number;
  epoch: string;
  /** The last seq the relay delivered live (0 before any). */
  relayedSeq: number;
}

/** Runs as the schema owner, after migrations and before the app role takes over. */
export type PrepareHook = (owner: Sql, capabilities: DbCapabilities) => Promise<void>;

export const APP_ROLE = 'aeterna_app';


export const SYSTEM_ROLE = 'aeterna_system';

export const STREAM_HEADS_SQL = `SELECT s.tenant_id, s.seq, s.epoch, COALESCE(r.seq, 0) AS relayed_seq
  FROM tenant_streams s LEFT JOIN relay_positions r ON r.tenant_id = s.tenant_id`;

export interface StreamHeadRow {
  tenant_id: string;
  seq: string | number;
  epoch: string;
  relayed_seq: string | number;
}

export function toStreamHeads(rows: StreamHeadRow[]): StreamHead[] {
  return rows.map((r) => ({ tenantId: r.tenant_id, seq: Number(r.seq), epoch: r.epoch, relayedSeq: Number(r.relayed_seq) }));
}
