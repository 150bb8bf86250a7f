import type { Core } from '../../src/core.js';
import {
  createExtractor,
  extractionToOps,
  invalidateOps,
  supersededEdges,
  type Extractor,
  type GraphStore,
} from '../../src/graph/index.js';
import { JOBS_ACTOR, type JobContext, type JobProcessor } from '../../src/jobs/index.js';
import type { Logger } from '../../src/obs/index.js';
import { AeternaError, type Memory } from '../../src/protocol/index.js';

export interface GraphProcessorDeps {
  core: Core;
  log: Logger;
  /** Defaults to the configured one (rules offline, the LLM when AETERNA_LLM_URL is set). */
  extractor?: Extractor;
}

interface MemoryEventData {
  memory?: Memory;
  id?: string;
}

function memoryOf(job: JobContext): Memory {
  const memory = (job.event.data as MemoryEventData | null)?.memory;
  if (!memory || typeof memory.id !== 'string' || typeof memory.content !== 'string') {
    // A malformed event cannot get better by retrying; fail it so it is dead-lettered and visible.
    throw new AeternaError('INVALID_ARGUMENT', `${job.event.type} event ${job.event.id} carries no memory`);
  }
  return memory;
}

/**
 * Turns memory events into graph writes. Every write carries the event's id as its job key, so a
 * job that runs twice (a stalled worker, an admin retry) writes once.
 */
export function graphProcessors(deps: GraphProcessorDeps): Record<string, JobProcessor> {
  const { core, log } = deps;
  const graph: GraphStore = core.graph;
  const extractor = deps.extractor ?? createExtractor(core.config.graph, core.llm);

  async function extract(job: JobContext): Promise<void> {
    const memory = memoryOf(job);
    const current = await core.memory.currentVersion(job.tenantId, memory.id);
    // A newer version has its own job, and a deleted memory its cascade: this event is history.
    if (current === null || current > memory.version) return;
    const extraction = await extractor.extract(memory.content, { signal: job.signal });
    const drafts = extractionToOps(extraction, { id: memory.id });
    if (job.event.type === 'memory.updated') {
      // Facts this memory stated before and no longer states end now; they are not deleted, so
      // "as of" queries still see what was believed then.
      const previous = await graph.memorySupport({ tenantId: job.tenantId }, memory.id);
      const superseded = supersededEdges(memory.id, previous.edges, drafts);
      drafts.push(...invalidateOps(superseded.invalidate, new Date().toISOString()));
    }
    if (drafts.length === 0) return;
    await graph.write({ tenantId: job.tenantId, actor: JOBS_ACTOR }, drafts, {
      jobKey: `${job.kind}:${job.id}`,
      sourceMemory: { id: memory.id, layer: memory.layer, scopeId: memory.scopeId },
    });
    // The memory may have been deleted while we extracted, and its cascade may already have run:
    // cascade again so nothing it alone produced outlives it.
    if ((await core.memory.currentVersion(job.tenantId, memory.id)) === null) {
      log.info({ tenantId: job.tenantId, memoryId: memory.id }, 'memory deleted during extraction: cascading again');
      await graph.cascadeMemory(job.tenantId, memory.id);
    }
  }

  async function cascade(job: JobContext): Promise<void> {
    const id = (job.event.data as MemoryEventData | null)?.id;
    if (typeof id !== 'string') throw new AeternaError('INVALID_ARGUMENT', `memory.deleted event ${job.event.id} carries no id`);
    await graph.cascadeMemory(job.tenantId, id, `${job.kind}:${job.id}`);
  }

  return { 'graph.extract': extract, 'graph.cascade': cascade };
}
