import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { JobsConfig } from '../config.js';
import type { Logger } from '../obs/index.js';
import { AeternaError } from '../protocol/index.js';
import { BudgetDeferral, deferralDelay, logDeferral, recordDead, runAttempt } from './attempt.js';
import { PendingJobs } from './bullmq-pending.js';
import type { DeadLetterSink, JobProcessor, JobQueue, JobSpec } from './types.js';
import { settlesWithin } from './wait.js';

export interface BullMqJobQueueOptions {
  redisUrl: string;
  jobs: JobsConfig;
  deadLetters: DeadLetterSink;
  log: Logger;
  /** How long close() lets running jobs finish before aborting their signal. */
  closeGraceMs: number;
  /** Redis key prefix of every queue: system keys, not a tenant's. */
  prefix?: string;
  /** The clock a budget's reset time is waited for by (tests share the budgets' fake clock). */
  now?: () => Date;
}

export const BULLMQ_PREFIX = 'aeterna:jobs';

/**
 * Jobs across processes on BullMQ: one queue per job kind (the queue's name is the kind), the
 * event id as BullMQ job id, so a second enqueue of an event finds the job and adds nothing while
 * BullMQ keeps it (`jobs.retainSec` after it finished). A worker killed mid-job stops renewing its
 * lock; after `jobs.stalledMs` another worker's stalled-job check puts the job back in the queue.
 */
export class BullMqJobQueue implements JobQueue {
  readonly name = 'bullmq';
  private readonly prefix: string;
  /** Fails fast (two reconnect tries, a command timeout): an enqueue must fail and the relay retry it, not hang a drain. */
  private readonly producer: Redis;
  /** Workers' connection: BullMQ's blocking reads need retries without limit. */
  private consumer: Redis | undefined;
  private readonly queues = new Map<string, Queue<JobSpec>>();
  private readonly workers: Worker<JobSpec>[] = [];
  private readonly pending: PendingJobs;
  /**
   * Jobs whose processor ran here, which wrote the dead letter if their last try failed; the
   * others that fail were failed by BullMQ itself (stalled too often), or could not be delayed
   * for a budget's reset.
   */
  private readonly ran = new WeakSet<Job<JobSpec>>();
  private readonly abort = new AbortController();
  private closed = false;
  private readonly now: () => Date;

  constructor(private readonly opts: BullMqJobQueueOptions) {
    this.prefix = opts.prefix ?? BULLMQ_PREFIX;
    this.now = opts.now ?? (() => new Date());
    this.producer = this.connect({ maxRetriesPerRequest: 2, commandTimeout: 10_000 });
    this.pending = new PendingJobs(this.producer, opts.jobs.retainSec * 1000);
  }

  async enqueue(jobs: readonly JobSpec[]): Promise<void> {
    if (this.closed) throw new AeternaError('UNAVAILABLE', 'the job queue is closed');
    const byKind = new Map<string, JobSpec[]>();
    for (const job of jobs) {
      const group = byKind.get(job.kind);
      if (group) group.push(job);
      else byKind.set(job.kind, [job]);
    }
    const { attempts, backoffMs, retainSec } = this.opts.jobs;
    for (const [kind, specs] of byKind) {
      const queue = this.queue(kind);
      const priorities = await this.pending.admit(specs, (id) => queue.toKey(id));
      const fresh = specs.flatMap((spec, i) => {
        const priority = priorities[i] ?? 0;
        if (priority === 0) return [];
        return [{
          name: kind,
          data: spec,
          opts: {
            jobId: spec.id,
            priority,
            attempts,
            backoff: { type: 'exponential', delay: backoffMs },
            removeOnComplete: { age: retainSec },
            removeOnFail: { age: retainSec },
          },
        }];
      });
      if (fresh.length > 0) await queue.addBulk(fresh);
    }
  }

  async work(processors: Readonly<Record<string, JobProcessor>>): Promise<void> {
    if (this.closed) throw new AeternaError('UNAVAILABLE', 'the job queue is closed');
    this.consumer ??= this.connect({ maxRetriesPerRequest: null });
    const { concurrency, stalledMs, attempts } = this.opts.jobs;
    for (const [kind, processor] of Object.entries(processors)) {
      const worker = new Worker<JobSpec>(kind, (job, token, signal) => this.process(processor, job, token, signal), {
        connection: this.consumer,
        prefix: this.prefix,
        concurrency,
        lockDuration: stalledMs,
        stalledInterval: Math.max(250, Math.floor(stalledMs / 2)),
        // A job that keeps killing its worker (out of memory, say) ends up dead, not in a crash loop.
        maxStalledCount: attempts,
      });
      worker.on('completed', (job) => void this.pending.done(job.data).catch((err: unknown) => this.warn('pending-set cleanup failed', err)));
      worker.on('failed', (job, err) => void this.onFailed(job, err));
      worker.on('error', (err) => this.warn(`job worker error (${kind})`, err));
      this.workers.push(worker);
      await worker.waitUntilReady();
    }
  }

  /**
   * A dead job BullMQ still holds runs again with its attempts reset. One that finished or is on
   * its way counts as retried; one BullMQ no longer holds (removed after the retention window)
   * is for the caller to enqueue again from its dead-letter row.
   */
  async retry(kind: string, id: string): Promise<boolean> {
    const job = (await this.queue(kind).getJob(id)) as Job<JobSpec> | undefined;
    if (!job) return false;
    const state = await job.getState();
    if (state === 'unknown') return false;
    if (state === 'failed' || state === 'completed') {
      await this.pending.readmit(job.data);
      await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
    }
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const workersClosed = Promise.allSettled(this.workers.map((w) => w.close()));
    if (!(await settlesWithin(workersClosed, this.opts.closeGraceMs))) {
      // Their locks lapse and other workers take the jobs over after stalledMs.
      this.opts.log.warn('jobs still running after the grace period: aborting them');
      this.abort.abort();
      await settlesWithin(workersClosed, 1000);
    }
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    for (const client of [this.producer, this.consumer]) client?.disconnect();
  }

  private connect(extra: RedisOptions): Redis {
    const client = new Redis(this.opts.redisUrl, extra);
    // ioredis reconnects by itself; an error event without a listener would crash the process.
    client.on('error', (err: Error) => this.warn('job queue redis connection error', err));
    return client;
  }

  private queue(kind: string): Queue<JobSpec> {
    let queue = this.queues.get(kind);
    if (!queue) {
      queue = new Queue<JobSpec>(kind, { connection: this.producer, prefix: this.prefix });
      queue.on('error', (err) => this.warn(`job queue error (${kind})`, err));
      this.queues.set(kind, queue);
    }
    return queue;
  }

  private async process(processor: JobProcessor, job: Job<JobSpec>, token: string | undefined, bullSignal: AbortSignal | undefined): Promise<void> {
    this.ran.add(job);
    const signal = bullSignal ? AbortSignal.any([this.abort.signal, bullSignal]) : this.abort.signal;
    const attempt = job.attemptsMade + 1;
    try {
      await runAttempt(processor, { spec: job.data, attempt, attempts: job.opts.attempts ?? 1, signal }, this.opts.deadLetters, this.opts.log);
    } catch (err) {
      if (err instanceof BudgetDeferral) await this.defer(job, token, err, attempt);
      throw err;
    }
  }

  /**
   * Moves the job to BullMQ's delayed set until the budget's reset without counting the try
   * (`moveToDelayed` leaves `attemptsMade` as it is), and throws DelayedError, which tells the
   * worker the job is already where it belongs. A job that cannot be moved fails this try as any
   * other error would; BullMQ's own failure report then writes the dead letter if it was the last.
   */
  private async defer(job: Job<JobSpec>, token: string | undefined, deferral: BudgetDeferral, attempt: number): Promise<never> {
    const spec = job.data;
    const delayMs = deferralDelay(deferral.retryAt, this.now());
    try {
      if (token === undefined) throw new Error('the worker gave no lock token');
      // Before the move: the job may run again as soon as it is delayed, and finish.
      await this.pending.defer(spec, delayMs).catch((e: unknown) => this.warn('pending-set update failed', e));
      await job.moveToDelayed(Date.now() + delayMs, token);
    } catch (err) {
      this.opts.log.warn({ err, kind: spec.kind, jobId: spec.id, tenantId: spec.tenantId }, 'could not delay a job until its budget resets: failing the try');
      this.ran.delete(job);
      throw deferral.cause;
    }
    logDeferral(this.opts.log, spec, deferral.retryAt, attempt);
    throw new DelayedError();
  }

  /** `finishedOn` is set only when BullMQ will not try the job again. */
  private async onFailed(job: Job<JobSpec> | undefined, err: Error): Promise<void> {
    if (!job) return;
    this.opts.log.warn({ err, kind: job.data.kind, jobId: job.id, tenantId: job.data.tenantId, attemptsMade: job.attemptsMade }, 'job failed');
    if (!job.finishedOn) return;
    if (!this.ran.has(job)) await recordDead(this.opts.deadLetters, job.data, err, job.attemptsMade, this.opts.log);
    await this.pending.done(job.data).catch((e: unknown) => this.warn('pending-set cleanup failed', e));
  }

  private warn(msg: string, err: unknown): void {
    this.opts.log.warn({ err }, msg);
  }
}
