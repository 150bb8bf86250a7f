import type { JobsConfig } from '../config.js';
import type { Logger } from '../obs/index.js';
import { AeternaError } from '../protocol/index.js';
import { backoffDelay, runAttempt } from './attempt.js';
import { FairQueue } from './fair-queue.js';
import { settlesWithin } from './wait.js';
import type { DeadLetterSink, JobProcessor, JobQueue, JobSpec } from './types.js';

export interface InProcessJobQueueOptions {
  jobs: JobsConfig;
  deadLetters: DeadLetterSink;
  log: Logger;
  /** How long close() lets running jobs finish before aborting their signal. */
  closeGraceMs: number;
}

interface Pending {
  spec: JobSpec;
  /** Failed tries so far. */
  failures: number;
}

/** What is known of a (kind, id): in flight with its spec, or finished (the spec let go). */
type Known = { state: 'in-flight' } | { state: 'finished'; at: number };

interface Lane {
  queue: FairQueue<Pending>;
  running: number;
  processor?: JobProcessor;
}

const keyOf = (kind: string, id: string) => `${kind}\u0000${id}`;

/**
 * The job queue of embedded mode: the same semantics as BullMQ, in one process. Jobs live in
 * memory only, so a crash loses what was queued or waiting for a retry (the event log still holds
 * the events that implied them).
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
  private closed = false;

  constructor(private readonly opts: InProcessJobQueueOptions) {}

  async enqueue(jobs: readonly JobSpec[]): Promise<void> {
    if (this.closed) throw new AeternaError('UNAVAILABLE', 'the job queue is closed');
    this.expire();
    const kinds = new Set<string>();
    for (const spec of jobs) {
      const key = keyOf(spec.kind, spec.id);
      if (this.known.has(key)) continue;
      this.known.set(key, { state: 'in-flight' });
      this.lane(spec.kind).queue.push(spec.tenantId, { spec, failures: 0 });
      kinds.add(spec.kind);
    }
    for (const kind of kinds) this.pump(kind);
  }

  async work(processors: Readonly<Record<string, JobProcessor>>): Promise<void> {
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
    const key = keyOf(kind, id);
    const known = this.known.get(key);
    if (known?.state === 'in-flight') return true;
    this.known.delete(key);
    return false;
  }

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
    const attempt = job.failures + 1;
    const { attempts } = this.opts.jobs;
    const run = runAttempt(processor, { spec: job.spec, attempt, attempts, signal: this.abort.signal }, this.opts.deadLetters, this.opts.log)
      .then(
        () => this.finish(job.spec),
        (err: unknown) => {
          job.failures = attempt;
          this.opts.log.warn({ err, kind, jobId: job.spec.id, tenantId: job.spec.tenantId, attempt, attempts }, 'job failed');
          if (attempt >= attempts) this.finish(job.spec);
          else this.retryLater(kind, job);
        },
      )
      .finally(() => {
        lane.running--;
        this.running.delete(run);
        this.pump(kind);
      });
    this.running.add(run);
  }

  private retryLater(kind: string, job: Pending): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      this.lane(kind).queue.push(job.spec.tenantId, job);
      this.pump(kind);
    }, backoffDelay(this.opts.jobs.backoffMs, job.failures));
    this.retryTimers.add(timer);
  }

  private finish(spec: JobSpec): void {
    const key = keyOf(spec.kind, spec.id);
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
