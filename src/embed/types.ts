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
 * An exact-match cache of embeddings. Implementations swallow their own failures: a broken cache
 * costs an extra embedding call, never a failed request.
 */
export interface EmbeddingCache {
  get(key: EmbeddingCacheKey): Promise<Float32Array | undefined>;
  set(key: EmbeddingCacheKey, vector: Float32Array): Promise<void>;
  close(): Promise<void>;
}

/** What services use: embeddings per tenant, through the exact-match cache. */
export interface EmbeddingService {
  readonly model: string;
  readonly dims: number;
  embed(tenantId: string, texts: readonly string[]): Promise<Float32Array[]>;
  /** Counted per distinct text of a call: `misses` is what was sent to the model. */
  stats(): { hits: number; misses: number };
  close(): Promise<void>;
}
