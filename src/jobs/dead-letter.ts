import { z } from 'zod';
import { EventLog, type CommitSignal } from '../events/index.js';
import { AeternaError, EVENT_TYPES } from '../protocol/index.js';
import type { Db, Sql } from '../store/index.js';
import { JOBS_ACTOR, type DeadLetterSink, type JobSpec } from './types.js';

/** A job that failed its last attempt, as an admin sees it. */
export interface DeadJob {
  tenantId: string;
  kind: string;
  jobId: string;
  event: JobSpec['event'];
  error: string;
  attempts: number;
  failedAt: string;
  /** Set when an admin retried it; cleared if it fails for good again. */
  retriedAt: string | null;
  retryCount: number;
}

export interface DeadJobPage {
  items: DeadJob[];
  nextCursor: string | null;
}

export interface DeadLetterStoreOptions {
  db: Db;
  /** Told after a `job.failed` event commits, so the relay sends it at once. */
  commits?: CommitSignal;
}

interface DeadJobRow {
  tenant_id: string;
  kind: string;
  job_id: string;
  event: JobSpec['event'];
  error: string;
  attempts: number;
  failed_at: Date;
  retried_at: Date | null;
  retry_count: number;
  /** failed_at in whole microseconds: a JS Date would drop the last three digits and break paging. */
  failed_us: string;
}

const COLUMNS = `tenant_id, kind, job_id, event, error, attempts, failed_at, retried_at, retry_count,
  (extract(epoch FROM failed_at) * 1000000)::bigint::text AS failed_us`;
const FAILED_US = '(extract(epoch FROM failed_at) * 1000000)::bigint';
const ERROR_MAX_CHARS = 4000;

function toDeadJob(row: DeadJobRow): DeadJob {
  return {
    tenantId: row.tenant_id,
    kind: row.kind,
    jobId: row.job_id,
    event: row.event,
    error: row.error,
    attempts: row.attempts,
    failedAt: row.failed_at.toISOString(),
    retriedAt: row.retried_at ? row.retried_at.toISOString() : null,
    retryCount: row.retry_count,
  };
}

/** The error's message only (a stack says nothing to an admin), fit for a text column. */
function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replaceAll('\u0000', '').slice(0, ERROR_MAX_CHARS) || 'unknown error';
}

const cursorSchema = z.tuple([z.string().regex(/^\d{1,20}$/), z.string().max(200), z.string().max(200)]);

function encodeCursor(row: DeadJobRow): string {
  return Buffer.from(JSON.stringify([row.failed_us, row.kind, row.job_id])).toString('base64url');
}

function decodeCursor(cursor: string): z.infer<typeof cursorSchema> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  const parsed = cursorSchema.safeParse(value);
  if (!parsed.success) throw new AeternaError('INVALID_ARGUMENT', 'cursor is not valid', { field: 'cursor' });
  return parsed.data;
}

/**
 * Dead-lettered jobs, one row per (tenant, kind, job id), under row-level security like every
 * tenant table. Recording a failure and announcing it (`job.failed`) commit together.
 */
export class DeadLetterStore implements DeadLetterSink {
  constructor(private readonly opts: DeadLetterStoreOptions) {}

  async record(job: JobSpec, error: unknown, attempts: number): Promise<void> {
    const message = describeError(error);
    const appended = await this.opts.db.withTenant(job.tenantId, async (sql) => {
      // A row that is dead and not retried since stays as it is: this is the same failure again
      // (a stalled re-run, or the queue's own report of what the processor wrapper recorded).
      const res = await sql.query(
        `INSERT INTO dead_jobs (tenant_id, kind, job_id, event, error, attempts) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, kind, job_id) DO UPDATE
           SET event = EXCLUDED.event, error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now(), retried_at = NULL
         WHERE dead_jobs.retried_at IS NOT NULL
         RETURNING job_id`,
        [job.tenantId, job.kind, job.id, JSON.stringify(job.event), message, attempts],
      );
      if (res.rows.length === 0) return false;
      await EventLog.append(sql, job.tenantId, {
        type: EVENT_TYPES.jobFailed,
        actor: JOBS_ACTOR,
        data: { kind: job.kind, jobId: job.id, eventId: job.event.id, eventType: job.event.type, error: message, attempts },
      });
      return true;
    });
    if (appended) this.opts.commits?.notify(job.tenantId);
  }

  /** The tenant's dead jobs not retried since, most recent failure first. */
  async list(tenantId: string, query: { state: 'failed'; limit: number; cursor?: string }): Promise<DeadJobPage> {
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    return this.opts.db.withTenant(tenantId, async (sql) => {
      const params: unknown[] = [tenantId, query.limit + 1];
      const page = after ? `AND (${FAILED_US}, kind, job_id) < ($3::bigint, $4, $5)` : '';
      if (after) params.push(...after);
      const res = await sql.query<DeadJobRow>(
        `SELECT ${COLUMNS} FROM dead_jobs WHERE tenant_id = $1 AND retried_at IS NULL ${page}
         ORDER BY failed_at DESC, kind DESC, job_id DESC LIMIT $2`,
        params,
      );
      const rows = res.rows.slice(0, query.limit);
      const last = rows[rows.length - 1];
      return { items: rows.map(toDeadJob), nextCursor: res.rows.length > query.limit && last ? encodeCursor(last) : null };
    });
  }

  /**
   * Marks a dead job retried and hands it to `requeue` inside the same transaction (`sql`, for a
   * queue that stores its jobs in the database): if the queue cannot take it, the mark rolls back
   * and the job stays listed as failed. Without `kind`, a job id that is dead in several kinds is a
   * CONFLICT naming them.
   */
  async markRetried(tenantId: string, jobId: string, kind: string | undefined, requeue: (job: DeadJob, sql: Sql) => Promise<void>): Promise<DeadJob> {
    return this.opts.db.withTenant(tenantId, async (sql) => {
      const target = await this.pickFailed(sql, tenantId, jobId, kind);
      const res = await sql.query<DeadJobRow>(
        `UPDATE dead_jobs SET retried_at = now(), retry_count = retry_count + 1
          WHERE tenant_id = $1 AND kind = $2 AND job_id = $3 RETURNING ${COLUMNS}`,
        [tenantId, target.kind, jobId],
      );
      const job = toDeadJob(res.rows[0] as DeadJobRow);
      await requeue(job, sql);
      return job;
    });
  }

  private async pickFailed(sql: Sql, tenantId: string, jobId: string, kind: string | undefined): Promise<DeadJobRow> {
    const res = await sql.query<DeadJobRow>(
      `SELECT ${COLUMNS} FROM dead_jobs WHERE tenant_id = $1 AND job_id = $2 ${kind === undefined ? '' : 'AND kind = $3'}
        ORDER BY kind FOR UPDATE`,
      kind === undefined ? [tenantId, jobId] : [tenantId, jobId, kind],
    );
    if (res.rows.length === 0) {
      throw new AeternaError('NOT_FOUND', `no dead job ${jobId}${kind === undefined ? '' : ` of kind ${kind}`}`, { jobId, ...(kind === undefined ? {} : { kind }) });
    }
    const failed = res.rows.filter((r) => r.retried_at === null);
    if (failed.length === 0) {
      throw new AeternaError('CONFLICT', `job ${jobId} was already retried and has not failed since`, {
        jobId,
        retried: res.rows.map((r) => ({ kind: r.kind, retriedAt: (r.retried_at as Date).toISOString() })),
      });
    }
    if (failed.length > 1) {
      throw new AeternaError('CONFLICT', `job ${jobId} is dead in several kinds: name one with ?kind=`, { jobId, kinds: failed.map((r) => r.kind) });
    }
    return failed[0] as DeadJobRow;
  }
}

/** The job a dead row describes, to enqueue again when the queue no longer holds it. */
export function specOf(job: DeadJob): JobSpec {
  return { kind: job.kind, id: job.jobId, tenantId: job.tenantId, event: job.event };
}
