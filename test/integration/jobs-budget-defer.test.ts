import { randomBytes } from 'node:crypto';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BudgetsConfig, JobsConfig } from '../../src/config.js';
import { EventLog } from '../../src/events/index.js';
import {
  BULLMQ_PREFIX,
  BullMqJobQueue,
  DeadLetterStore,
  InProcessJobQueue,
  JOBS_ACTOR,
  PendingJobs,
  type JobContext,
  type JobProcessor,
  type JobQueue,
  type JobSpec,
} from '../../src/jobs/index.js';
import { TokenBudgets, type Logger } from '../../src/obs/index.js';
import type { Db } from '../../src/store/index.js';
import { backends, openTestCore, type BackendName, type TestCore } from '../support/backends.js';
import { until } from '../support/gateway.js';
import { requireService } from '../support/index.js';

const redisUrl = requireService('redis');
const pgUrl = requireService('postgres');

/** The day the budgets live in; its period resets at RESET. */
const RESET = new Date('2026-03-11T00:00:00.000Z');
const HOUR_BEFORE = new Date(RESET.getTime() - 3_600_000);
const LLM_DAY_LIMIT = 10;

/** A clock both the budgets and the queue read; only the test moves it. */
interface Clock {
  at: Date;
}

interface LogLine {
  level: number;
  msg: string;
  tenantId?: string;
  kind?: string;
  jobId?: string;
  retryAt?: string;
  attempt?: number;
}

/** A logger whose lines the test can read. */
function capturingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

const deferrals = (lines: LogLine[]) => lines.filter((l) => l.msg === 'token budget spent: job waits for the reset');

interface Run {
  attempt: number;
  at: string;
  outcome: 'refused' | 'ran' | 'other error';
}

/**
 * A processor that makes one metered LLM call of the whole day's budget, as a summariser would:
 * refused while the tenant's budget for the day is spent.
 */
function meteredProcessor(budgets: TokenBudgets, clock: Clock, runs: Run[]): JobProcessor {
  return async (job: JobContext) => {
    const at = clock.at.toISOString();
    try {
      const charge = await budgets.reserve(job.tenantId, 'llm', LLM_DAY_LIMIT);
      await budgets.settle(charge, LLM_DAY_LIMIT);
    } catch (err) {
      runs.push({ attempt: job.attempt, at, outcome: (err as { code?: string }).code === 'RATE_LIMITED' ? 'refused' : 'other error' });
      throw err;
    }
    runs.push({ attempt: job.attempt, at, outcome: 'ran' });
  };
}

function budgetsFor(t: TestCore, action: BudgetsConfig['action'], clock: Clock): TokenBudgets {
  return new TokenBudgets({
    db: t.core.db,
    config: { action, warnAt: 0.8, limits: { embed: { day: 0, month: 0 }, llm: { day: LLM_DAY_LIMIT, month: 0 } } },
    now: () => clock.at,
  });
}

/** One job per event, appended to the tenant's log as the relay would find it. */
async function jobFor(db: Db, tenantId: string, kind: string): Promise<JobSpec> {
  return db.withTenant(tenantId, async (sql) => {
    const e = await EventLog.append(sql, tenantId, { type: 'memory.added', actor: JOBS_ACTOR, data: {} });
    return { kind, id: e.id, tenantId, event: { id: e.id, seq: e.seq, type: e.type, data: e.data } };
  });
}

/** The tenant spends its whole day first, so the job's call is refused until RESET. */
async function spendTheDay(budgets: TokenBudgets, tenantId: string): Promise<void> {
  await budgets.reserve(tenantId, 'llm', LLM_DAY_LIMIT);
}

async function deadJobs(store: DeadLetterStore, tenantId: string): Promise<string[]> {
  return (await store.list(tenantId, { state: 'failed', limit: 10 })).items.map((j) => j.jobId);
}

describe.skipIf(!redisUrl)('budget deferral on the BullMQ job queue (real Redis)', { timeout: 60_000 }, () => {
  const run = randomBytes(4).toString('hex');
  const kindOf = (name: string) => `t${run}.${name}`;
  const used: { kind: string; tenant: string }[] = [];
  const queues: JobQueue[] = [];
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
    for (const { kind, tenant } of used) {
      const queue = new Queue(kind, { connection: redis, prefix: BULLMQ_PREFIX });
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await redis.del(PendingJobs.key(tenant, kind));
    }
    redis?.disconnect();
    await t?.close();
  });

  function open(kind: string, tenant: string, clock: Clock, log: Logger, jobs: Partial<JobsConfig> = {}): BullMqJobQueue {
    used.push({ kind, tenant });
    const queue = new BullMqJobQueue({
      redisUrl: redisUrl as string,
      // One attempt: a refusal counted as a failed try would dead-letter the job at once.
      jobs: { attempts: 1, backoffMs: 50, concurrency: 1, stalledMs: 5000, retainSec: 3600, ...jobs },
      deadLetters: store,
      log,
      closeGraceMs: 2000,
      now: () => clock.at,
    });
    queues.push(queue);
    return queue;
  }

  async function bullJob(kind: string, id: string): Promise<Job<JobSpec>> {
    const bull = new Queue<JobSpec>(kind, { connection: redis, prefix: BULLMQ_PREFIX });
    try {
      return (await bull.getJob(id)) as Job<JobSpec>;
    } finally {
      await bull.close();
    }
  }

  it('queue: the job waits in the delayed set until the reset, its try not counted, still pending for fairness, then runs', async () => {
    const kind = kindOf('defer');
    const tenant = `bq-defer-${run}`;
    const clock: Clock = { at: HOUR_BEFORE };
    const budgets = budgetsFor(t, 'queue', clock);
    const { log, lines } = capturingLogger();
    const q = open(kind, tenant, clock, log);
    const runs: Run[] = [];
    await q.work({ [kind]: meteredProcessor(budgets, clock, runs) });
    await spendTheDay(budgets, tenant);
    const spec = await jobFor(t.core.db, tenant, kind);
    await q.enqueue([spec]);

    await until(() => deferrals(lines).length === 1, 'the deferral');
    const job = await bullJob(kind, spec.id);
    expect(await job.getState()).toBe('delayed');
    expect(job.attemptsMade).toBe(0);
    // It waits the hour left until the reset (less what the test took since), not a backoff.
    expect(job.delay).toBeGreaterThan(3_600_000 - 30_000);
    expect(job.delay).toBeLessThanOrEqual(3_600_000);
    expect(deferrals(lines)[0]).toMatchObject({ tenantId: tenant, kind, jobId: spec.id, retryAt: RESET.toISOString(), attempt: 1 });
    // Unfinished: it still counts in its tenant's pending set, and nothing is dead-lettered.
    expect(await redis.zscore(PendingJobs.key(tenant, kind), spec.id)).not.toBeNull();
    expect(await redis.pttl(PendingJobs.key(tenant, kind))).toBeGreaterThan(3_600_000);
    expect(await deadJobs(store, tenant)).toEqual([]);

    // The hour passes (promote() stands in for BullMQ's own promotion when the delay is over).
    clock.at = new Date(RESET.getTime() + 1000);
    await job.promote();
    await until(() => runs.some((r) => r.outcome === 'ran'), 'the job to run after the reset');
    expect(runs).toEqual([
      { attempt: 1, at: HOUR_BEFORE.toISOString(), outcome: 'refused' },
      { attempt: 1, at: clock.at.toISOString(), outcome: 'ran' },
    ]);
    const done = await bullJob(kind, spec.id);
    expect(await done.getState()).toBe('completed');
    expect(await deadJobs(store, tenant)).toEqual([]);
    const left = async () => redis.zscore(PendingJobs.key(tenant, kind), spec.id);
    for (let i = 0; i < 100 && (await left()) !== null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await left()).toBeNull();
  });

  it('queue: a short wait runs again on its own once the delay is over, never counting a try', async () => {
    const kind = kindOf('short');
    const tenant = `bq-short-${run}`;
    const clock: Clock = { at: new Date(RESET.getTime() - 300) };
    const budgets = budgetsFor(t, 'queue', clock);
    const { log, lines } = capturingLogger();
    const q = open(kind, tenant, clock, log);
    const runs: Run[] = [];
    await q.work({ [kind]: meteredProcessor(budgets, clock, runs) });
    await spendTheDay(budgets, tenant);
    const spec = await jobFor(t.core.db, tenant, kind);
    await q.enqueue([spec]);

    // Until the clock passes the reset, each re-run is refused and waits again (300 ms each time).
    await until(() => runs.filter((r) => r.outcome === 'refused').length >= 2, 'a refused re-run');
    clock.at = new Date(RESET.getTime() + 1);
    await until(() => runs.some((r) => r.outcome === 'ran'), 'the job to run after the reset');
    expect(runs.every((r) => r.attempt === 1)).toBe(true);
    expect(runs.filter((r) => r.outcome === 'ran')).toHaveLength(1);
    expect(runs.at(-1)?.outcome).toBe('ran');
    expect(deferrals(lines).length).toBe(runs.filter((r) => r.outcome === 'refused').length);
    expect(await deadJobs(store, tenant)).toEqual([]);
  });

  it('reject: the refusal is an ordinary failure, retried with backoff and dead-lettered', async () => {
    const kind = kindOf('reject');
    const tenant = `bq-reject-${run}`;
    const clock: Clock = { at: HOUR_BEFORE };
    const budgets = budgetsFor(t, 'reject', clock);
    const { log, lines } = capturingLogger();
    const q = open(kind, tenant, clock, log, { attempts: 2 });
    const runs: Run[] = [];
    await q.work({ [kind]: meteredProcessor(budgets, clock, runs) });
    await spendTheDay(budgets, tenant);
    const spec = await jobFor(t.core.db, tenant, kind);
    await q.enqueue([spec]);

    const dead = async () => deadJobs(store, tenant);
    for (let i = 0; i < 200 && (await dead()).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await dead()).toEqual([spec.id]);
    expect(runs.map((r) => [r.attempt, r.outcome])).toEqual([
      [1, 'refused'],
      [2, 'refused'],
    ]);
    expect(deferrals(lines)).toEqual([]);
    expect(await (await bullJob(kind, spec.id)).getState()).toBe('failed');
  });
});

describe.each(backends())('budget deferral on the in-process job queue over %s', (backend: BackendName) => {
  let t: TestCore;
  let store: DeadLetterStore;
  const queues: JobQueue[] = [];

  beforeAll(async () => {
    t = await openTestCore(backend);
    store = new DeadLetterStore({ db: t.core.db });
  });
  afterAll(async () => {
    await Promise.allSettled(queues.map((q) => q.close()));
    await t?.close();
  });

  function open(clock: Clock, log: Logger, jobs: Partial<JobsConfig> = {}): InProcessJobQueue {
    const queue = new InProcessJobQueue({
      // One attempt: a refusal counted as a failed try would dead-letter the job at once.
      jobs: { attempts: 1, backoffMs: 50, concurrency: 1, stalledMs: 5000, retainSec: 3600, ...jobs },
      deadLetters: store,
      log,
      closeGraceMs: 2000,
      db: t.core.db,
      now: () => clock.at,
    });
    queues.push(queue);
    return queue;
  }

  async function pendingRows(tenantId: string): Promise<{ id: string; attempts: number; waitsMs: number }[]> {
    const res = await t.core.db.withTenant(tenantId, (sql) =>
      sql.query<{ job_id: string; attempts: number; waits_ms: number }>(
        `SELECT job_id, attempts, (extract(epoch FROM not_before - now()) * 1000)::float8 AS waits_ms FROM pending_jobs ORDER BY job_id`,
      ),
    );
    return res.rows.map((r) => ({ id: r.job_id, attempts: r.attempts, waitsMs: Number(r.waits_ms) }));
  }

  it('queue: the stored job waits until the reset with no try counted, across a restart, then runs', async () => {
    const kind = 'defer.restart';
    const tenant = `ip-defer-${backend}`;
    const clock: Clock = { at: HOUR_BEFORE };
    const budgets = budgetsFor(t, 'queue', clock);
    const { log, lines } = capturingLogger();
    const first = open(clock, log);
    const runs: Run[] = [];
    await first.work({ [kind]: meteredProcessor(budgets, clock, runs) });
    await spendTheDay(budgets, tenant);
    const spec = await jobFor(t.core.db, tenant, kind);
    await first.enqueue([spec]);

    await until(() => deferrals(lines).length === 1, 'the deferral');
    expect(deferrals(lines)[0]).toMatchObject({ tenantId: tenant, kind, jobId: spec.id, retryAt: RESET.toISOString(), attempt: 1 });
    await first.close();
    const [row] = await pendingRows(tenant);
    expect(row?.id).toBe(spec.id);
    expect(row?.attempts).toBe(0);
    // The hour left until the reset (less what the test took since), not a backoff.
    expect(row?.waitsMs).toBeGreaterThan(3_600_000 - 30_000);
    expect(row?.waitsMs).toBeLessThanOrEqual(3_600_000);
    expect(await deadJobs(store, tenant)).toEqual([]);

    // The hour passes while no process runs.
    clock.at = new Date(RESET.getTime() + 1000);
    await t.core.db.withTenant(tenant, (sql) => sql.query('UPDATE pending_jobs SET not_before = now() WHERE job_id = $1', [spec.id]));
    const second = open(clock, log);
    await second.work({ [kind]: meteredProcessor(budgets, clock, runs) });
    await until(() => runs.some((r) => r.outcome === 'ran'), 'the job to run after the reset');
    await second.close();
    expect(runs).toEqual([
      { attempt: 1, at: HOUR_BEFORE.toISOString(), outcome: 'refused' },
      { attempt: 1, at: clock.at.toISOString(), outcome: 'ran' },
    ]);
    expect(await pendingRows(tenant)).toEqual([]);
    expect(await deadJobs(store, tenant)).toEqual([]);
  });

  it('queue: a short wait runs again on its own once the delay is over, never counting a try', async () => {
    const kind = 'defer.short';
    const tenant = `ip-short-${backend}`;
    const clock: Clock = { at: new Date(RESET.getTime() - 300) };
    const budgets = budgetsFor(t, 'queue', clock);
    const { log, lines } = capturingLogger();
    const q = open(clock, log);
    const runs: Run[] = [];
    await q.work({ [kind]: meteredProcessor(budgets, clock, runs) });
    await spendTheDay(budgets, tenant);
    const spec = await jobFor(t.core.db, tenant, kind);
    await q.enqueue([spec]);

    await until(() => runs.filter((r) => r.outcome === 'refused').length >= 2, 'a refused re-run');
    clock.at = new Date(RESET.getTime() + 1);
    await until(() => runs.some((r) => r.outcome === 'ran'), 'the job to run after the reset');
    await q.close();
    expect(runs.every((r) => r.attempt === 1)).toBe(true);
    expect(runs.filter((r) => r.outcome === 'ran')).toHaveLength(1);
    expect(runs.at(-1)?.outcome).toBe('ran');
    expect(deferrals(lines).length).toBe(runs.filter((r) => r.outcome === 'refused').length);
    expect(await pendingRows(tenant)).toEqual([]);
    expect(await deadJobs(store, tenant)).toEqual([]);
  });

  it('reject: the refusal is an ordinary failure, retried with backoff and dead-lettered', async () => {
    const kind = 'defer.reject';
    const tenant = `ip-reject-${backend}`;
    const clock: Clock = { at: HOUR_BEFORE };
    const budgets = budgetsFor(t, 'reject', clock);
    const { log, lines } = capturingLogger();
    const q = open(clock, log, { attempts: 2 });
    const runs: Run[] = [];
    await q.work({ [kind]: meteredProcessor(budgets, clock, runs) });
    await spendTheDay(budgets, tenant);
    const spec = await jobFor(t.core.db, tenant, kind);
    await q.enqueue([spec]);

    await until(() => runs.length === 2, 'both tries');
    await q.close();
    expect(runs.map((r) => [r.attempt, r.outcome])).toEqual([
      [1, 'refused'],
      [2, 'refused'],
    ]);
    expect(deferrals(lines)).toEqual([]);
    expect(await deadJobs(store, tenant)).toEqual([spec.id]);
    expect(await pendingRows(tenant)).toEqual([]);
  });
});
