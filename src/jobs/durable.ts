import type { Db, Sql } from '../store/index.js';
import type { JobSpec } from './types.js';

/** A (kind, id) as one map key: the same id under another kind is another job. */
export const jobKey = (kind: string, id: string): string => `${kind}\u0000${id}`;

/** setTimeout fires at once for anything longer (and warns), so longer waits are chained in steps of this. */
export const MAX_DELAY_MS = 2 ** 31 - 1;

/** Three parameters a row; well under PostgreSQL's 65,535 per statement. */
const ROWS_PER_INSERT = 1000;

/** A job read back after a restart. */
export interface StoredJob {
  spec: JobSpec;
  /** Tries made so far, all failed. */
  attempts: number;
  /** How long it still waits out its backoff or budget deferral (0: due now); may pass MAX_DELAY_MS. */
  delayMs: number;
}

interface PendingRow {
  kind: string;
  job_id: string;
  event: JobSpec['event'];
  attempts: number;
  delay_ms: number | string;
}

/**
 * The in-process queue's jobs in the `pending_jobs` table, from enqueue until they finish, under
 * row-level security like every tenant table. Only what a restart needs is written: a job's
 * arrival, each failed try (with the time its retry is due) and its end.
 */
export class DurableJobStore {
  constructor(private readonly db: Db) {}

  /**
   * Stores one tenant's jobs, in `sql` (the caller's transaction for that tenant) when given, else
   * in a transaction of its own. Returns the keys of the jobs that were not stored already.
   */
  add(tenantId: string, specs: readonly JobSpec[], sql?: Sql): Promise<Set<string>> {
    const insert = async (tx: Sql): Promise<Set<string>> => {
      const added = new Set<string>();
      for (let from = 0; from < specs.length; from += ROWS_PER_INSERT) {
        const params: unknown[] = [tenantId];
        const values = specs.slice(from, from + ROWS_PER_INSERT).map((spec) => {
          params.push(spec.kind, spec.id, JSON.stringify(spec.event));
          const n = params.length;
          return `($1, $${n - 2}, $${n - 1}, $${n})`;
        });
        const res = await tx.query<{ kind: string; job_id: string }>(
          `INSERT INTO pending_jobs (tenant_id, kind, job_id, event) VALUES ${values.join(', ')}
           ON CONFLICT (tenant_id, kind, job_id) DO NOTHING RETURNING kind, job_id`,
          params,
        );
        for (const row of res.rows) added.add(jobKey(row.kind, row.job_id));
      }
      return added;
    };
    return sql ? insert(sql) : this.db.withTenant(tenantId, insert);
  }

  /** A try failed and the job runs again after `delayMs`. */
  async failed(spec: JobSpec, attempts: number, delayMs: number): Promise<void> {
    await this.db.withTenant(spec.tenantId, (sql) =>
      sql.query(
        `UPDATE pending_jobs SET attempts = $4, not_before = now() + $5::int * interval '1 millisecond'
          WHERE tenant_id = $1 AND kind = $2 AND job_id = $3`,
        [spec.tenantId, spec.kind, spec.id, attempts, Math.min(Math.max(0, Math.round(delayMs)), MAX_DELAY_MS)],
      ),
    );
  }

  /**
   * The tenant's token budget refused the try (`queue` action): the job runs again after
   * `delayMs`, its tries as they were. The wait is a budget period, which can pass `MAX_DELAY_MS`.
   */
  async deferred(spec: JobSpec, delayMs: number): Promise<void> {
    await this.db.withTenant(spec.tenantId, (sql) =>
      sql.query(
        `UPDATE pending_jobs SET not_before = now() + $4::float8 * interval '1 millisecond'
          WHERE tenant_id = $1 AND kind = $2 AND job_id = $3`,
        [spec.tenantId, spec.kind, spec.id, Math.max(0, Math.round(delayMs))],
      ),
    );
  }

  /** The job succeeded, or died with its dead letter written: nothing is left to resume. */
  async done(spec: JobSpec): Promise<void> {
    await this.db.withTenant(spec.tenantId, (sql) =>
      sql.query('DELETE FROM pending_jobs WHERE tenant_id = $1 AND kind = $2 AND job_id = $3', [spec.tenantId, spec.kind, spec.id]),
    );
  }

  /**
   * Every tenant's unfinished jobs, in the order they were enqueued. Tenants are those with an
   * event stream: every job comes from an event (an admin retry re-enqueues one that did too).
   */
  async load(): Promise<StoredJob[]> {
    const jobs: StoredJob[] = [];
    for (const { tenantId } of await this.db.streamHeads()) {
      const res = await this.db.withTenant(tenantId, (sql) =>
        sql.query<PendingRow>(
          // The database's clock both wrote not_before and measures what is left of it.
          `SELECT kind, job_id, event, attempts,
                  GREATEST(0, ceil(extract(epoch FROM not_before - now()) * 1000))::float8 AS delay_ms
             FROM pending_jobs WHERE tenant_id = $1
            ORDER BY enqueued_at, (event->>'seq')::bigint, kind, job_id`,
          [tenantId],
        ),
      );
      for (const row of res.rows) {
        jobs.push({
          spec: { kind: row.kind, id: row.job_id, tenantId, event: row.event },
          attempts: row.attempts,
          delayMs: Number(row.delay_ms),
        });
      }
    }
    return jobs;
  }
}
