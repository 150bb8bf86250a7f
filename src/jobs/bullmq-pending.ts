import type { Redis } from 'ioredis';
import type { JobSpec } from './types.js';

/** BullMQ's priority range: 1 is the most urgent (0 would mean "no priority" and jump every queue). */
const MAX_PRIORITY = 2_097_151;

/**
 * For each (job key, pending key, job id): 0 when the job already exists (a re-enqueue, which must
 * not count twice), else the job joins its tenant's pending set and the answer is that set's size.
 * Entries older than the retention window are dropped first, so a count leaked by a crash between
 * a job's end and its removal from the set heals by itself. The set's expiry is only ever
 * extended: a deferred job's entry may need it to last longer than the retention window.
 */
const ADMIT = `
local now, cutoff, ttl = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('exists', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    local pending = KEYS[i + 1]
    redis.call('zremrangebyscore', pending, '-inf', cutoff)
    redis.call('zadd', pending, 'NX', now, ARGV[3 + (i + 1) / 2])
    if redis.call('pttl', pending) < tonumber(ttl) then redis.call('pexpire', pending, ttl) end
    out[#out + 1] = redis.call('zcard', pending)
  end
end
return out`;

/**
 * Puts one job id in a pending set with this score (only if absent, with NX) and makes the set
 * last at least this long.
 */
const KEEP = `
local key, score, ttl, id, nx = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1'
if nx then redis.call('zadd', key, 'NX', score, id) else redis.call('zadd', key, score, id) end
if redis.call('pttl', key) < ttl then redis.call('pexpire', key, ttl) end
return 0`;

/**
 * Per-tenant fairness on BullMQ, which has no job groups in its open-source edition: a job's
 * priority is its tenant's number of unfinished jobs of that kind when it is enqueued (lower runs
 * sooner). A tenant with a thousand queued jobs holds priorities up to a thousand while a quiet
 * tenant's next job gets 1 and runs next. Each tenant's set is a sorted set of job ids
 * (`t:{tenant}:jobs:{kind}:pending`), not a counter, so a job that finishes twice (a stalled
 * re-run) or is admitted twice is still counted once. An entry's score is when its job was
 * admitted or, for a job waiting for a budget's reset, when it is due: an entry counts until the
 * retention window has passed that time.
 */
export class PendingJobs {
  constructor(
    private readonly redis: Redis,
    private readonly retainMs: number,
  ) {}

  static key(tenantId: string, kind: string): string {
    return `t:${tenantId}:jobs:${kind}:pending`;
  }

  /** The priority for each job, or 0 for a job that exists already and must not be added. */
  async admit(jobs: readonly JobSpec[], jobKey: (id: string) => string): Promise<number[]> {
    if (jobs.length === 0) return [];
    const now = Date.now();
    const keys = jobs.flatMap((j) => [jobKey(j.id), PendingJobs.key(j.tenantId, j.kind)]);
    const args = [String(now), String(now - this.retainMs), String(this.retainMs), ...jobs.map((j) => j.id)];
    const counts = (await this.redis.eval(ADMIT, keys.length, ...keys, ...args)) as number[];
    return counts.map((n) => (n === 0 ? 0 : Math.min(Math.max(n, 1), MAX_PRIORITY)));
  }

  /** A job back in the queue (an admin retry of a job BullMQ still holds). */
  async readmit(job: JobSpec): Promise<void> {
    await this.redis.eval(KEEP, 1, PendingJobs.key(job.tenantId, job.kind), String(Date.now()), String(this.retainMs), job.id, '1');
  }

  /**
   * A job waiting `delayMs` for its tenant's budget to reset is still unfinished: its entry stays,
   * due then, and neither the retention cutoff nor the set's expiry drops it meanwhile.
   */
  async defer(job: JobSpec, delayMs: number): Promise<void> {
    const due = Date.now() + delayMs;
    await this.redis.eval(KEEP, 1, PendingJobs.key(job.tenantId, job.kind), String(due), String(delayMs + this.retainMs), job.id, '0');
  }

  async done(job: JobSpec): Promise<void> {
    await this.redis.zrem(PendingJobs.key(job.tenantId, job.kind), job.id);
  }
}
