import type { EventEnvelope } from '../protocol/index.js';
import type { Db, StreamHead } from '../store/index.js';
import { EventLog } from './log.js';
import type { LeaseStore } from './stores.js';

/** Where relayed events go: the gateway turns them into room broadcasts on every node. */
export interface EventSink {
  deliver(tenantId: string, events: readonly EventEnvelope[]): void;
}

export interface EventRelayOptions {
  db: Db;
  sink: EventSink;
  leases: LeaseStore;
  nodeId: string;
  /** Tenants hash into this many partitions; each is relayed by exactly one node at a time. */
  partitions: number;
  leaseTtlMs: number;
  /** How often leases are renewed and stream heads polled (the safety net under nudges). */
  tickMs: number;
  /** Events read per query while catching up. */
  batchSize: number;
  log: (level: 'info' | 'warn' | 'error', msg: string, err?: unknown) => void;
  /**
   * Hands each delivered page to the job queue. Awaited before the cursor moves: if it throws,
   * the next tick re-reads the same events (clients drop the repeated delivery by seq, and job
   * ids are event ids, so what was already enqueued is not enqueued twice).
   */
  dispatch?: (tenantId: string, events: readonly EventEnvelope[]) => Promise<void>;
}

/** FNV-1a: stable across processes and versions, which the partition map must be. */
export function partitionOf(tenantId: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < tenantId.length; i++) {
    h ^= tenantId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

/**
 * Reads committed events in seq order and hands them to the sink (ARCHITECTURE.md, data flow 2).
 * Each tenant partition is relayed by one lease holder, so no event is broadcast by two nodes; a
 * nudge after each commit keeps latency low and a periodic poll of stream heads catches anything
 * a lost nudge missed. The position is saved in the database after each drain: a new owner after
 * a crash or a hand-over re-sends at most what was in flight, which clients drop as duplicates by seq, and
 * skips nothing.
 */
export class EventRelay {
  private readonly owned = new Set<number>();
  private readonly cursors = new Map<string, number>();
  /** One drain at a time per tenant, so events leave in order; a nudge during a drain re-runs it. */
  private readonly draining = new Map<string, Promise<void>>();
  private readonly rerun = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly opts: EventRelayOptions) {}

  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => {
      if (!this.ticking) this.ticking = this.tick().finally(() => (this.ticking = undefined));
    }, this.opts.tickMs);
    this.timer.unref();
  }

  /** A commit happened for this tenant (here or, via Redis, on another node). */
  nudge(tenantId: string): void {
    if (this.stopped || !this.owned.has(partitionOf(tenantId, this.opts.partitions))) return;
    void this.drain(tenantId);
  }

  ownedPartitions(): number[] {
    return [...this.owned].sort((a, b) => a - b);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.ticking;
    await Promise.allSettled(this.draining.values());
    await Promise.allSettled([...this.owned].map((p) => this.opts.leases.release(this.leaseKey(p), this.opts.nodeId)));
    this.owned.clear();
  }

  private leaseKey(partition: number): string {
    return `relay:${partition}`;
  }

  private async tick(): Promise<void> {
    try {
      const acquired = await this.refreshLeases();
      if (this.owned.size === 0 && acquired.length === 0) return;
      const heads = await this.opts.db.streamHeads();
      if (acquired.length > 0) this.adopt(acquired, heads);
      for (const head of heads) {
        if (!this.owned.has(partitionOf(head.tenantId, this.opts.partitions))) continue;
        const cursor = this.cursors.get(head.tenantId);
        if (cursor === undefined || cursor < head.seq) void this.drain(head.tenantId);
      }
    } catch (err) {
      this.opts.log('warn', 'relay tick failed; retrying next tick', err);
    }
  }

  /**
   * Takes over partitions: each tenant resumes at the position the last owner saved. Only then
   * does the partition count as owned, so no nudge drains it from an unset cursor.
   */
  private adopt(partitions: number[], heads: StreamHead[]): void {
    const adopting = new Set(partitions);
    for (const head of heads) {
      if (adopting.has(partitionOf(head.tenantId, this.opts.partitions))) this.cursors.set(head.tenantId, head.relayedSeq);
    }
    for (const p of partitions) this.owned.add(p);
  }

  /** Renews what we hold and returns the partitions newly acquired (not yet adopted). */
  private async refreshLeases(): Promise<number[]> {
    const { leases, nodeId, leaseTtlMs, partitions } = this.opts;
    const acquired: number[] = [];
    for (let p = 0; p < partitions; p++) {
      const key = this.leaseKey(p);
      if (this.owned.has(p)) {
        if (!(await leases.renew(key, nodeId, leaseTtlMs))) {
          this.owned.delete(p);
          this.forgetPartition(p);
          this.opts.log('warn', `relay lost partition ${p}`);
        }
      } else if (await leases.acquire(key, nodeId, leaseTtlMs)) {
        acquired.push(p);
      }
    }
    return acquired;
  }

  /** Cursors of a partition we no longer own are stale by the time we might own it again. */
  private forgetPartition(partition: number): void {
    for (const tenantId of this.cursors.keys()) {
      if (partitionOf(tenantId, this.opts.partitions) === partition) this.cursors.delete(tenantId);
    }
  }

  private drain(tenantId: string): Promise<void> {
    const running = this.draining.get(tenantId);
    if (running) {
      this.rerun.add(tenantId);
      return running;
    }
    const run = this.drainOnce(tenantId)
      .catch((err: unknown) => this.opts.log('error', `relay failed for tenant ${tenantId}`, err))
      .finally(() => {
        this.draining.delete(tenantId);
        if (this.rerun.delete(tenantId) && !this.stopped) void this.drain(tenantId);
      });
    this.draining.set(tenantId, run);
    return run;
  }

  private async drainOnce(tenantId: string): Promise<void> {
    // Unknown here after adoption means the tenant's first events came after we took over.
    let cursor = this.cursors.get(tenantId) ?? 0;
    const start = cursor;
    try {
      for (;;) {
        if (this.stopped || !this.owned.has(partitionOf(tenantId, this.opts.partitions))) break;
        const from: number = cursor;
        const page: { events: EventEnvelope[] } = await this.opts.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, from, this.opts.batchSize));
        if (page.events.length === 0) break;
        this.opts.sink.deliver(tenantId, page.events);
        await this.opts.dispatch?.(tenantId, page.events);
        cursor = (page.events[page.events.length - 1] as EventEnvelope).seq;
        this.cursors.set(tenantId, cursor);
        if (page.events.length < this.opts.batchSize) break;
      }
    } finally {
      // Pages that went out before a failed one stay done, here and for the next owner.
      if (cursor > start) {
        const done = cursor;
        await this.opts.db.withTenant(tenantId, (sql) => EventLog.markRelayed(sql, tenantId, done));
      }
    }
  }
}
