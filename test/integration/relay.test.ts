import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventRelay, LocalLeaseStore, partitionOf, type EventSink } from '../../src/events/index.js';
import type { EventEnvelope } from '../../src/protocol/index.js';
import { backends, openTestCore, tenantCtx, type TestCore } from '../support/backends.js';
import { until } from '../support/gateway.js';

function recordingSink(): EventSink & { seen: Map<string, number[]> } {
  const seen = new Map<string, number[]>();
  return {
    seen,
    deliver(tenantId: string, events: readonly EventEnvelope[]) {
      seen.set(tenantId, [...(seen.get(tenantId) ?? []), ...events.map((e) => e.seq)]);
    },
  };
}

describe('partitionOf', () => {
  it('is stable and spreads tenants over the partitions', () => {
    expect(partitionOf('acme', 16)).toBe(partitionOf('acme', 16));
    const used = new Set(Array.from({ length: 200 }, (_, i) => partitionOf(`tenant-${i}`, 16)));
    expect(used.size).toBe(16);
  });
});

describe.each(backends())('EventRelay on %s', (backend) => {
  let t: TestCore;
  beforeAll(async () => {
    t = await openTestCore(backend);
  });
  afterAll(async () => {
    await t?.close();
  });

  const relay = (sink: EventSink, leases: LocalLeaseStore, nodeId: string) =>
    new EventRelay({ db: t.core.db, sink, leases, nodeId, partitions: 4, leaseTtlMs: 1000, tickMs: 50, batchSize: 3, log: () => {} });
  const add = (tenantId: string, i: number) => t.core.memory.add(tenantCtx(tenantId), { layer: 'org', orgId: 'o', content: `relay event ${i} ${i * 17}` });

  it('delivers every committed event once, in order, with one relay per partition', async () => {
    const leases = new LocalLeaseStore();
    const sinks = [recordingSink(), recordingSink()];
    const relays = sinks.map((sink, i) => relay(sink, leases, `node-${i}`));
    for (const r of relays) await r.start();
    expect([...relays[0]!.ownedPartitions(), ...relays[1]!.ownedPartitions()].sort()).toEqual([0, 1, 2, 3]);
    const tenants = ['r-a', 'r-b', 'r-c'];
    for (let i = 0; i < 10; i++) for (const tenant of tenants) await add(tenant, i);
    // No nudges here: the poll alone must find them (batches of 3 exercise the paging).
    await until(() => tenants.every((tn) => sinks.reduce((n, s) => n + (s.seen.get(tn)?.length ?? 0), 0) === 10), 'all events');
    for (const tenant of tenants) {
      const delivered = sinks.flatMap((s) => s.seen.get(tenant) ?? []);
      expect(delivered).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }
    for (const r of relays) await r.stop();
  });

  it('hands a partition over without losing or repeating what the first owner delivered', async () => {
    const leases = new LocalLeaseStore();
    const first = recordingSink();
    const a = relay(first, leases, 'first');
    await a.start();
    for (let i = 0; i < 4; i++) await add('handover', i);
    a.nudge('handover');
    await until(() => first.seen.get('handover')?.length === 4, 'the first owner to deliver');
    await a.stop(); // releases its leases; its position is in the database
    for (let i = 4; i < 7; i++) await add('handover', i); // committed while nobody relays
    const second = recordingSink();
    const b = relay(second, leases, 'second');
    await b.start();
    await until(() => second.seen.get('handover')?.length === 3, 'the new owner to deliver the rest');
    expect(first.seen.get('handover')).toEqual([1, 2, 3, 4]);
    expect(second.seen.get('handover')).toEqual([5, 6, 7]);
    await b.stop();
  });
});
