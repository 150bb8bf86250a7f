import type { Core } from '../../src/core.js';
import { META_JOB, createMetaAgent } from '../../src/cca/index.js';
import type { JobProcessor } from '../../src/jobs/index.js';
import type { Logger } from '../../src/obs/index.js';

/**
 * `cca.meta`: a `meta.started` event's run, driven to its end. The run's state is in the
 * database, so a re-run (stall, crash, shutdown) resumes it, and a run that already ended is left
 * as it is.
 */
export function metaProcessors(deps: { core: Core; log: Logger }): Record<string, JobProcessor> {
  const agent = createMetaAgent(deps.core, { log: deps.log });
  return {
    [META_JOB]: async (job) => {
      const { runId } = job.event.data as { runId: string };
      try {
        const run = await agent.run(job.tenantId, runId, job.signal);
        deps.log.info({ tenantId: job.tenantId, runId, status: run.status, reason: run.stopReason, iterations: run.iterationsDone }, 'meta run ended');
      } catch (err) {
        // The last try: the job goes to the dead letters, and the run must not stay `running`.
        if (job.attempt >= deps.core.config.jobs.attempts && !job.signal.aborted) {
          await agent.abandon(job.tenantId, runId).catch((abandonErr: unknown) => deps.log.warn({ err: abandonErr, runId }, 'could not end an abandoned meta run'));
        }
        throw err;
      }
    },
  };
}
