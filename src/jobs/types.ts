import type { Actor } from '../protocol/index.js';
import type { Sql } from '../store/index.js';

/** What a committed event asks workers to do. `id` is the event id: re-enqueueing it is a no-op. */
export interface JobSpec {
  kind: string;
  id: string;
  tenantId: string;
  event: { id: string; seq: number; type: string; data: unknown };
}

export interface JobContext {
  kind: string;
  id: string;
  tenantId: string;
  /** 1-based; the first run after an admin retry is 1 again. */
  attempt: number;
  event: JobSpec['event'];
  /** Aborted when the process shuts down and its grace period is over: stop and let the job re-run. */
  signal: AbortSignal;
}

/** Must be idempotent: a job can run again after a crash, a stall or an admin retry. */
export type JobProcessor = (job: JobContext) => Promise<void>;

export interface EnqueueOptions {
  /**
   * The caller's open transaction of the jobs' tenant. A queue that keeps its jobs in the database
   * (in-process) stores them in it, so they commit or roll back with the caller's writes, and
   * PGlite, which runs one transaction at a time, is not asked for a second one meanwhile. The
   * jobs may start before the caller commits. BullMQ keeps its jobs in Redis and ignores it.
   */
  sql?: Sql;
}

export interface JobQueue {
  readonly name: 'bullmq' | 'in-process';
  /** Idempotent per (kind, id) for `jobs.retainSec` after the job finished. */
  enqueue(jobs: readonly JobSpec[], opts?: EnqueueOptions): Promise<void>;
  /** Starts consuming these kinds in this process. */
  work(processors: Readonly<Record<string, JobProcessor>>): Promise<void>;
  /** Re-runs a dead-lettered job the queue still holds; false when it holds no such job. */
  retry(kind: string, id: string): Promise<boolean>;
  /** Stops taking jobs and lets running ones finish, for at most the queue's grace period. */
  close(): Promise<void>;
}

/** Where a job goes once it has failed its last attempt. */
export interface DeadLetterSink {
  /** Idempotent while the job stays dead: a second call for the same failure writes nothing. */
  record(job: JobSpec, error: unknown, attempts: number): Promise<void>;
}

/**
 * Job kinds name BullMQ queues and Redis keys: lower-case dotted words (`graph.extract`), never a
 * colon, which BullMQ reserves as its key separator.
 */
export const JOB_KIND_PATTERN = /^[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,31}){0,3}$/;

/** Recorded as the actor of events that workers write on nobody's behalf. */
export const JOBS_ACTOR: Actor = { userId: 'system', agentId: 'jobs' };
