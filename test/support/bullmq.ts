import { randomBytes } from 'node:crypto';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import type { JobsConfig } from '../../src/config.js';
import { BULLMQ_PREFIX, BullMqJobQueue, DeadLetterStore, PendingJobs, type BullMqJobQueueOptions, type JobSpec } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { openTestCore, type TestCore } from './backends.js';
import { requireService } from './env.js';

/** Quick retries and a short grace, so a test's failures and closes take milliseconds. */
const TEST_JOBS: JobsConfig = { attempts: 2, backoffMs: 50, concurrency: 1, stalledMs: 5000, retainSec: 3600 };

export interface BullMqTestQueueOptions extends Partial<Omit<BullMqJobQueueOptions, 'redisUrl' | 'jobs'>> {
  /** Over TEST_JOBS. */
  jobs?: Partial<JobsConfig>;
}

/**
 * One test suite's BullMQ queues on a Redis that other files share: their names carry this run's
 * id, and close() removes every queue and tenant pending set the run used, so no run sees
 * another's jobs or leaves its own behind. The queues dead-letter into a core of the run's own
 * (on PostgreSQL when the runner started one).
 */
export class BullMqTestRun {
  /** Unique to this run: part of every queue name, and of tenant ids where they must not collide. */
  readonly id = randomBytes(4).toString('hex');
  private opened: { redisUrl: string; redis: Redis; core: TestCore; deadLetters: DeadLetterStore } | undefined;
  private readonly queues: BullMqJobQueue[] = [];
  private readonly used: { kind: string; tenants: readonly string[] }[] = [];

  private constructor(private readonly redisUrl: string | undefined) {}

  /** A run opened before the enclosing suite's tests and closed after them. */
  static forSuite(redisUrl: string | undefined): BullMqTestRun {
    const run = new BullMqTestRun(redisUrl);
    beforeAll(() => run.open());
    afterAll(() => run.close());
    return run;
  }

  /** For reading the queues' keys directly. */
  get redis(): Redis {
    return this.started().redis;
  }

  get core(): TestCore {
    return this.started().core;
  }

  /** Where the run's queues write their dead letters unless told otherwise. */
  get deadLetters(): DeadLetterStore {
    return this.started().deadLetters;
  }

  /** A job kind (BullMQ queue name) of this run only. */
  kindOf(name: string): string {
    return `t${this.id}.${name}`;
  }

  /** A queue removed at close() with the pending sets of `tenants` on `kind`. */
  queue(kind: string, tenants: readonly string[], opts: BullMqTestQueueOptions = {}): BullMqJobQueue {
    this.used.push({ kind, tenants });
    const { jobs, deadLetters, log, closeGraceMs, ...rest } = opts;
    const queue = new BullMqJobQueue({
      ...rest,
      redisUrl: this.started().redisUrl,
      jobs: { ...TEST_JOBS, ...jobs },
      deadLetters: deadLetters ?? this.deadLetters,
      log: log ?? createLogger('silent'),
      closeGraceMs: closeGraceMs ?? 2000,
    });
    this.queues.push(queue);
    return queue;
  }

  /** The job as BullMQ holds it now. */
  async job(kind: string, id: string): Promise<Job<JobSpec> | undefined> {
    const bull = new Queue<JobSpec>(kind, { connection: this.redis, prefix: BULLMQ_PREFIX });
    try {
      return await bull.getJob(id);
    } finally {
      await bull.close();
    }
  }

  private async open(): Promise<void> {
    const redisUrl = this.redisUrl;
    if (redisUrl === undefined) throw new Error('a BullMQ test run needs a Redis: skip its suite when there is none');
    const redis = new Redis(redisUrl);
    try {
      const core = await openTestCore(requireService('postgres') ? 'postgres' : 'pglite');
      this.opened = { redisUrl, redis, core, deadLetters: new DeadLetterStore({ db: core.core.db }) };
    } catch (err) {
      redis.disconnect();
      throw err;
    }
  }

  private async close(): Promise<void> {
    if (!this.opened) return;
    const { redis, core } = this.opened;
    await Promise.allSettled(this.queues.map((q) => q.close()));
    for (const { kind, tenants } of this.used) {
      const queue = new Queue(kind, { connection: redis, prefix: BULLMQ_PREFIX });
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      for (const tenant of tenants) await redis.del(PendingJobs.key(tenant, kind));
    }
    redis.disconnect();
    await core.close();
  }

  private started(): NonNullable<BullMqTestRun['opened']> {
    if (!this.opened) throw new Error('the BullMQ test run is used before its suite started it');
    return this.opened;
  }
}
