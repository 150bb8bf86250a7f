import type { JobProcessor, JobQueue, JobSpec } from '../../src/jobs/index.js';
import type { TieringService } from '../../src/memory/index.js';
import type { Logger } from '../../src/obs/index.js';
import type { Db } from '../../src/store/index.js';

/** One tiering run over one tenant (src/memory/tiering.ts). */
export const TIER_JOB_KIND = 'memory.tier';
/** The `event.type` of sweep jobs: they come from the clock, not from the event log. */
export const TIER_SWEEP_EVENT = 'tiering.sweep';

export interface TieringProcessorDeps {
  tiering: TieringService;
  log: Logger;
}

/**
 * `memory.tier`: tiers the job's tenant. Idempotent by construction: a run classifies what the
 * table holds now, so running twice only finds nothing left to move.
 */
export function tieringProcessors(deps: TieringProcessorDeps): Record<string, JobProcessor> {
  return {
    [TIER_JOB_KIND]: async (job) => {
      const report = await deps.tiering.run(job.tenantId);
      if (report.failures.length > 0) {
        deps.log.warn({ tenantId: job.tenantId, failures: report.failures }, 'tiering run left stubs it could not restore');
      }
    },
  };
}

export interface TieringSweepOptions {
  /** Lists the tenants (every tenant with an event stream). */
  db: Pick<Db, 'streamHeads'>;
  queue: Pick<JobQueue, 'enqueue'>;
  /** config.tiering.intervalMs; 0 starts nothing. */
  intervalMs: number;
  log: Logger;
}

export interface TieringSweep {
  /** Enqueues this interval's job for every tenant; returns how many were asked for. */
  tick(now?: number): Promise<number>;
  stop(): void;
}

/**
 * The clock behind tiering: at start and then every `intervalMs`, one `memory.tier` job per
 * tenant. The job id names the interval (`sweep-{n}-{tenant}`, n = now / intervalMs), and queues
 * keep one job per id, so every gateway and worker can run a sweep and each tenant is still
 * tiered once per interval.
 */
export function startTieringSweep(opts: TieringSweepOptions): TieringSweep {
  const tick = async (now = Date.now()): Promise<number> => {
    if (opts.intervalMs <= 0) return 0;
    const interval = Math.floor(now / opts.intervalMs);
    const jobs: JobSpec[] = (await opts.db.streamHeads()).map(({ tenantId }) => {
      const id = `sweep-${interval}-${tenantId}`;
      return { kind: TIER_JOB_KIND, id, tenantId, event: { id, seq: 0, type: TIER_SWEEP_EVENT, data: { interval } } };
    });
    if (jobs.length > 0) await opts.queue.enqueue(jobs);
    return jobs.length;
  };
  const safeTick = () => {
    tick().catch((err: unknown) => opts.log.warn({ err }, 'tiering sweep could not enqueue; the next tick retries'));
  };
  if (opts.intervalMs <= 0) return { tick, stop: () => undefined };
  const first = setTimeout(safeTick, 0);
  const timer = setInterval(safeTick, opts.intervalMs);
  first.unref();
  timer.unref();
  return {
    tick,
    stop() {
      clearTimeout(first);
      clearInterval(timer);
    },
  };
}
