import { Redis } from 'ioredis';
import { AeternaError, type EmbedCacheCounts } from '../protocol/index.js';
import { isValidId } from '../tenancy/index.js';
import { zeroCounts } from './counters.js';
import { bestMatches, scopeKey, validateOptions, type SemanticIndexOptions } from './semantic.js';
import type { CacheCounters, EmbeddingCache, EmbeddingCacheKey, SemanticEntry, SemanticIndex, SemanticMatch, SemanticScope } from './types.js';

/**
 * `t:{tenantId}:emb:{model}:{contentHash}`: tenant first, like every Redis key (ARCHITECTURE.md),
 * so a tenant's data can be found and erased by prefix. Model names may contain ':' (Ollama tags
 * do), which stays unambiguous only because tenant ids cannot and the hash has a fixed length,
 * hence the checks: a malformed part could otherwise alias another tenant's key. The semantic
 * level's `…:{model}:sketches-v1` and the counters' `t:{tenantId}:emb:counters` end in letters
 * no hash contains, so they can never collide with an exact entry.
 */
const SHA256_HEX = /^[0-9a-f]{64}$/;

function cacheKeyString(key: EmbeddingCacheKey): string {
  if (!SHA256_HEX.test(key.contentHash)) throw new AeternaError('INVALID_ARGUMENT', 'embedding cache: contentHash must be sha256 hex');
  return `${scopeKey(key)}:${key.contentHash}`;
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

/**
 * A Redis connection for a cache: short timeouts, one retry per command, and reconnection in the
 * background (the cache comes back with Redis, never slower than every 2 s). A cache treats Redis
 * errors as misses, so they are counted through `onError`, not logged one by one.
 */
export function openCacheRedis(url: string, onError: () => void): Redis {
  const client = new Redis(url, {
    maxRetriesPerRequest: 1,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
  });
  client.on('error', onError);
  return client;
}

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
    this.client = openCacheRedis(opts.url, () => this.errorCount++);
  }

  get errors(): number {
    return this.errorCount;
  }

  async get(key: EmbeddingCacheKey): Promise<Float32Array | undefined> {
    const k = cacheKeyString(key);
    return this.attempt(async () => {
      const buf = await this.client.getBuffer(k);
      return buf ? decodeVector(buf) : undefined;
    }, undefined);
  }

  async set(key: EmbeddingCacheKey, vector: Float32Array): Promise<void> {
    const k = cacheKeyString(key);
    await this.attempt(async () => void (await this.client.set(k, encodeVector(vector), 'EX', this.ttlSec)), undefined);
  }

  /** The semantic level on this cache's connection (closing the cache closes it). */
  semanticIndex(opts: SemanticIndexOptions & { mirrorMs?: number }): SemanticIndex {
    return new RedisSemanticIndex(this.client, (work, fallback) => this.attempt(work, fallback), opts);
  }

  /** Per-tenant hit/miss counters on this cache's connection, shared by every node. */
  counters(): CacheCounters {
    return new RedisCacheCounters(this.client, (work, fallback) => this.attempt(work, fallback));
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      // quit fails when the connection is already gone; disconnect just stops the reconnect loop.
      this.client.disconnect();
    }
  }

  private async attempt<T>(work: () => Promise<T>, fallback: T): Promise<T> {
    try {
      return await work();
    } catch {
      this.errorCount++;
      return fallback;
    }
  }
}

/** Runs Redis work, counting a failure and answering `fallback` instead of throwing. */
type Attempt = <T>(work: () => Promise<T>, fallback: T) => Promise<T>;

const HASH_BYTES = 32;

/** Scopes whose recent set a node keeps a copy of; past this the least recently read is dropped. */
const MIRRORED_SCOPES = 256;

interface Mirrored {
  /** Node-clock time of the read from Redis. */
  readAt: number;
  /** Members (raw hash + sketch) with the time each was added, oldest first. */
  members: { member: Buffer; at: number }[];
}

/**
 * The semantic level in Redis: per (tenant, model) one sorted set whose members are the raw
 * sha256 of a text followed by its int8 sketch, scored by when it was added; an add trims
 * expired and surplus members in the same MULTI, and the same text re-added only moves its score.
 *
 * Reading the set costs one round trip of up to `maxPerScope` × 288 bytes (74 KiB at 256) and
 * parsing as many replies, a few ms of CPU on a busy node. So each node reads a scope at most
 * every `mirrorMs` (1 s) and compares against its copy in between, adding its own new entries to
 * it at once: another node's text becomes a candidate here up to `mirrorMs` late, a missed hit at
 * worst. `mirrorMs: 0` reads Redis on every lookup.
 */
class RedisSemanticIndex implements SemanticIndex {
  private readonly ttlMs: number;
  private readonly mirrorMs: number;
  private readonly now: () => number;
  private readonly mirrors = new Map<string, Mirrored>();

  constructor(
    private readonly client: Redis,
    private readonly attempt: Attempt,
    private readonly opts: SemanticIndexOptions & { mirrorMs?: number },
  ) {
    validateOptions(opts);
    this.ttlMs = opts.ttlSec * 1000;
    this.mirrorMs = opts.mirrorMs ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  async nearest(scope: SemanticScope, sketches: readonly Int8Array[], minSimilarity: number): Promise<(SemanticMatch | undefined)[]> {
    const key = sketchesKey(scope);
    const now = this.now();
    const oldest = now - this.ttlMs;
    let mirrored = this.mirrors.get(key);
    if (!mirrored || now - mirrored.readAt >= this.mirrorMs || now < mirrored.readAt) {
      const reply = await this.attempt(() => this.client.zrangebyscoreBuffer(key, `(${oldest}`, '+inf', 'WITHSCORES'), []);
      const members: Mirrored['members'] = [];
      for (let i = 0; i + 1 < reply.length; i += 2) members.push({ member: reply[i] as Buffer, at: Number((reply[i + 1] as Buffer).toString()) });
      mirrored = { readAt: now, members };
    }
    this.remember(key, mirrored);
    // Views into the replies, no copies; only a winner's hash is ever hex-encoded.
    const candidates = mirrored.members
      .filter((m) => m.at > oldest && m.member.length > HASH_BYTES)
      .map(({ member }) => ({ key: member, sketch: new Int8Array(member.buffer, member.byteOffset + HASH_BYTES, member.length - HASH_BYTES) }));
    return bestMatches(sketches, candidates, minSimilarity).map((best) =>
      best ? { contentHash: best.key.subarray(0, HASH_BYTES).toString('hex'), similarity: best.similarity } : undefined,
    );
  }

  async add(scope: SemanticScope, entries: readonly SemanticEntry[]): Promise<void> {
    const valid = entries.filter((e) => SHA256_HEX.test(e.contentHash));
    if (valid.length === 0) return;
    const key = sketchesKey(scope);
    const now = this.now();
    const members = valid.map((e) => Buffer.concat([Buffer.from(e.contentHash, 'hex'), Buffer.from(e.sketch.buffer, e.sketch.byteOffset, e.sketch.byteLength)]));
    const mirrored = this.mirrors.get(key);
    if (mirrored) {
      mirrored.members.push(...members.map((member) => ({ member, at: now })));
      mirrored.members.splice(0, Math.max(0, mirrored.members.length - this.opts.maxPerScope));
    }
    await this.attempt(async () => {
      await this.client
        .multi()
        .zadd(key, ...members.flatMap((member) => [now, member]))
        .zremrangebyscore(key, '-inf', now - this.ttlMs)
        .zremrangebyrank(key, 0, -(this.opts.maxPerScope + 1))
        .pexpire(key, this.ttlMs)
        .exec();
    }, undefined);
  }

  async close(): Promise<void> {
    // The connection belongs to the RedisEmbeddingCache.
    this.mirrors.clear();
  }

  private remember(key: string, mirrored: Mirrored): void {
    this.mirrors.delete(key);
    this.mirrors.set(key, mirrored);
    for (const stale of this.mirrors.keys()) {
      if (this.mirrors.size <= MIRRORED_SCOPES) break;
      this.mirrors.delete(stale);
    }
  }
}

function sketchesKey(scope: SemanticScope): string {
  return `${scopeKey(scope)}:sketches-v1`;
}

const COUNTER_FIELDS = ['exact_hits', 'exact_misses', 'semantic_hits', 'semantic_misses'] as const;

/** Per-tenant counters in one Redis hash, `t:{tenantId}:emb:counters`, added to by every node. */
class RedisCacheCounters implements CacheCounters {
  readonly scope = 'cluster';

  constructor(
    private readonly client: Redis,
    private readonly attempt: Attempt,
  ) {}

  async add(tenantId: string, c: EmbedCacheCounts): Promise<void> {
    const key = countersKey(tenantId);
    const values = [c.exact.hits, c.exact.misses, c.semantic.hits, c.semantic.misses];
    const pipeline = this.client.pipeline();
    COUNTER_FIELDS.forEach((field, i) => {
      const n = values[i] ?? 0;
      if (n > 0) pipeline.hincrby(key, field, n);
    });
    if (pipeline.length === 0) return;
    await this.attempt(async () => void (await pipeline.exec()), undefined);
  }

  async read(tenantId: string): Promise<EmbedCacheCounts> {
    const key = countersKey(tenantId);
    const raw = await this.attempt(() => this.client.hgetall(key), {});
    const n = (field: (typeof COUNTER_FIELDS)[number]) => Number(raw[field] ?? 0) || 0;
    const out = zeroCounts();
    out.exact = { hits: n('exact_hits'), misses: n('exact_misses') };
    out.semantic = { hits: n('semantic_hits'), misses: n('semantic_misses') };
    return out;
  }

  async close(): Promise<void> {
    // The connection belongs to the RedisEmbeddingCache.
  }
}

function countersKey(tenantId: string): string {
  if (!isValidId(tenantId)) throw new AeternaError('INVALID_ARGUMENT', 'embedding cache: invalid tenant id');
  return `t:${tenantId}:emb:counters`;
}
