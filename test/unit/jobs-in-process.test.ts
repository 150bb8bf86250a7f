import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { JobsConfig } from '../../src/config.js';
import { InProcessJobQueue, backoffDelay, createJobQueue, type DeadLetterSink, type JobContext, type JobSpec } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';

const JOBS: JobsConfig = { attempts: 3, backoffMs: 100, concurrency: 1, stalledMs: 30_000, retainSec: 3600 };

function spec(tenantId: string, id: string = randomUUID(), kind = 'test.kind'): JobSpec {
  return { kind, id, tenantId, event: { id, seq: 1, type: 'memory.added', data: {} } };
}

function recordingSink(): DeadLetterSink & { dead: { job: JobSpec; error: string; attempts: number }[] } {
  const dead: { job: JobSpec; error: string; attempts: number }[] = [];
  return {
    dead,
    async record(job, error, attempts) {
      dead.push({ job, error: (error as Error).message, attempts });
    },
  };
}

function queue(jobs: Partial<JobsConfig> = {}, deadLetters: DeadLetterSink = recordingSink(), closeGraceMs = 5000): InProcessJobQueue {
  return new InProcessJobQueue({ jobs: { ...JOBS, ...jobs }, deadLetters, log: createLogger('silent'), closeGraceMs });
}

/** A promise with its resolver, for processors a test releases by hand. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('backoffDelay', () => {
  it('doubles from backoffMs on each further failure', () => {
    expect([1, 2, 3, 4].map((n) => backoffDelay(100, n))).toEqual([100, 200, 400, 800]);
  });
});

describe('createJobQueue', () => {
  it('runs jobs in process when no Redis is configured (embedded mode)', async () => {
    const q = createJobQueue({ jobs: JOBS }, { deadLetters: recordingSink(), log: createLogger('silent') });
    expect(q.name).toBe('in-process');
    await q.close();
  });
});

describe('InProcessJobQueue', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs a job once however often its id is enqueued', async () => {
    const q = queue();
    const ran: string[] = [];
    await q.work({ 'test.kind': async (job) => void ran.push(job.id) });
    const job = spec('acme');
    await q.enqueue([job, job]);
    await q.enqueue([job]);
    await settle();
    await q.enqueue([job]); // after it finished, still within the retention window
    await settle();
    expect(ran).toEqual([job.id]);
    // The same id under another kind is another job.
    await q.work({ 'other.kind': async (j) => void ran.push(`other:${j.id}`) });
    await q.enqueue([{ ...job, kind: 'other.kind' }]);
    await settle();
    expect(ran).toEqual([job.id, `other:${job.id}`]);
    await q.close();
  });

  it('retries with exponential backoff, then dead-letters after the last attempt', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const sink = recordingSink();
    const q = queue({}, sink);
    const attempts: number[] = [];
    await q.work({
      'test.kind': async (job: JobContext) => {
        attempts.push(job.attempt);
        throw new Error(`boom ${job.attempt}`);
      },
    });
    const job = spec('acme');
    await q.enqueue([job]);
    await vi.advanceTimersByTimeAsync(0);
    expect(attempts).toEqual([1]);
    await vi.advanceTimersByTimeAsync(99);
    expect(attempts).toEqual([1]); // not before backoffMs
    await vi.advanceTimersByTimeAsync(1);
    expect(attempts).toEqual([1, 2]);
    await vi.advanceTimersByTimeAsync(199);
    expect(attempts).toEqual([1, 2]); // the second wait is twice as long
    expect(sink.dead).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(attempts).toEqual([1, 2, 3]);
    expect(sink.dead).toEqual([{ job, error: 'boom 3', attempts: 3 }]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(attempts).toEqual([1, 2, 3]); // dead means no further attempt
    await q.close();
  });

  it('does not dead-letter a job that succeeds on a later attempt', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const sink = recordingSink();
    const q = queue({}, sink);
    let calls = 0;
    await q.work({
      'test.kind': async () => {
        if (++calls < 3) throw new Error('transient');
      },
    });
    await q.enqueue([spec('acme')]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toBe(3);
    expect(sink.dead).toEqual([]);
    await q.close();
  });

  it("keeps one tenant's flood from starving another tenant", async () => {
    const q = queue({ concurrency: 1 });
    const order: string[] = [];
    const all = deferred();
    await q.enqueue(Array.from({ length: 200 }, () => spec('flood')));
    await q.enqueue(Array.from({ length: 5 }, () => spec('quiet')));
    await q.work({
      'test.kind': async (job) => {
        order.push(job.tenantId);
        if (order.length === 205) all.resolve();
      },
    });
    await all.promise;
    // First-in-first-out would put the quiet tenant's jobs at 201..205.
    expect(order.lastIndexOf('quiet')).toBeLessThan(12);
    expect(order.filter((t) => t === 'quiet')).toHaveLength(5);
    await q.close();
  });

  it('runs at most `concurrency` jobs of a kind at once', async () => {
    const q = queue({ concurrency: 2 });
    let running = 0;
    let peak = 0;
    const gate = deferred();
    let done = 0;
    const all = deferred();
    await q.work({
      'test.kind': async () => {
        running++;
        peak = Math.max(peak, running);
        await gate.promise;
        running--;
        if (++done === 6) all.resolve();
      },
    });
    await q.enqueue(Array.from({ length: 6 }, (_, i) => spec(`t${i % 3}`)));
    await settle();
    expect(running).toBe(2);
    gate.resolve();
    await all.promise;
    expect(peak).toBe(2);
    await q.close();
  });

  it('close() waits for running jobs, then refuses new ones', async () => {
    const q = queue();
    const gate = deferred();
    let finished = false;
    await q.work({
      'test.kind': async () => {
        await gate.promise;
        finished = true;
      },
    });
    await q.enqueue([spec('acme'), spec('acme')]);
    await settle();
    let closed = false;
    const closing = q.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false);
    gate.resolve();
    await closing;
    expect(finished).toBe(true);
    await expect(q.enqueue([spec('acme')])).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(q.work({ 'test.kind': async () => {} })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('close() aborts a job that outlives the grace period', async () => {
    const q = queue({}, recordingSink(), 50);
    let aborted = false;
    await q.work({
      'test.kind': (job) =>
        new Promise<void>((resolve) =>
          job.signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          }),
        ),
    });
    await q.enqueue([spec('acme')]);
    await settle();
    await q.close();
    expect(aborted).toBe(true);
  });

  it('retry() answers true while a job is in flight, and forgets a dead one so it can be enqueued again', async () => {
    const sink = recordingSink();
    const q = queue({ attempts: 1 }, sink);
    let fail = true;
    const ran: number[] = [];
    const gate = deferred();
    await q.work({
      'test.kind': async (job) => {
        ran.push(job.attempt);
        await gate.promise;
        if (fail) throw new Error('nope');
      },
    });
    const job = spec('acme');
    await q.enqueue([job]);
    await settle();
    expect(await q.retry(job.kind, job.id)).toBe(true);
    gate.resolve();
    await settle();
    expect(sink.dead).toHaveLength(1);
    expect(await q.retry(job.kind, 'never-seen')).toBe(false);
    expect(await q.retry(job.kind, job.id)).toBe(false);
    fail = false;
    await q.enqueue([job]);
    await settle();
    expect(ran).toEqual([1, 1]);
    expect(sink.dead).toHaveLength(1);
    await q.close();
  });
});
