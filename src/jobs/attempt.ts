import { budgetRetryAt, type Logger } from '../obs/index.js';
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
 * What a try that was refused by its tenant's token budget under the `queue` action throws to its
 * queue: the job waits until `retryAt` (the budget's reset) and runs again. It is not a failure:
 * the try is not counted, no backoff grows and the job is never dead-lettered for it.
 */
export class BudgetDeferral extends Error {
  override readonly name = 'BudgetDeferral';

  constructor(
    readonly retryAt: Date,
    cause: unknown,
  ) {
    super(`the tenant's token budget is spent; the job waits until ${retryAt.toISOString()}`, { cause });
  }
}

/** Processors may wrap the budget's error in their own; its reset time is found down the causes. */
const MAX_CAUSE_DEPTH = 8;

/** The reset a budget refusal (`queue` action) names, in `err` or one of its causes. */
export function budgetDeferralOf(err: unknown): Date | undefined {
  let current = err;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current !== undefined; depth++) {
    const retryAt = budgetRetryAt(current);
    if (retryAt) return retryAt;
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

/** How long a deferred job still waits by `now`: nothing once the reset is past. */
export function deferralDelay(retryAt: Date, now: Date): number {
  return Math.max(0, retryAt.getTime() - now.getTime());
}

/** The one line each deferral logs, the same in both queues. */
export function logDeferral(log: Logger, spec: JobSpec, retryAt: Date, attempt: number): void {
  log.info({ tenantId: spec.tenantId, kind: spec.kind, jobId: spec.id, retryAt: retryAt.toISOString(), attempt }, 'token budget spent: job waits for the reset');
}

/**
 * One try of a job, the same in both queues. The dead letter is written here, before the error
 * goes back to the queue: a crash after the row commits leaves a job the queue still sees as
 * running, which stalls and runs again (the store ignores a repeated failure), whereas writing it
 * after the queue marked the job failed would lose it to a crash in between. A budget refusal
 * under `queue` comes back as a BudgetDeferral, on any try, and is never dead-lettered here.
 */
export async function runAttempt(processor: JobProcessor, a: Attempt, deadLetters: DeadLetterSink, log: Logger): Promise<void> {
  const { spec } = a;
  try {
    await processor({ kind: spec.kind, id: spec.id, tenantId: spec.tenantId, attempt: a.attempt, event: spec.event, signal: a.signal });
  } catch (err) {
    const retryAt = budgetDeferralOf(err);
    if (retryAt) throw new BudgetDeferral(retryAt, err);
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
