import type { Core } from '../../src/core.js';
import type { JobProcessor } from '../../src/jobs/index.js';
import type { Logger } from '../../src/obs/index.js';
import { graphProcessors } from './graph.js';
import { metaProcessors } from './meta.js';
import { notesProcessors } from './notes.js';
import { summaryProcessors } from './summaries.js';
import { tieringProcessors } from './tiering.js';

/** What processors are built from; one process's worth, shared by every kind. */
export interface ProcessorDeps {
  core: Core;
  log: Logger;
}

/** Every job kind this build can run, by kind. A kind without a processor waits in its queue. */
export function createProcessors(deps: ProcessorDeps): Record<string, JobProcessor> {
  return { ...graphProcessors(deps), ...notesProcessors(deps), ...metaProcessors(deps), ...summaryProcessors(deps), ...tieringProcessors({ tiering: deps.core.tiering, log: deps.log }) };
}
