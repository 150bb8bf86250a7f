/**
 * FIFO per tenant, round-robin across tenants: a tenant with a thousand queued jobs waits its
 * turn behind a tenant with one, instead of ahead of it.
 */
export class FairQueue<T> {
  private readonly queues = new Map<string, T[]>();
  /** Tenants with something queued, in turn order; the head goes next. */
  private readonly turns: string[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(tenantId: string, item: T): void {
    const queue = this.queues.get(tenantId);
    if (queue) queue.push(item);
    else {
      this.queues.set(tenantId, [item]);
      this.turns.push(tenantId);
    }
    this.count++;
  }

  shift(): T | undefined {
    const tenantId = this.turns.shift();
    if (tenantId === undefined) return undefined;
    const queue = this.queues.get(tenantId) as T[];
    const item = queue.shift() as T;
    if (queue.length > 0) this.turns.push(tenantId);
    else this.queues.delete(tenantId);
    this.count--;
    return item;
  }
}
