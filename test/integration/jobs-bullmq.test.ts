import { randomBytes, randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobsConfig } from '../../src/config.js';
import { EventLog } from '../../src/events/index.js';
import {
  BULLMQ_PREFIX,
  BullMqJobQueue,
  DeadLetterStore,
  JobAdmin,
  PendingJobs,
  createJobQueue,
  type DeadLetterSink,
  type JobContext,
  type JobSpec,
} from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { openTestCore, tenantCtx, type TestCore } from '../support/backends.js';
import { until } from '../support/gateway.js';
import { requireService } from '../support/index.js';

const redisUrl = requireService('redis');
const pgUrl = requireService('postgres');

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
  const run = randomBytes(4).toString('hex');
  /** Queue names of this run only: other files share the Redis. */
  const kindOf = (name: string) => `t${run}.${name}`;
  const used: { kind: string; tenants: string[] }[] = [];
  const queues: BullMqJobQueue[] = [];
  let t: TestCore;
  let store: DeadLetterStore;
  let redis: Redis;

  beforeAll(async () => {
    t = await openTestCore(pgUrl ? 'postgres' : 'pglite');
    store = new DeadLetterStore({ db: t.core.db });
    redis = new Redis(redisUrl as string);
  });
  afterAll(async () => {
    await Promise.allSettled(queues.map((q) => q.close()));
    for (const { kind, tenants } of used) {
      const queue = new Queue(kind, { connection: redis, prefix: BULLMQ_PREFIX });
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      for (const tenant of tenants) await redis.del(PendingJobs.key(tenant, kind));
    }
    redis?.disconnect();
    await t?.close();
  });

  function open(kind: string, tenants: string[], jobs: Partial<JobsConfig> = {}, deadLetters: DeadLetterSink = store): BullMqJobQueue {
    used.push({ kind, tenants });
    const queue = new BullMqJobQueue({
      redisUrl: redisUrl as string,
      jobs: { attempts: 2, backoffMs: 50, concurrency: 1, stalledMs: 5000, retainSec: 3600, ...jobs },
      deadLetters,
      log: createLogger('silent'),
      closeGraceMs: 2000,
    });
    queues.push(queue);
    return queue;
  }

  const spec = (kind: string, tenantId: string, id: string = randomUUID()): JobSpec => ({
    kind,
    id,
    tenantId,
    event: { id, seq: 1, type: 'memory.added', data: { n: id } },
  });

  it('runs a job once however often its event id is enqueued, and counts it once for fairness', async () => {
    const kind = kindOf('dedupe');
    const tenant = `bq-dedupe-${run}`;
    const q = open(kind, [tenant]);
    const ran: string[] = [];
    const job = spec(kind, tenant);
    await q.enqueue([job, job]);
    await q.enqueue([job]);
    expect(await redis.zcard(PendingJobs.key(tenant, kind))).toBe(1);
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
    await eventually(() => redis.zcard(PendingJobs.key(tenant, kind)), (n) => n === 0, 'the pending set to empty');
  });

  it('retries with backoff, dead-letters with a job.failed event, and an admin retry runs it again', async () => {
    const kind = kindOf('dead');
    const tenant = `bq-dead-${run}`;
    const recorded: string[] = [];
    const q = open(kind, [tenant], { attempts: 2 }, {
      async record(job, error, attempts) {
        await store.record(job, error, attempts);
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
    const admin = new JobAdmin({ deadLetters: store, queue: q });
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
    const log = await t.core.db.withTenant(tenant, (sql) => EventLog.read(sql, tenant, 0, 10));
    expect(log.events.map((e) => e.type)).toEqual(['job.failed', 'job.failed']);
    expect(log.events[0]?.data).toMatchObject({ kind, attempts: 2, eventType: 'memory.added', error: 'downstream said no (2)' });
    expect((await admin.list(tenantCtx(`bq-other-${run}`, 'root', ['admin']), {})).items).toEqual([]);

    const bull = new Queue(kind, { connection: redis, prefix: BULLMQ_PREFIX });
    expect(await (await bull.getJob(kept.id))?.getState()).toBe('failed');
    await (await bull.getJob(removed.id))?.remove(); // as after the retention window
    await bull.close();

    failing = false;
    await admin.retry(ctx, kept.id, {}); // BullMQ still holds it: job.retry() with attempts reset
    await admin.retry(ctx, removed.id, { kind }); // gone from BullMQ: re-created from the stored event
    await until(() => attempts.some(([id, , o]) => id === kept.id && o === 'ok') && attempts.some(([id, , o]) => id === removed.id && o === 'ok'), 'both retries to succeed');
    expect(attempts.filter(([id]) => id === kept.id).map(([, n, o]) => `${n}${o}`)).toEqual(['1fail', '2fail', '1ok']);
    expect((await admin.list(ctx, {})).items).toEqual([]);
  });

  it('is what createJobQueue gives when Redis is configured', async () => {
    const q = createJobQueue({ redisUrl: redisUrl as string, jobs: { attempts: 1, backoffMs: 10, concurrency: 1, stalledMs: 1000, retainSec: 60 } }, { deadLetters: store, log: createLogger('silent') });
    expect(q.name).toBe('bullmq');
    await q.close();
  });

  it("keeps one tenant's flood from starving another tenant", async () => {
    const kind = kindOf('fair');
    const [flood, quiet] = [`bq-flood-${run}`, `bq-quiet-${run}`];
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
