import type { Job } from 'bullmq';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BudgetsConfig, JobsConfig } from '../../src/config.js';
import { EventLog } from '../../src/events/index.js';
import {
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
import { BullMqTestRun, requireService } from '../support/index.js';

const redisUrl = requireService('redis');

/** The day the budgets live in; its period resets at RESET. */
const RESET = new Date('2026-03-11T00:00:00.000Z');
const HOUR_BEFORE = new Date(RESET.getTime() - 3_600_000);
const LLM_DAY_LIMIT = 10;
/** One try: a refusal counted as a failed try would dead-letter the job at once. */
const ONE_TRY: JobsConfig = { attempts: 1, backoffMs: 50, concurrency: 1, stalledMs: 5000, retainSec: 3600 };

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

/** A deferred job as its queue stores it. */
interface HeldJob {
  /** Tries counted so far. */
  attempts: number;
  /** Until it may run again. */
  waitsMs: number;
}

/**
 * One job queue implementation as the scenarios see it. Where the queue keeps its jobs (BullMQ's
 * sets in Redis, or the pending_jobs table) decides how a held job is read, released early and
 * seen to be finished; the scenarios are the same for both.
 */
interface QueueUnderTest {
  core: TestCore;
  deadLetters: DeadLetterStore;
  /** The scenario's job kind and tenant, apart from those of other runs and backends. */
  names(scenario: string): { kind: string; tenant: string };
  /** ONE_TRY unless `jobs` says otherwise; its budget clock is `clock`. */
  open(kind: string, tenant: string, clock: Clock, log: Logger, jobs?: Partial<JobsConfig>): JobQueue;
  /** The job `q` deferred, as stored; asserts it still counts as pending where that is kept apart. */
  held(q: JobQueue, spec: JobSpec): Promise<HeldJob>;
  /** Ends the wait as the passing hour would; gives the queue that runs the job, from `restart` if `q` is gone. */
  endWait(q: JobQueue, spec: JobSpec, restart: () => Promise<JobQueue>): Promise<JobQueue>;
  /** After the job's last run: asserts it ended as `end` and the queue holds it pending no more. */
  expectFinished(q: JobQueue, spec: JobSpec, end: 'completed' | 'failed'): Promise<void>;
}

/** A queue working `kind` with the metered processor, the tenant's day spent, and one job enqueued. */
async function deferralSetup(s: QueueUnderTest, scenario: string, action: BudgetsConfig['action'], clock: Clock, jobs: Partial<JobsConfig> = {}) {
  const { kind, tenant } = s.names(scenario);
  const budgets = budgetsFor(s.core, action, clock);
  const { log, lines } = capturingLogger();
  const runs: Run[] = [];
  const processors = { [kind]: meteredProcessor(budgets, clock, runs) };
  const q = s.open(kind, tenant, clock, log, jobs);
  await q.work(processors);
  await spendTheDay(budgets, tenant);
  const spec = await jobFor(s.core.core.db, tenant, kind);
  await q.enqueue([spec]);
  const restart = async () => {
    const again = s.open(kind, tenant, clock, log, jobs);
    await again.work(processors);
    return again;
  };
  return { kind, tenant, lines, runs, q, spec, restart };
}

/** The scenarios every queue implementation must pass; `underTest` is read once the suite's beforeAll ran. */
function deferralScenarios(underTest: () => QueueUnderTest): void {
  it('queue: the job waits until the reset with no try counted, still pending, then runs', async () => {
    const s = underTest();
    const clock: Clock = { at: HOUR_BEFORE };
    const { kind, tenant, lines, runs, q, spec, restart } = await deferralSetup(s, 'defer', 'queue', clock);

    await until(() => deferrals(lines).length === 1, 'the deferral');
    expect(deferrals(lines)[0]).toMatchObject({ tenantId: tenant, kind, jobId: spec.id, retryAt: RESET.toISOString(), attempt: 1 });
    const held = await s.held(q, spec);
    expect(held.attempts).toBe(0);
    // It waits the hour left until the reset (less what the test took since), not a backoff.
    expect(held.waitsMs).toBeGreaterThan(3_600_000 - 30_000);
    expect(held.waitsMs).toBeLessThanOrEqual(3_600_000);
    expect(await deadJobs(s.deadLetters, tenant)).toEqual([]);

    clock.at = new Date(RESET.getTime() + 1000);
    const runner = await s.endWait(q, spec, restart);
    await until(() => runs.some((r) => r.outcome === 'ran'), 'the job to run after the reset');
    await s.expectFinished(runner, spec, 'completed');
    expect(runs).toEqual([
      { attempt: 1, at: HOUR_BEFORE.toISOString(), outcome: 'refused' },
      { attempt: 1, at: clock.at.toISOString(), outcome: 'ran' },
    ]);
    expect(await deadJobs(s.deadLetters, tenant)).toEqual([]);
  });

  it('queue: a short wait runs again on its own once the delay is over, never counting a try', async () => {
    const s = underTest();
    const clock: Clock = { at: new Date(RESET.getTime() - 300) };
    const { tenant, lines, runs, q, spec } = await deferralSetup(s, 'short', 'queue', clock);

    // Until the clock passes the reset, each re-run is refused and waits again (300 ms each time).
    await until(() => runs.filter((r) => r.outcome === 'refused').length >= 2, 'a refused re-run');
    clock.at = new Date(RESET.getTime() + 1);
    await until(() => runs.some((r) => r.outcome === 'ran'), 'the job to run after the reset');
    await s.expectFinished(q, spec, 'completed');
    expect(runs.every((r) => r.attempt === 1)).toBe(true);
    expect(runs.filter((r) => r.outcome === 'ran')).toHaveLength(1);
    expect(runs.at(-1)?.outcome).toBe('ran');
    expect(deferrals(lines).length).toBe(runs.filter((r) => r.outcome === 'refused').length);
    expect(await deadJobs(s.deadLetters, tenant)).toEqual([]);
  });

  it('reject: the refusal is an ordinary failure, retried with backoff and dead-lettered', async () => {
    const s = underTest();
    const clock: Clock = { at: HOUR_BEFORE };
    const { tenant, lines, runs, q, spec } = await deferralSetup(s, 'reject', 'reject', clock, { attempts: 2 });

    await until(() => runs.length === 2, 'both tries');
    await s.expectFinished(q, spec, 'failed');
    expect(runs.map((r) => [r.attempt, r.outcome])).toEqual([
      [1, 'refused'],
      [2, 'refused'],
    ]);
    expect(deferrals(lines)).toEqual([]);
    expect(await deadJobs(s.deadLetters, tenant)).toEqual([spec.id]);
  });
}

describe.skipIf(!redisUrl)('budget deferral on the BullMQ job queue (real Redis)', { timeout: 60_000 }, () => {
  const bull = BullMqTestRun.forSuite(redisUrl);

  async function bullJob(spec: JobSpec): Promise<Job<JobSpec>> {
    const job = await bull.job(spec.kind, spec.id);
    expect(job).toBeDefined();
    return job as Job<JobSpec>;
  }

  const pendingScore = (spec: JobSpec) => bull.redis.zscore(PendingJobs.key(spec.tenantId, spec.kind), spec.id);

  deferralScenarios(() => ({
    core: bull.core,
    deadLetters: bull.deadLetters,
    names: (scenario) => ({ kind: bull.kindOf(scenario), tenant: `bq-${scenario}-${bull.id}` }),
    open: (kind, tenant, clock, log, jobs = {}) => bull.queue(kind, [tenant], { jobs: { ...ONE_TRY, ...jobs }, log, now: () => clock.at }),
    async held(_q, spec) {
      const job = await bullJob(spec);
      expect(await job.getState()).toBe('delayed');
      // Unfinished: it still counts in its tenant's pending set, for as long as it waits.
      expect(await pendingScore(spec)).not.toBeNull();
      expect(await bull.redis.pttl(PendingJobs.key(spec.tenantId, spec.kind))).toBeGreaterThan(3_600_000);
      return { attempts: job.attemptsMade, waitsMs: job.delay };
    },
    async endWait(q, spec) {
      // promote() stands in for BullMQ's own promotion when the delay is over.
      await (await bullJob(spec)).promote();
      return q;
    },
    async expectFinished(_q, spec, end) {
      // BullMQ moves the job and clears the pending set after the processor returned.
      const finished = async () => (await (await bullJob(spec)).getState()) === end && (await pendingScore(spec)) === null;
      for (let i = 0; i < 100 && !(await finished()); i++) await new Promise((r) => setTimeout(r, 50));
      expect(await (await bullJob(spec)).getState()).toBe(end);
      expect(await pendingScore(spec)).toBeNull();
    },
  }));
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

  async function pendingRows(tenantId: string): Promise<{ id: string; attempts: number; waitsMs: number }[]> {
    const res = await t.core.db.withTenant(tenantId, (sql) =>
      sql.query<{ job_id: string; attempts: number; waits_ms: number }>(
        `SELECT job_id, attempts, (extract(epoch FROM not_before - now()) * 1000)::float8 AS waits_ms FROM pending_jobs ORDER BY job_id`,
      ),
    );
    return res.rows.map((r) => ({ id: r.job_id, attempts: r.attempts, waitsMs: Number(r.waits_ms) }));
  }

  deferralScenarios(() => ({
    core: t,
    deadLetters: store,
    names: (scenario) => ({ kind: `defer.${scenario}`, tenant: `ip-${scenario}-${backend}` }),
    open(_kind, _tenant, clock, log, jobs = {}) {
      const queue = new InProcessJobQueue({ jobs: { ...ONE_TRY, ...jobs }, deadLetters: store, log, closeGraceMs: 2000, db: t.core.db, now: () => clock.at });
      queues.push(queue);
      return queue;
    },
    async held(q, spec) {
      // The process stops while the job waits: what it stored is all that is left of the job.
      await q.close();
      const rows = await pendingRows(spec.tenantId);
      expect(rows.map((r) => r.id)).toEqual([spec.id]);
      return rows[0] as HeldJob;
    },
    async endWait(_q, spec, restart) {
      // The hour passes while no process runs.
      await t.core.db.withTenant(spec.tenantId, (sql) => sql.query('UPDATE pending_jobs SET not_before = now() WHERE job_id = $1', [spec.id]));
      return restart();
    },
    async expectFinished(q, spec) {
      await q.close();
      expect(await pendingRows(spec.tenantId)).toEqual([]);
    },
  }));
});
