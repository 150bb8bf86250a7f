import type { JobsConfig } from '../config.js';
import type { Logger } from '../obs/index.js';
import { AeternaError } from '../protocol/index.js';
import type { Db } from '../store/index.js';
import { BudgetDeferral, backoffDelay, deferralDelay, logDeferral, runAttempt } from './attempt.js';
import { DurableJobStore, MAX_DELAY_MS, jobKey } from './durable.js';
import { FairQueue } from './fair-queue.js';
import { settlesWithin } from './wait.js';
import type { DeadLetterSink, EnqueueOptions, JobProcessor, JobQueue, JobSpec } from './types.js';

export interface InProcessJobQueueOptions {
  jobs: JobsConfig;
  deadLetters: DeadLetterSink;
  log: Logger;
  /** How long close() lets running jobs finish before aborting their signal. */
  closeGraceMs: number;
  /**
   * Where jobs are kept from enqueue until they finish (`pending_jobs`), so a restarted process
   * resumes them. Without it they live in memory only and a crash loses them.
   */
  db?: Db;
  /** The clock a budget's reset time is waited for by (tests share the budgets' fake clock). */
  now?: () => Date;
}

interface Pending {
  spec: JobSpec;
  /** Failed tries so far. */
  failures: number;
}

/**
 * What is known of a (kind, id): in flight (queued, running, or waiting out a backoff or a budget
 * deferral), or finished (its spec let go). `stored` settles once the job is durable, so a second
 * enqueue of it does not report success before then.
 */
type Known = { state: 'in-flight'; stored: Promise<unknown> } | { state: 'finished'; at: number };

interface Lane {
  queue: FairQueue<Pending>;
  running: number;
  processor?: JobProcessor;
}

const STORED: Promise<unknown> = Promise.resolve();

/**
 * The job queue of embedded mode: the same semantics as BullMQ, in one process. With a `db`, every
 * job is written to `pending_jobs` before enqueue resolves and stays there until it succeeds or
 * dies, so a crash loses nothing: the next `work()` resumes each unfinished job with its attempt
 * count and its backoff, or its wait for a token budget's reset.
 *
 * Finished jobs are not kept in the table: their ids are remembered in memory for `jobs.retainSec`
 * only. The one re-enqueue a restart brings is the relay re-reading the pages of the drain that
 * was in flight when the process died, whose positions it had not saved; a job among those that
 * had finished runs again, which processors tolerate (they must be idempotent). A table of
 * finished ids would cost a write per job and a sweeper to keep that window exact.
 */
export class InProcessJobQueue implements JobQueue {
  readonly name = 'in-process';
  private readonly known = new Map<string, Known>();
  /** Finished keys in finishing order from `finishedHead` on, so expiry looks only at the front. */
  private finishedOrder: { key: string; at: number }[] = [];
  private finishedHead = 0;
  private readonly lanes = new Map<string, Lane>();
  private readonly running = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly abort = new AbortController();
  private readonly store: DurableJobStore | undefined;
  private readonly now: () => Date;
  private resumed: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: InProcessJobQueueOptions) {
    this.store = opts.db ? new DurableJobStore(opts.db) : undefined;
    this.now = opts.now ?? (() => new Date());
  }

  /**
   * Resolves once every job is durable (stored now, or by the enqueue that first brought it);
   * rejects when some could not be stored, and those are forgotten so that a repeat stores them.
   */
  async enqueue(jobs: readonly JobSpec[], opts: EnqueueOptions = {}): Promise<void> {
    if (this.closed) throw new AeternaError('UNAVAILABLE', 'the job queue is closed');
    this.expire();
    const byTenant = new Map<string, JobSpec[]>();
    const waits: Promise<unknown>[] = [];
    const seen = new Set<string>();
    for (const spec of jobs) {
      const key = jobKey(spec.kind, spec.id);
      const known = this.known.get(key);
      if (known?.state === 'in-flight') waits.push(known.stored);
      if (known || seen.has(key)) continue;
      seen.add(key);
      const group = byTenant.get(spec.tenantId);
      if (group) group.push(spec);
      else byTenant.set(spec.tenantId, [spec]);
    }
    // Every key is claimed before the first await, so a concurrent enqueue waits on these writes.
    const admitted = [...byTenant].map(([tenantId, specs]) => {
      const stored = this.store ? this.store.add(tenantId, specs, opts.sql) : Promise.resolve(undefined);
      for (const spec of specs) this.known.set(jobKey(spec.kind, spec.id), { state: 'in-flight', stored });
      return this.admit(specs, stored);
    });
    const outcomes = await Promise.allSettled([...admitted, ...waits]);
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Queues the jobs a write stored; forgets those it did not, so that a repeat stores them. */
  private async admit(specs: readonly JobSpec[], stored: Promise<Set<string> | undefined>): Promise<void> {
    let added: Set<string> | undefined;
    try {
      added = await stored;
    } catch (err) {
      for (const spec of specs) this.forgetUnstored(spec, stored);
      throw err;
    }
    const kinds = new Set<string>();
    for (const spec of specs) {
      // Stored before but unknown here: a row the first work() resumes, or another queue's job.
      if (added && !added.has(jobKey(spec.kind, spec.id))) this.forgetUnstored(spec, stored);
      else {
        this.lane(spec.kind).queue.push(spec.tenantId, { spec, failures: 0 });
        kinds.add(spec.kind);
      }
    }
    for (const kind of kinds) this.pump(kind);
  }

  /** The first call resumes the jobs a previous process left unfinished, of every kind. */
  async work(processors: Readonly<Record<string, JobProcessor>>): Promise<void> {
    if (this.closed) throw new AeternaError('UNAVAILABLE', 'the job queue is closed');
    this.resumed ??= this.resume().catch((err: unknown) => {
      this.resumed = undefined;
      throw err;
    });
    await this.resumed;
    for (const [kind, processor] of Object.entries(processors)) {
      this.lane(kind).processor = processor;
      this.pump(kind);
    }
  }

  /**
   * A finished job's spec is not kept (a day of events would not fit in memory), so a dead job
   * is forgotten here and the caller enqueues it again from the dead-letter row.
   */
  async retry(kind: string, id: string): Promise<boolean> {
    const key = jobKey(kind, id);
    const known = this.known.get(key);
    if (known?.state === 'in-flight') return true;
    this.known.delete(key);
    return false;
  }

  /** Jobs queued or waiting for a retry stay in the table and resume in the next process. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    const all = Promise.allSettled(this.running);
    if (!(await settlesWithin(all, this.opts.closeGraceMs))) {
      this.opts.log.warn({ running: this.running.size }, 'jobs still running after the grace period: aborting them');
      this.abort.abort();
      await settlesWithin(all, 1000);
    }
  }

  private async resume(): Promise<void> {
    if (!this.store) return;
    let resumed = 0;
    for (const { spec, attempts, delayMs } of await this.store.load()) {
      const key = jobKey(spec.kind, spec.id);
      if (this.known.has(key)) continue; // enqueued again before we got here
      this.known.set(key, { state: 'in-flight', stored: STORED });
      this.schedule({ spec, failures: attempts }, delayMs);
      resumed++;
    }
    if (resumed > 0) this.opts.log.info({ jobs: resumed }, 'resumed unfinished jobs');
  }

  /** Drops a claim that did not lead to a stored job, unless a later enqueue claimed the key since. */
  private forgetUnstored(spec: JobSpec, stored: Promise<unknown>): void {
    const key = jobKey(spec.kind, spec.id);
    const known = this.known.get(key);
    if (known?.state === 'in-flight' && known.stored === stored) this.known.delete(key);
  }

  private lane(kind: string): Lane {
    let lane = this.lanes.get(kind);
    if (!lane) {
      lane = { queue: new FairQueue<Pending>(), running: 0 };
      this.lanes.set(kind, lane);
    }
    return lane;
  }

  private pump(kind: string): void {
    const lane = this.lanes.get(kind);
    if (!lane?.processor || this.closed) return;
    while (lane.running < this.opts.jobs.concurrency) {
      const next = lane.queue.shift();
      if (!next) return;
      this.start(kind, lane, lane.processor, next);
    }
  }

  private start(kind: string, lane: Lane, processor: JobProcessor, job: Pending): void {
    lane.running++;
    const run = this.run(processor, job).finally(() => {
      lane.running--;
      this.running.delete(run);
      this.pump(kind);
    });
    this.running.add(run);
  }

  /** One try and its bookkeeping, memory first and then the table; never rejects. */
  private async run(processor: JobProcessor, job: Pending): Promise<void> {
    const { spec } = job;
    const attempt = job.failures + 1;
    const { attempts } = this.opts.jobs;
    let deadRecorded = false;
    const deadLetters: DeadLetterSink = {
      record: async (...args) => {
        await this.opts.deadLetters.record(...args);
        deadRecorded = true;
      },
    };
    try {
      await runAttempt(processor, { spec, attempt, attempts, signal: this.abort.signal }, deadLetters, this.opts.log);
    } catch (err) {
      if (err instanceof BudgetDeferral) {
        await this.defer(job, err.retryAt);
        return;
      }
      job.failures = attempt;
      this.opts.log.warn({ err, kind: spec.kind, jobId: spec.id, tenantId: spec.tenantId, attempt, attempts }, 'job failed');
      if (deadRecorded) {
        // The dead letter is written; only now may the job's row go.
        this.finish(spec);
        await this.updateStore('remove a dead job', spec, (store) => store.done(spec));
      } else if (this.abort.signal.aborted) {
        // Cut short by shutdown, not failed on its own: its row stays as it was and it re-runs.
      } else if (attempt >= attempts) {
        // The dead letter could not be written (recordDead logged why): the row stays, so the
        // next process runs the last try again and records the failure then.
        this.finish(spec);
      } else {
        const delayMs = Math.min(backoffDelay(this.opts.jobs.backoffMs, attempt), MAX_DELAY_MS);
        await this.updateStore('record a failed try', spec, (store) => store.failed(spec, attempt, delayMs));
        this.schedule(job, delayMs);
      }
      return;
    }
    this.finish(spec);
    await this.updateStore('remove a finished job', spec, (store) => store.done(spec));
  }

  /**
   * Waits for the budget's reset with the job's tries as they were. Written to the table first, so
   * that a restart (or a shutdown cutting this try short) waits for the reset too.
   */
  private async defer(job: Pending, retryAt: Date): Promise<void> {
    const { spec } = job;
    const delayMs = deferralDelay(retryAt, this.now());
    await this.updateStore('record a budget deferral', spec, (store) => store.deferred(spec, delayMs));
    logDeferral(this.opts.log, spec, retryAt, job.failures + 1);
    this.schedule(job, delayMs);
  }

  /**
   * A table write after a try. One that fails leaves an older row behind: at worst the next
   * process runs the job once more, which idempotent processors allow.
   */
  private async updateStore(what: string, spec: JobSpec, write: (store: DurableJobStore) => Promise<void>): Promise<void> {
    if (!this.store) return;
    try {
      await write(this.store);
    } catch (err) {
      this.opts.log.warn({ err, kind: spec.kind, jobId: spec.id, tenantId: spec.tenantId }, `could not ${what}`);
    }
  }

  /** Queues the job, at once or after its backoff or deferral (in steps setTimeout can take). */
  private schedule(job: Pending, delayMs: number): void {
    if (this.closed) return;
    const kind = job.spec.kind;
    if (delayMs <= 0) {
      this.lane(kind).queue.push(job.spec.tenantId, job);
      this.pump(kind);
      return;
    }
    const step = Math.min(delayMs, MAX_DELAY_MS);
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      this.schedule(job, delayMs - step);
    }, step);
    this.retryTimers.add(timer);
  }

  private finish(spec: JobSpec): void {
    const key = jobKey(spec.kind, spec.id);
    const at = Date.now();
    this.known.set(key, { state: 'finished', at });
    this.finishedOrder.push({ key, at });
  }

  /** Forgets finished jobs older than the retention window: after it, the same id runs again. */
  private expire(): void {
    const cutoff = Date.now() - this.opts.jobs.retainSec * 1000;
    for (let next = this.finishedOrder[this.finishedHead]; next && next.at <= cutoff; next = this.finishedOrder[++this.finishedHead]) {
      const known = this.known.get(next.key);
      // A key re-enqueued after an admin retry finished again later; only its newest entry counts.
      if (known?.state === 'finished' && known.at === next.at) this.known.delete(next.key);
    }
    if (this.finishedHead > 1024 && this.finishedHead * 2 > this.finishedOrder.length) {
      this.finishedOrder = this.finishedOrder.slice(this.finishedHead);
      this.finishedHead = 0;
    }
  }
}
