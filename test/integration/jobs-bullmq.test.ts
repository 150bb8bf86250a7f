import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { JobsConfig } from '../../src/config.js';
import { EventLog } from '../../src/events/index.js';
import {
  BullMqJobQueue,
  JobAdmin,
  PendingJobs,
  createJobQueue,
  type DeadLetterSink,
  type JobContext,
  type JobSpec,
} from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { tenantCtx } from '../support/backends.js';
import { until } from '../support/gateway.js';
import { BullMqTestRun, requireService } from '../support/index.js';

const redisUrl = requireService('redis');

/** Polls an async read until `ok` holds; fails naming `what` after `ms`. A bound, not a timing assertion. */
async function eventually<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!redisUrl)('BullMQ job queue on real Redis', { timeout: 60_000 }, () => {
  const bull = BullMqTestRun.forSuite(redisUrl);
  const open = (kind: string, tenants: string[], jobs: Partial<JobsConfig> = {}, deadLetters?: DeadLetterSink): BullMqJobQueue => bull.queue(kind, tenants, { jobs, deadLetters });

  const spec = (kind: string, tenantId: string, id: string = randomUUID()): JobSpec => ({
    kind,
    id,
    tenantId,
    event: { id, seq: 1, type: 'memory.added', data: { n: id } },
  });

  it('runs a job once however often its event id is enqueued, and counts it once for fairness', async () => {
    const kind = bull.kindOf('dedupe');
    const tenant = `bq-dedupe-${bull.id}`;
    const q = open(kind, [tenant]);
    const ran: string[] = [];
    const job = spec(kind, tenant);
    await q.enqueue([job, job]);
    await q.enqueue([job]);
    expect(await bull.redis.zcard(PendingJobs.key(tenant, kind))).toBe(1);
    await q.work({ [kind]: async (j) => void ran.push(j.id) });
    const first = spec(kind, tenant);
    await q.enqueue([first]);
    await until(() => ran.includes(first.id), 'the first sentinel');
    // Re-enqueued after it completed: still the same job. A second run would be queued ahead of
    // the sentinel (same priority, added earlier), so waiting for the sentinel is enough.
    await q.enqueue([job]);
    const second = spec(kind, tenant);
    await q.enqueue([second]);
    await until(() => ran.includes(second.id), 'the second sentinel');
    expect(ran.filter((id) => id === job.id)).toHaveLength(1);
    await eventually(() => bull.redis.zcard(PendingJobs.key(tenant, kind)), (n) => n === 0, 'the pending set to empty');
  });

  it('retries with backoff, dead-letters with a job.failed event, and an admin retry runs it again', async () => {
    const kind = bull.kindOf('dead');
    const tenant = `bq-dead-${bull.id}`;
    const recorded: string[] = [];
    const q = open(kind, [tenant], { attempts: 2 }, {
      async record(job, error, attempts) {
        await bull.deadLetters.record(job, error, attempts);
        recorded.push(job.id);
      },
    });
    let failing = true;
    const attempts: [string, number, string][] = [];
    await q.work({
      [kind]: async (j: JobContext) => {
        attempts.push([j.id, j.attempt, failing ? 'fail' : 'ok']);
        if (failing) throw new Error(`downstream said no (${j.attempt})`);
      },
    });
    const admin = new JobAdmin({ deadLetters: bull.deadLetters, queue: q });
    const ctx = tenantCtx(tenant, 'root', ['admin']);

    const kept = spec(kind, tenant);
    const removed = spec(kind, tenant);
    await q.enqueue([kept, removed]);
    await until(() => recorded.includes(kept.id) && recorded.includes(removed.id), 'both dead letters');
    expect(attempts.filter(([id]) => id === kept.id)).toEqual([
      [kept.id, 1, 'fail'],
      [kept.id, 2, 'fail'],
    ]);
    const page = await admin.list(ctx, { state: 'failed' });
    expect(page.items.map((j) => [j.jobId, j.attempts, j.error]).sort()).toEqual(
      [
        [kept.id, 2, 'downstream said no (2)'],
        [removed.id, 2, 'downstream said no (2)'],
      ].sort(),
    );
    const log = await bull.core.core.db.withTenant(tenant, (sql) => EventLog.read(sql, tenant, 0, 10));
    expect(log.events.map((e) => e.type)).toEqual(['job.failed', 'job.failed']);
    expect(log.events[0]?.data).toMatchObject({ kind, attempts: 2, eventType: 'memory.added', error: 'downstream said no (2)' });
    expect((await admin.list(tenantCtx(`bq-other-${bull.id}`, 'root', ['admin']), {})).items).toEqual([]);

    expect(await (await bull.job(kind, kept.id))?.getState()).toBe('failed');
    await (await bull.job(kind, removed.id))?.remove(); // as after the retention window

    failing = false;
    await admin.retry(ctx, kept.id, {}); // BullMQ still holds it: job.retry() with attempts reset
    await admin.retry(ctx, removed.id, { kind }); // gone from BullMQ: re-created from the stored event
    await until(() => attempts.some(([id, , o]) => id === kept.id && o === 'ok') && attempts.some(([id, , o]) => id === removed.id && o === 'ok'), 'both retries to succeed');
    expect(attempts.filter(([id]) => id === kept.id).map(([, n, o]) => `${n}${o}`)).toEqual(['1fail', '2fail', '1ok']);
    expect((await admin.list(ctx, {})).items).toEqual([]);
  });

  it('is what createJobQueue gives when Redis is configured', async () => {
    const q = createJobQueue({ redisUrl: redisUrl as string, jobs: { attempts: 1, backoffMs: 10, concurrency: 1, stalledMs: 1000, retainSec: 60 } }, { deadLetters: bull.deadLetters, log: createLogger('silent') });
    expect(q.name).toBe('bullmq');
    await q.close();
  });

  it("keeps one tenant's flood from starving another tenant", async () => {
    const kind = bull.kindOf('fair');
    const [flood, quiet] = [`bq-flood-${bull.id}`, `bq-quiet-${bull.id}`];
    const q = open(kind, [flood, quiet], { concurrency: 1 });
    await q.enqueue(Array.from({ length: 200 }, () => spec(kind, flood)));
    await q.enqueue(Array.from({ length: 5 }, () => spec(kind, quiet)));
    const order: string[] = [];
    await q.work({ [kind]: async (j) => void order.push(j.tenantId) });
    await until(() => order.length === 205, 'all 205 jobs', 40_000);
    // First-in-first-out would put the quiet tenant's jobs at 201..205.
    expect(order.lastIndexOf(quiet)).toBeLessThan(12);
  });
});
