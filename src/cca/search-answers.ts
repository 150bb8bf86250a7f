import { createHash } from 'node:crypto';
import type { EmbeddingService } from '../embed/index.js';
import { resolveReadScopes, type MemoryService, type SearchHit } from '../memory/index.js';
import { LAYERS, parseInput, searchMemoriesSchema } from '../protocol/index.js';
import { requirePermission, type TenantContext } from '../tenancy/index.js';
import type { AnswerCacheStats, SemanticAnswerCache } from './answer-cache.js';

export interface SearchAnswer {
  results: SearchHit[];
  model: string;
}

/** A search's answer, and whether the semantic answer cache served it. */
export interface CachedSearchResult extends SearchAnswer {
  cached: boolean;
}

/**
 * `memory.search` through the semantic answer cache: a query that means the same as one answered
 * before (query embeddings at cosine ≥ the threshold), with the same parameters and readable
 * scopes, gets that answer back, provided no memory it returned has changed and no memory was
 * written in the searched scopes since (the cache's fence). Anything else is searched afresh.
 */
export class CachedMemorySearch {
  constructor(
    private readonly opts: {
      memory: MemoryService;
      embeddings: EmbeddingService;
      cache: SemanticAnswerCache<SearchAnswer> | undefined;
    },
  ) {}

  async search(ctx: TenantContext, raw: unknown): Promise<CachedSearchResult> {
    const { memory, embeddings, cache } = this.opts;
    if (!cache) return { ...(await memory.search(ctx, raw)), cached: false };
    requirePermission(ctx, 'memory:read');
    const input = parseInput(searchMemoriesSchema, raw, 'search');
    // Throws FORBIDDEN for another user's user layer before anything is looked up.
    const scopes = resolveReadScopes(ctx, input.layers ?? [...LAYERS], input);
    const partition = this.partitionOf(ctx, scopes, input.tags, input.limit, input.threshold);
    // The search embeds the same text again; the exact embedding cache answers that one.
    const [vector] = await embeddings.embed(ctx.tenantId, [input.query]);
    if (!vector) return { ...(await memory.search(ctx, input)), cached: false };
    const hit = await cache.get(ctx.tenantId, partition, vector);
    if (hit) {
      await memory.recordAccess(ctx, hit.results.map((h) => h.memory.id));
      return { ...hit, cached: true };
    }
    const fence = await cache.fence(ctx.tenantId, scopes);
    const answer = await memory.search(ctx, input);
    const sources = answer.results.map((h) => ({ id: h.memory.id, version: h.memory.version }));
    await cache.set(ctx.tenantId, partition, vector, answer, sources, fence);
    return { ...answer, cached: false };
  }

  stats(): AnswerCacheStats | null {
    return this.opts.cache?.stats() ?? null;
  }

  close(): Promise<void> {
    return this.opts.cache?.close() ?? Promise.resolve();
  }

  /** Everything that changes a search's answer besides the query: model, readable scopes, roles, tags, limit, threshold. */
  private partitionOf(ctx: TenantContext, scopes: readonly { layer: string; scopeId?: string }[], tags: readonly string[] | undefined, limit: number, threshold: number): string {
    const key = JSON.stringify({
      model: this.opts.embeddings.model,
      scopes: scopes.map((s) => `${s.layer}:${s.scopeId ?? '*'}`).sort(),
      tags: [...(tags ?? [])].sort(),
      roles: [...ctx.roles].sort(),
      limit,
      threshold,
    });
    return `search.${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
  }
}
