import { z } from 'zod';
import { parseInput } from '../protocol/index.js';
import { ID_PATTERN, requirePermission, type TenantContext } from '../tenancy/index.js';
import { specOf, type DeadJob, type DeadJobPage, type DeadLetterStore } from './dead-letter.js';
import { JOB_KIND_PATTERN, type JobQueue } from './types.js';

const kind = z.string().regex(JOB_KIND_PATTERN, 'must be a job kind such as graph.extract');

const listJobsSchema = z
  .object({
    // Only dead jobs are listed for now; queued and running ones live in the queue, per kind.
    state: z.enum(['failed']).default('failed'),
    limit: z.coerce.number().int().min(1).max(100).default(20),
    cursor: z.string().max(400).optional(),
  })
  .strict();

const retryJobQuerySchema = z.object({ kind: kind.optional() }).strict();
const jobIdSchema = z.string().regex(ID_PATTERN, `must match ${ID_PATTERN.source}`);

/** What an admin may do with the tenant's jobs: list the dead ones and retry one. */
export class JobAdmin {
  constructor(private readonly deps: { deadLetters: DeadLetterStore; queue: JobQueue }) {}

  async list(ctx: TenantContext, rawQuery: unknown): Promise<DeadJobPage> {
    requirePermission(ctx, 'jobs:manage');
    const query = parseInput(listJobsSchema, rawQuery, 'jobs query');
    return this.deps.deadLetters.list(ctx.tenantId, query);
  }

  /** Runs a dead job again: from the queue when it still holds the job, else from the stored event. */
  async retry(ctx: TenantContext, rawId: unknown, rawQuery: unknown): Promise<DeadJob> {
    requirePermission(ctx, 'jobs:manage');
    const jobId = parseInput(jobIdSchema, rawId, 'job id');
    const { kind: only } = parseInput(retryJobQuerySchema, rawQuery, 'retry query');
    const { queue } = this.deps;
    return this.deps.deadLetters.markRetried(ctx.tenantId, jobId, only, async (job, sql) => {
      if (!(await queue.retry(job.kind, job.jobId))) await queue.enqueue([specOf(job)], { sql });
    });
  }
}
