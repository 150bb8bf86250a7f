import type { Logger } from '../obs/index.js';
import type { DeadLetterSink, JobProcessor, JobSpec } from './types.js';

export interface Attempt {
  spec: JobSpec;
  /** 1-based number of this try. */
  attempt: number;
  /** Tries allowed in all: after a failure of the last one the job is dead. */
  attempts: number;
  signal: AbortSignal;
}

/**
 * One try of a job, the same in both queues. The dead letter is written here, before the error
 * goes back to the queue: a crash after the row commits leaves a job the queue still sees as
 * running, which stalls and runs again (the store ignores a repeated failure), whereas writing it
 * after the queue marked the job failed would lose it to a crash in between.
 */
export async function runAttempt(processor: JobProcessor, a: Attempt, deadLetters: DeadLetterSink, log: Logger): Promise<void> {
  const { spec } = a;
  try {
    await processor({ kind: spec.kind, id: spec.id, tenantId: spec.tenantId, attempt: a.attempt, event: spec.event, signal: a.signal });
  } catch (err) {
    if (a.attempt >= a.attempts) await recordDead(deadLetters, spec, err, a.attempt, log);
    throw err;
  }
}

/** Never throws: a dead letter that cannot be written is logged, and the queue keeps the failed job. */
export async function recordDead(deadLetters: DeadLetterSink, spec: JobSpec, error: unknown, attempts: number, log: Logger): Promise<void> {
  try {
    await deadLetters.record(spec, error, attempts);
  } catch (err) {
    log.error({ err, kind: spec.kind, jobId: spec.id, tenantId: spec.tenantId }, 'could not record a dead job');
  }
}

/** Exponential backoff, as BullMQ's built-in 'exponential' strategy computes it. */
export function backoffDelay(backoffMs: number, failedAttempts: number): number {
  return backoffMs * 2 ** Math.max(0, failedAttempts - 1);
}
