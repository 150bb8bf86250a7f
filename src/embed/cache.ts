import { Redis } from 'ioredis';
import { AeternaError } from '../protocol/index.js';
import { isValidId } from '../tenancy/index.js';
import type { EmbeddingCache, EmbeddingCacheKey } from './types.js';

/**
 * `t:{tenantId}:emb:{model}:{contentHash}`: tenant first, like every Redis key (ARCHITECTURE.md),
 * so a tenant's data can be found and erased by prefix. Model names may contain ':' (Ollama tags
 * do), which stays unambiguous only because tenant ids cannot and the hash has a fixed length,
 * hence the checks: a malformed part could otherwise alias another tenant's key.
 */
function cacheKeyString(key: EmbeddingCacheKey): string {
  if (!isValidId(key.tenantId)) throw new AeternaError('INVALID_ARGUMENT', 'embedding cache: invalid tenant id');
  if (!/^[0-9a-f]{64}$/.test(key.contentHash)) throw new AeternaError('INVALID_ARGUMENT', 'embedding cache: contentHash must be sha256 hex');
  if (key.model === '') throw new AeternaError('INVALID_ARGUMENT', 'embedding cache: model must not be empty');
  return `t:${key.tenantId}:emb:${key.model}:${key.contentHash}`;
}

interface MemoryEntry {
  vector: Float32Array;
  expiresAt: number;
}

/**
 * In-process LRU with TTL. A Map iterates in insertion order, so re-inserting on every hit keeps
 * the least recently used entry first, where eviction finds it. Vectors are copied in and out so
 * a caller scribbling on its result cannot corrupt the cache.
 */
export class MemoryEmbeddingCache implements EmbeddingCache {
  private readonly entries = new Map<string, MemoryEntry>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(opts: { maxEntries: number; ttlSec: number; now?: () => number }) {
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 0) {
      throw new AeternaError('INVALID_ARGUMENT', 'embedding cache maxEntries must be a non-negative integer');
    }
    if (!(opts.ttlSec > 0)) throw new AeternaError('INVALID_ARGUMENT', 'embedding cache ttlSec must be positive');
    this.maxEntries = opts.maxEntries;
    this.ttlMs = opts.ttlSec * 1000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  async get(key: EmbeddingCacheKey): Promise<Float32Array | undefined> {
    const k = cacheKeyString(key);
    const entry = this.entries.get(k);
    if (!entry) return undefined;
    this.entries.delete(k);
    if (entry.expiresAt <= this.now()) return undefined;
    this.entries.set(k, entry);
    return entry.vector.slice();
  }

  async set(key: EmbeddingCacheKey, vector: Float32Array): Promise<void> {
    if (this.maxEntries === 0) return;
    const k = cacheKeyString(key);
    this.entries.delete(k);
    this.entries.set(k, { vector: vector.slice(), expiresAt: this.now() + this.ttlMs });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}

/** Bounds so a Redis that is down or hung costs an embed a few hundred ms, not a hang. */
const REDIS_CONNECT_TIMEOUT_MS = 2_000;
const REDIS_COMMAND_TIMEOUT_MS = 500;

function encodeVector(vector: Float32Array): Buffer {
  const buf = Buffer.allocUnsafe(vector.length * 4);
  vector.forEach((x, i) => buf.writeFloatLE(x, i * 4));
  return buf;
}

function decodeVector(buf: Buffer): Float32Array | undefined {
  if (buf.length === 0 || buf.length % 4 !== 0) return undefined;
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/**
 * Embeddings shared by every node through Redis, as raw float32 little-endian bytes (1.5 KiB for
 * 384 dims; JSON would be ~4x that). Every failure is a miss or a dropped write: the cache is an
 * optimisation, and Redis being down must not take embedding down with it. `errors` counts them
 * for metrics.
 */
export class RedisEmbeddingCache implements EmbeddingCache {
  private readonly client: Redis;
  private readonly ttlSec: number;
  private errorCount = 0;

  constructor(opts: { url: string; ttlSec: number }) {
    if (!Number.isInteger(opts.ttlSec) || opts.ttlSec < 1) {
      throw new AeternaError('INVALID_ARGUMENT', 'embedding cache ttlSec must be a positive integer');
    }
    this.ttlSec = opts.ttlSec;
    this.client = new Redis(opts.url, {
      lazyConnect: false,
      maxRetriesPerRequest: 1,
      connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
      commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
      // Keep reconnecting in the background (the cache comes back with Redis), but never slower than every 2 s.
      retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
    });
    // Without a listener ioredis prints every connection error; here they are expected and counted.
    this.client.on('error', () => {
      this.errorCount++;
    });
  }

  get errors(): number {
    return this.errorCount;
  }

  async get(key: EmbeddingCacheKey): Promise<Float32Array | undefined> {
    const k = cacheKeyString(key);
    try {
      const buf = await this.client.getBuffer(k);
      return buf ? decodeVector(buf) : undefined;
    } catch {
      this.errorCount++;
      return undefined;
    }
  }

  async set(key: EmbeddingCacheKey, vector: Float32Array): Promise<void> {
    const k = cacheKeyString(key);
    try {
      await this.client.set(k, encodeVector(vector), 'EX', this.ttlSec);
    } catch {
      this.errorCount++;
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      // quit fails when the connection is already gone; disconnect just stops the reconnect loop.
      this.client.disconnect();
    }
  }
}
