// The embedding module's public face: other folders import only from here.
export type { Embedder, EmbeddingCache, EmbeddingCacheKey, EmbeddingService } from './types.js';
export { HashingEmbedder } from './hashing.js';
export { OpenAIEmbedder } from './openai.js';
export { MemoryEmbeddingCache, RedisEmbeddingCache } from './cache.js';
export { CachingEmbeddingService, createEmbeddingService } from './service.js';
export { contentHash, cosine, parsePgVector, toPgVector } from './vectors.js';
