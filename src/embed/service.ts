import type { EmbedderConfig } from '../config.js';
import { AeternaError } from '../protocol/index.js';
import { assertId } from '../tenancy/index.js';
import { MemoryEmbeddingCache, RedisEmbeddingCache } from './cache.js';
import { HashingEmbedder } from './hashing.js';
import { OpenAIEmbedder } from './openai.js';
import type { Embedder, EmbeddingCache, EmbeddingCacheKey, EmbeddingService } from './types.js';
import { contentHash } from './vectors.js';

/**
 * Embeds through an exact-match cache keyed by (tenant, model, content hash). Each call makes at
 * most one request to the model, for the distinct texts the cache did not have. The cache can
 * only ever cost time: anything it throws or returns out of shape is treated as a miss.
 */
export class CachingEmbeddingService implements EmbeddingService {
  readonly model: string;
  readonly dims: number;
  private hits = 0;
  private misses = 0;
  /** Cache writes run after the caller has its vectors; close() waits for them. */
  private readonly pendingWrites = new Set<Promise<void>>();

  constructor(
    private readonly embedder: Embedder,
    private readonly cache: EmbeddingCache,
  ) {
    this.model = embedder.model;
    this.dims = embedder.dims;
  }

  async embed(tenantId: string, texts: readonly string[]): Promise<Float32Array[]> {
    assertId('tenantId', tenantId);
    if (!texts.every((t) => typeof t === 'string')) throw new AeternaError('INVALID_ARGUMENT', 'texts must be strings');

    const byHash = new Map<string, string>();
    const hashes = texts.map((text) => {
      const hash = contentHash(text);
      byHash.set(hash, text);
      return hash;
    });
    const keyOf = (hash: string): EmbeddingCacheKey => ({ tenantId, model: this.model, contentHash: hash });

    const found = new Map<string, Float32Array>();
    await Promise.all(
      [...byHash.keys()].map(async (hash) => {
        const vector = await this.cache.get(keyOf(hash)).catch(() => undefined);
        if (vector?.length === this.dims) found.set(hash, vector);
      }),
    );
    const missing = [...byHash.keys()].filter((hash) => !found.has(hash));
    this.hits += found.size;
    this.misses += missing.length;

    if (missing.length > 0) {
      const vectors = await this.embedder.embed(missing.map((hash) => byHash.get(hash) ?? ''));
      if (vectors.length !== missing.length) {
        throw new AeternaError('UNAVAILABLE', `embedder returned ${vectors.length} vectors for ${missing.length} texts`);
      }
      missing.forEach((hash, i) => {
        const vector = vectors[i] as Float32Array;
        found.set(hash, vector);
        this.store(keyOf(hash), vector);
      });
    }

    // A text repeated in the batch gets its own copy, so mutating one result cannot change another.
    const handedOut = new Set<string>();
    return hashes.map((hash) => {
      const vector = found.get(hash) as Float32Array;
      if (handedOut.has(hash)) return vector.slice();
      handedOut.add(hash);
      return vector;
    });
  }

  stats(): { hits: number; misses: number } {
    return { hits: this.hits, misses: this.misses };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.pendingWrites);
    await this.cache.close();
  }

  private store(key: EmbeddingCacheKey, vector: Float32Array): void {
    const write = this.cache
      .set(key, vector)
      .catch(() => undefined)
      .finally(() => this.pendingWrites.delete(write));
    this.pendingWrites.add(write);
  }
}

export interface CreateEmbeddingServiceOptions {
  embedder: EmbedderConfig;
  embedCache: { entries: number; ttlSec: number };
  redisUrl?: string;
}

function createEmbedder(config: EmbedderConfig): Embedder {
  switch (config.kind) {
    case 'hashing':
      return new HashingEmbedder(config.dims);
    case 'openai':
      return new OpenAIEmbedder(config);
  }
}

/**
 * The model from config, cached in Redis when there is one (shared by every node and surviving
 * restarts) and in process memory otherwise. `embedCache.entries = 0` turns caching off in both
 * modes: it is the operator's one switch for that.
 */
export function createEmbeddingService(opts: CreateEmbeddingServiceOptions): EmbeddingService {
  const { entries, ttlSec } = opts.embedCache;
  const cache =
    opts.redisUrl && entries > 0
      ? new RedisEmbeddingCache({ url: opts.redisUrl, ttlSec })
      : new MemoryEmbeddingCache({ maxEntries: entries, ttlSec });
  return new CachingEmbeddingService(createEmbedder(opts.embedder), cache);
}
