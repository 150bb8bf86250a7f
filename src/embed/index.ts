// The embedding module's public face: other folders import only from here.
export type {
  CacheCounters,
  Embedder,
  EmbeddingCache,
  EmbeddingCacheKey,
  EmbeddingService,
  EmbeddingStats,
  SemanticEntry,
  SemanticIndex,
  SemanticMatch,
  SemanticScope,
} from './types.js';
export { HashingEmbedder } from './hashing.js';
export { OpenAIEmbedder } from './openai.js';
export { MemoryEmbeddingCache, RedisEmbeddingCache, openCacheRedis } from './cache.js';
export { MemoryCacheCounters } from './counters.js';
export { MemorySemanticIndex, SKETCH_DIMS, sketchCosine, sketchTexts, type SemanticIndexOptions } from './semantic.js';
export { CachingEmbeddingService, createEmbeddingService, type CachingEmbeddingServiceOptions, type CreateEmbeddingServiceOptions } from './service.js';
export { normalizeEmbedText } from './text.js';
export { contentHash, cosine, parsePgVector, toPgVector } from './vectors.js';
