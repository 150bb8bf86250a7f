import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventRelay, LocalLeaseStore, type EventSink } from '../../src/events/index.js';
import { InProcessJobQueue, jobDispatcher } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import type { EventEnvelope } from '../../src/protocol/index.js';
import { backends, openTestCore, tenantCtx, type TestCore } from '../support/backends.js';
import { until } from '../support/gateway.js';

describe.each(backends())('the relay enqueues jobs on %s', (backend) => {
  let t: TestCore;
  beforeAll(async () => {
    t = await openTestCore(backend);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('retries a failed dispatch from the same events, without moving its position, and runs each job once', async () => {
    const tenant = 'relay-jobs';
    const queue = new InProcessJobQueue({
      jobs: { attempts: 1, backoffMs: 10, concurrency: 2, stalledMs: 30_000, retainSec: 3600 },
      deadLetters: { record: async () => {} },
      log: createLogger('silent'),
      closeGraceMs: 1000,
    });
    const runs: string[] = [];
    await queue.work({ 'graph.extract': async (job) => void runs.push(job.id) });
    const enqueue = jobDispatcher(queue);
    const delivered: number[] = [];
    const sink: EventSink = { deliver: (_tenant, events: readonly EventEnvelope[]) => void delivered.push(...events.map((e) => e.seq)) };
    let calls = 0;
    const relayedAfterFailures: number[] = [];
    const relay = new EventRelay({
      db: t.core.db,
      sink,
      leases: new LocalLeaseStore(),
      nodeId: 'jobs-node',
      partitions: 1,
      leaseTtlMs: 1000,
      tickMs: 50,
      batchSize: 100,
      log: () => {},
      dispatch: async (tenantId, events) => {
        calls++;
        if (calls === 1) throw new Error('queue unreachable'); // before anything was enqueued
        await enqueue(tenantId, events);
        if (calls === 2) {
          // Enqueued, then failed: the retry must not run these jobs twice.
          const head = (await t.core.db.streamHeads()).find((h) => h.tenantId === tenantId);
          relayedAfterFailures.push(head?.relayedSeq ?? 0);
          throw new Error('lost the answer');
        }
      },
    });
    for (let i = 0; i < 3; i++) {
      await t.core.memory.add(tenantCtx(tenant), { layer: 'org', orgId: 'o', content: `job routing ${i} ${i * 31}` });
    }
    await relay.start();
    await until(() => calls >= 3, 'a dispatch that succeeds');
    await until(() => runs.length === 3, 'three jobs');
    await relay.stop();
    await queue.close();

    expect(relayedAfterFailures).toEqual([0]); // the position did not move past undispatched events
    expect(delivered).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3]); // clients drop the repeats by seq
    const head = (await t.core.db.streamHeads()).find((h) => h.tenantId === tenant);
    expect(head?.relayedSeq).toBe(3);
    const log = await t.core.memory.events(tenantCtx(tenant), {});
    expect(runs.sort()).toEqual(log.events.map((e) => e.id).sort());
  });
});
