import type { Core } from '../../src/core.js';
import {
  createExtractor,
  extractionToOps,
  snapshotGraph,
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
  // LLM extraction is charged to the job's tenant: one metered extractor per job.
  const extractorFor = (tenantId: string): Extractor =>
    deps.extractor ?? createExtractor(core.config.graph, core.meteredLlm?.forTenant(tenantId));

  /**
   * Every `snapshotEvery` graph batches of a tenant, the process that wrote the batch purges what
   * is past retention and writes a snapshot (a full one every tenth time, deltas between), so a
   * cold process loads a snapshot and a short log tail. Seqs are gap-free, so exactly one write
   * lands on each multiple. Maintenance failing must not fail the job: the next multiple retries.
   */
  async function maintain(tenantId: string, seq: number): Promise<void> {
    const every = core.config.graph.snapshotEvery;
    if (every === 0 || seq === 0 || seq % every !== 0) return;
    try {
      await graph.purgeExpired(tenantId);
      const kind = (seq / every) % 10 === 0 ? 'full' : 'delta';
      const manifest = await snapshotGraph(graph, core.snapshots, tenantId, kind);
      await core.snapshots.prune(tenantId);
      log.info({ tenantId, seq: manifest.seq, kind: manifest.kind }, 'graph snapshot written');
    } catch (err) {
      log.warn({ err, tenantId, seq }, 'graph maintenance failed; the next snapshot point retries');
    }
  }

  async function extract(job: JobContext): Promise<void> {
    const memory = memoryOf(job);
    const current = await core.memory.currentState(job.tenantId, memory.id);
    // Newer content has its own job, and a deleted memory its cascade: this event is history. A
    // tags- or metadata-only update bumps the version but gets no job, so compare the content.
    if (current === null || (current.version > memory.version && current.contentHash !== memory.contentHash)) return;
    const extraction = await extractorFor(job.tenantId).extract(memory.content, { signal: job.signal });
    const drafts = extractionToOps(extraction, { id: memory.id });
    if (job.event.type === 'memory.updated') {
      // Facts this memory stated before and no longer states end now; they are not deleted, so
      // "as of" queries still see what was believed then.
      const previous = await graph.memorySupport({ tenantId: job.tenantId }, memory.id);
      const superseded = supersededEdges(memory.id, previous.edges, drafts);
      drafts.push(...invalidateOps(superseded.invalidate, new Date().toISOString()));
      // Still stated elsewhere: only this memory's support goes, so deleting the others later
      // is not blocked by a link this memory no longer backs.
      drafts.push(...superseded.unlink.map((id) => ({ op: 'unlink' as const, memoryId: memory.id, element: 'edge' as const, id })));
    }
    if (drafts.length === 0) return;
    const written = await graph.write({ tenantId: job.tenantId, actor: JOBS_ACTOR }, drafts, {
      jobKey: `${job.kind}:${job.id}`,
      sourceMemory: { id: memory.id, layer: memory.layer, scopeId: memory.scopeId },
    });
    if (written.applied) await maintain(job.tenantId, written.seq);
    // The memory may have been deleted while we extracted, and its cascade may already have run:
    // cascade again so nothing it alone produced outlives it.
    if ((await core.memory.currentState(job.tenantId, memory.id)) === null) {
      log.info({ tenantId: job.tenantId, memoryId: memory.id }, 'memory deleted during extraction: cascading again');
      await graph.cascadeMemory(job.tenantId, memory.id);
    }
  }

  async function cascade(job: JobContext): Promise<void> {
    const id = (job.event.data as MemoryEventData | null)?.id;
    if (typeof id !== 'string') throw new AeternaError('INVALID_ARGUMENT', `memory.deleted event ${job.event.id} carries no id`);
    const written = await graph.cascadeMemory(job.tenantId, id, `${job.kind}:${job.id}`);
    if (written.applied) await maintain(job.tenantId, written.seq);
  }

  return { 'graph.extract': extract, 'graph.cascade': cascade };
}
