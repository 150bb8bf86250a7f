import type { Core } from '../../src/core.js';
import { DISTILL_JOB, createNoteDistiller, type Llm } from '../../src/cca/index.js';
import type { JobProcessor } from '../../src/jobs/index.js';
import type { Logger } from '../../src/obs/index.js';

export interface NotesProcessorDeps {
  core: Core;
  log: Logger;
  /** Defaults to the configured model (none: the offline, extractive distiller). */
  llm?: Llm | undefined;
}

/**
 * `cca.distill`: a `session.ended` event becomes the session segment's note. The relay enqueues it
 * with the event's id, and `session.ended` is appended once per segment; the distiller itself is
 * idempotent per segment too, so a re-run (stall, crash, admin retry) writes no second note.
 */
export function notesProcessors(deps: NotesProcessorDeps): Record<string, JobProcessor> {
  const { core, log } = deps;
  const { db, memory, embeddings, commits, config } = core;
  const distiller = createNoteDistiller({ db, memory, embeddings, commits, config, llm: 'llm' in deps ? deps.llm : core.llm });
  return {
    [DISTILL_JOB]: async (job) => {
      const outcome = await distiller.distill(job.tenantId, job.event.data, job.signal);
      log.debug({ tenantId: job.tenantId, event: job.event.id, outcome }, 'session distilled');
    },
  };
}
