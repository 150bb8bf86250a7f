import { describe, expect, it } from 'vitest';
import { JOB_KIND_PATTERN, JOB_ROUTES, jobsForEvents } from '../../src/jobs/index.js';
import type { EventEnvelope } from '../../src/protocol/index.js';

function event(seq: number, type: string, data: unknown): EventEnvelope {
  return { seq, id: `0190a000-0000-7000-8000-00000000000${seq}`, tenantId: 'acme', type, at: new Date(0).toISOString(), actor: { userId: 'u' }, data, traceId: null };
}

describe('jobsForEvents', () => {
  it('turns committed events into jobs whose id is the event id', () => {
    const events = [
      event(1, 'memory.added', { memory: { id: 'm1' } }),
      event(2, 'memory.updated', { memory: { id: 'm1' }, changed: ['tags'] }),
      event(3, 'memory.updated', { memory: { id: 'm1' }, changed: ['content', 'tags'] }),
      event(4, 'memory.deleted', { id: 'm1' }),
      event(5, 'memory.feedback', { memoryId: 'm1' }),
    ];
    const jobs = jobsForEvents('acme', events);
    expect(jobs.map((j) => [j.kind, j.event.seq])).toEqual([
      ['graph.extract', 1],
      ['cca.summarize', 1],
      ['graph.extract', 3],
      ['cca.summarize', 3],
      ['graph.cascade', 4],
    ]);
    for (const job of jobs) {
      expect(job.id).toBe(job.event.id);
      expect(job.tenantId).toBe('acme');
      expect(job.event.data).toEqual(events[job.event.seq - 1]?.data);
    }
  });

  it('skips an update whose data does not say what changed', () => {
    expect(jobsForEvents('acme', [event(1, 'memory.updated', null), event(2, 'memory.updated', { changed: 'content' })])).toEqual([]);
  });

  it('routes only to kinds that are valid queue names', () => {
    for (const kind of Object.values(JOB_ROUTES).flat()) expect(kind).toMatch(JOB_KIND_PATTERN);
    expect('graph:extract').not.toMatch(JOB_KIND_PATTERN);
  });
});
