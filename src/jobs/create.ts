import type { Config } from '../config.js';
import type { Logger } from '../obs/index.js';
import type { Db } from '../store/index.js';
import { BullMqJobQueue } from './bullmq.js';
import { InProcessJobQueue } from './in-process.js';
import type { DeadLetterSink, JobQueue } from './types.js';

export interface JobQueueDeps {
  deadLetters: DeadLetterSink;
  log: Logger;
  /** How long close() lets running jobs finish before aborting them (default 10 s). */
  closeGraceMs?: number;
  /**
   * Where the in-process queue keeps its jobs until they finish, so a crash loses none (BullMQ
   * keeps its own in Redis). Without it, embedded mode's jobs live in memory only.
   */
  db?: Db;
}

/** BullMQ when Redis is configured (cluster mode), else the in-process queue (embedded mode). */
export function createJobQueue(config: Pick<Config, 'redisUrl' | 'jobs'>, deps: JobQueueDeps): JobQueue {
  const common = { jobs: config.jobs, deadLetters: deps.deadLetters, log: deps.log, closeGraceMs: deps.closeGraceMs ?? 10_000 };
  if (config.redisUrl) return new BullMqJobQueue({ ...common, redisUrl: config.redisUrl });
  return new InProcessJobQueue({ ...common, db: deps.db });
}
