import type { EmbedCacheCounts, EmbedCacheUsage } from '../protocol/index.js';

/** A raw model: text in, unit vectors out. Knows nothing about tenants or caching. */
export interface Embedder {
  /**
   * Names the vector space. Vectors from different `model` values must never be compared, so the
   * cache keys and the vector index both record it.
   */
  readonly model: string;
  readonly dims: number;
  /** One L2-normalised vector of length `dims` per text, in input order. */
  embed(texts: readonly string[]): Promise<Float32Array[]>;
}

export interface EmbeddingCacheKey {
  tenantId: string;
  model: string;
  contentHash: string;
}

/**
 * The exact level: embeddings by (tenant, model, hash of the normalised text). Implementations
 * swallow their own failures: a broken cache costs an extra embedding call, never a failed request.
 */
export interface EmbeddingCache {
  get(key: EmbeddingCacheKey): Promise<Float32Array | undefined>;
  set(key: EmbeddingCacheKey, vector: Float32Array): Promise<void>;
  close(): Promise<void>;
}

/** Semantic entries never cross a tenant or a vector space. */
export interface SemanticScope {
  tenantId: string;
  model: string;
}

export interface SemanticEntry {
  /** The exact level's key of the text whose embedding a near-identical text would reuse. */
  contentHash: string;
  sketch: Int8Array;
}

export interface SemanticMatch {
  contentHash: string;
  similarity: number;
}

/**
 * The semantic level: lexical sketches of the texts a scope recently sent to the model, to find a
 * near-identical one without embedding. Bounded per scope and expiring; failures are misses.
 */
export interface SemanticIndex {
  /** For each sketch, the most similar live entry at or above `minSimilarity`. */
  nearest(scope: SemanticScope, sketches: readonly Int8Array[], minSimilarity: number): Promise<(SemanticMatch | undefined)[]>;
  add(scope: SemanticScope, entries: readonly SemanticEntry[]): Promise<void>;
  close(): Promise<void>;
}

/** Per-tenant hit/miss counters of both levels. Failures lose counts, never a request. */
export interface CacheCounters {
  /** `cluster` when every node adds to the same counters (Redis), `process` otherwise. */
  readonly scope: 'cluster' | 'process';
  add(tenantId: string, counts: EmbedCacheCounts): Promise<void>;
  read(tenantId: string): Promise<EmbedCacheCounts>;
  close(): Promise<void>;
}

/** This process's lookups over all tenants; `misses` is what was sent to the model. */
export interface EmbeddingStats extends EmbedCacheCounts {
  hits: number;
  misses: number;
}

/** What services use: embeddings per tenant, through both cache levels and the token budget. */
export interface EmbeddingService {
  readonly model: string;
  readonly dims: number;
  embed(tenantId: string, texts: readonly string[]): Promise<Float32Array[]>;
  /** Counted per distinct text of a call. */
  stats(): EmbeddingStats;
  /** One tenant's counters, cluster-wide when they live in Redis. */
  cacheUsage(tenantId: string): Promise<EmbedCacheUsage>;
  close(): Promise<void>;
}
