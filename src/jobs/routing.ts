import { EVENT_TYPES, type EventEnvelope } from '../protocol/index.js';
import type { JobQueue, JobSpec } from './types.js';

/** Which job kinds each committed event type asks for. */
export const JOB_ROUTES: Record<string, readonly string[]> = {
  [EVENT_TYPES.memoryAdded]: ['graph.extract', 'cca.summarize'],
  [EVENT_TYPES.memoryUpdated]: ['graph.extract', 'cca.summarize'],
  [EVENT_TYPES.memoryDeleted]: ['graph.cascade'],
  // Once per session segment: the event is appended by the guarded update that ends it.
  [EVENT_TYPES.sessionEnded]: ['cca.distill'],
  // Appended once per run, with the row that holds its state.
  [EVENT_TYPES.metaStarted]: ['cca.meta'],
};

/** A metadata- or tags-only update leaves the text, and so what extraction would find, as it was. */
function changesContent(event: EventEnvelope): boolean {
  const changed = (event.data as { changed?: unknown } | null)?.changed;
  return Array.isArray(changed) && changed.includes('content');
}

export function jobsForEvents(tenantId: string, events: readonly EventEnvelope[]): JobSpec[] {
  const jobs: JobSpec[] = [];
  for (const event of events) {
    if (event.type === EVENT_TYPES.memoryUpdated && !changesContent(event)) continue;
    for (const kind of JOB_ROUTES[event.type] ?? []) {
      jobs.push({ kind, id: event.id, tenantId, event: { id: event.id, seq: event.seq, type: event.type, data: event.data } });
    }
  }
  return jobs;
}

/** The relay's `dispatch` hook: the jobs a page of committed events implies, into the queue. */
export function jobDispatcher(queue: JobQueue): (tenantId: string, events: readonly EventEnvelope[]) => Promise<void> {
  return async (tenantId, events) => {
    const jobs = jobsForEvents(tenantId, events);
    if (jobs.length > 0) await queue.enqueue(jobs);
  };
}
