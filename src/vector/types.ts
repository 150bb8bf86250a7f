import type { Sql } from '../store/index.js';

/** Which memories a vector search may return. */
export interface VectorFilter {
  /** Allowed (layer, scope) pairs; a pair without scopeId admits every scope of that layer. */
  scopes: readonly { layer: string; scopeId?: string }[];
  /** Every tag listed must be present. */
  tags?: readonly string[];
}

export interface VectorSearchQuery {
  vector: Float32Array;
  /** Vectors of another embedding space are never compared. */
  model: string;
  filter: VectorFilter;
  limit: number;
}

export interface VectorHit {
  id: string;
  similarity: number;
}

/**
 * Nearest-neighbour search over memory embeddings. Calls take the caller's tenant-pinned
 * transaction, so row-level security scopes every search to one tenant.
 */
export interface VectorIndex {
  readonly name: 'pgvector-hnsw' | 'exact-scan';
  readonly dims: number;
  /** Stores (or replaces) a memory's vector. */
  upsert(sql: Sql, id: string, vector: Float32Array, model: string): Promise<void>;
  /** Best matches first, by cosine similarity. */
  search(sql: Sql, query: VectorSearchQuery): Promise<VectorHit[]>;
  /** The stored vectors of these memories (ids without one are absent). */
  vectorsOf(sql: Sql, ids: readonly string[]): Promise<Map<string, Float32Array>>;
}
