import type { Config } from '../../src/config.js';
import type { SummaryService } from '../../src/cca/index.js';
import { JOBS_ACTOR, type JobContext, type JobProcessor } from '../../src/jobs/index.js';
import type { Logger } from '../../src/obs/index.js';
import { AeternaError, memoryIdSchema } from '../../src/protocol/index.js';

export interface SummaryProcessorDeps {
  core: { readonly summaries: SummaryService; readonly config: Pick<Config, 'jobs'> };
  log: Logger;
}

/** The memory an added/updated event is about (the event's copy of its content is not used). */
function memoryIdOf(job: JobContext): string {
  const id = (job.event.data as { memory?: { id?: unknown } } | null)?.memory?.id;
  if (!memoryIdSchema.safeParse(id).success) {
    // A malformed event cannot get better by retrying; fail it so it is dead-lettered and visible.
    throw new AeternaError('INVALID_ARGUMENT', `${job.event.type} event ${job.event.id} carries no memory id`);
  }
  return id as string;
}

/**
 * `cca.summarize`: a memory's three summary levels for its current content, stored with a
 * summary.ready event. Idempotent (same content, same summariser: nothing written), and a job for
 * an older event summarises what the memory holds now. On its last attempt a failing LLM gives
 * way to the extractive summariser, so every memory ends up with summaries.
 */
export function summaryProcessors(deps: SummaryProcessorDeps): Record<string, JobProcessor> {
  const { core, log } = deps;
  async function summarize(job: JobContext): Promise<void> {
    const memoryId = memoryIdOf(job);
    const lastAttempt = job.attempt >= core.config.jobs.attempts;
    const outcome = await core.summaries.summarizeMemory(job.tenantId, memoryId, {
      actor: JOBS_ACTOR,
      signal: job.signal,
      fallbackToExtractive: lastAttempt,
    });
    if (outcome.summarizer !== undefined && outcome.summarizer !== core.summaries.summarizer.id) {
      log.warn({ tenantId: job.tenantId, memoryId, summarizer: outcome.summarizer }, 'summariser failed on the last attempt: stored extractive summaries');
    }
  }
  return { 'cca.summarize': summarize };
}
