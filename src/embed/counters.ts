import type { EmbedCacheCounts } from '../protocol/index.js';
import type { CacheCounters } from './types.js';

export function zeroCounts(): EmbedCacheCounts {
  return { exact: { hits: 0, misses: 0 }, semantic: { hits: 0, misses: 0 } };
}

export function addCounts(into: EmbedCacheCounts, delta: EmbedCacheCounts): void {
  into.exact.hits += delta.exact.hits;
  into.exact.misses += delta.exact.misses;
  into.semantic.hits += delta.semantic.hits;
  into.semantic.misses += delta.semantic.misses;
}

export function isZero(c: EmbedCacheCounts): boolean {
  return c.exact.hits + c.exact.misses + c.semantic.hits + c.semantic.misses === 0;
}

/** This process's counters per tenant (embedded mode, where the process is the deployment). */
export class MemoryCacheCounters implements CacheCounters {
  readonly scope = 'process';
  private readonly byTenant = new Map<string, EmbedCacheCounts>();

  async add(tenantId: string, counts: EmbedCacheCounts): Promise<void> {
    const current = this.byTenant.get(tenantId) ?? zeroCounts();
    addCounts(current, counts);
    this.byTenant.set(tenantId, current);
  }

  async read(tenantId: string): Promise<EmbedCacheCounts> {
    const out = zeroCounts();
    const current = this.byTenant.get(tenantId);
    if (current) addCounts(out, current);
    return out;
  }

  async close(): Promise<void> {
    this.byTenant.clear();
  }
}
