import type { EmbedCacheConfig, EmbedderConfig } from '../config.js';
import { countTokens, type TokenMeter } from '../obs/index.js';
import { AeternaError, type EmbedCacheCounts, type EmbedCacheUsage } from '../protocol/index.js';
import { assertId } from '../tenancy/index.js';
import { MemoryEmbeddingCache, RedisEmbeddingCache } from './cache.js';
import { MemoryCacheCounters, addCounts, isZero, zeroCounts } from './counters.js';
import { HashingEmbedder } from './hashing.js';
import { OpenAIEmbedder } from './openai.js';
import { MemorySemanticIndex, sketchTexts } from './semantic.js';
import { normalizeEmbedText } from './text.js';
import type { CacheCounters, Embedder, EmbeddingCache, EmbeddingCacheKey, EmbeddingService, EmbeddingStats, SemanticIndex } from './types.js';
import { contentHash } from './vectors.js';

export interface CachingEmbeddingServiceOptions {
  /** The semantic level; without it only exact repeats are served from the cache. */
  semantic?: { index: SemanticIndex; threshold: number };
  /** Per-tenant counters for the usage report (default: in this process). */
  counters?: CacheCounters;
  /** Charges what is sent to the model to the tenant's embedding budget. Cache hits cost nothing. */
  meter?: TokenMeter;
}

/**
 * Embeds through two cache levels, then the model:
 * 1. exact: (tenant, model, sha256 of the normalised text);
 * 2. semantic: a near-identical text the tenant sent to the same model recently (see
 *    semantic.ts for what "near-identical" means), whose exact entry is reused;
 * 3. the model, for what is left, in one request per call, charged to the tenant's budget first
 *    (refused with RATE_LIMITED before the request when it would pass a limit).
 * The cache can only ever cost time: anything it throws or returns out of shape is a miss. A
 * semantic hit is never written back under the new text's own hash, so an approximate vector
 * lives no longer than the semantic TTL.
 */
export class CachingEmbeddingService implements EmbeddingService {
  readonly model: string;
  readonly dims: number;
  private readonly totals = zeroCounts();
  private sentToModel = 0;
  private readonly counters: CacheCounters;
  /** Cache and counter writes run after the caller has its vectors; close() waits for them. */
  private readonly pendingWrites = new Set<Promise<void>>();

  constructor(
    private readonly embedder: Embedder,
    private readonly cache: EmbeddingCache,
    private readonly opts: CachingEmbeddingServiceOptions = {},
  ) {
    this.model = embedder.model;
    this.dims = embedder.dims;
    this.counters = opts.counters ?? new MemoryCacheCounters();
  }

  async embed(tenantId: string, texts: readonly string[]): Promise<Float32Array[]> {
    assertId('tenantId', tenantId);
    if (!texts.every((t) => typeof t === 'string')) throw new AeternaError('INVALID_ARGUMENT', 'texts must be strings');

    const byHash = new Map<string, string>();
    const hashes = texts.map((text) => {
      const normal = normalizeEmbedText(text);
      const hash = contentHash(normal);
      byHash.set(hash, normal);
      return hash;
    });
    const keyOf = (hash: string): EmbeddingCacheKey => ({ tenantId, model: this.model, contentHash: hash });
    const lookup = (hash: string): Promise<Float32Array | undefined> =>
      this.cache
        .get(keyOf(hash))
        .catch(() => undefined)
        .then((v) => (v?.length === this.dims ? v : undefined));
    const counts = zeroCounts();

    const found = new Map<string, Float32Array>();
    await Promise.all(
      [...byHash.keys()].map(async (hash) => {
        const vector = await lookup(hash);
        if (vector) found.set(hash, vector);
      }),
    );
    const exactMisses = [...byHash.keys()].filter((hash) => !found.has(hash));
    counts.exact = { hits: found.size, misses: exactMisses.length };

    const sketches = new Map<string, Int8Array>();
    const semantic = this.opts.semantic;
    if (semantic && exactMisses.length > 0) {
      const made = await sketchTexts(exactMisses.map((hash) => byHash.get(hash) ?? ''));
      exactMisses.forEach((hash, i) => {
        const sketch = made[i];
        if (sketch) sketches.set(hash, sketch);
      });
      const asked = [...sketches.keys()];
      const scope = { tenantId, model: this.model };
      const matches = await semantic.index.nearest(scope, asked.map((h) => sketches.get(h) as Int8Array), semantic.threshold).catch(() => []);
      await Promise.all(
        asked.map(async (hash, i) => {
          const match = matches[i];
          const vector = match ? await lookup(match.contentHash) : undefined;
          if (vector) found.set(hash, vector);
        }),
      );
      const hits = asked.filter((hash) => found.has(hash)).length;
      counts.semantic = { hits, misses: asked.length - hits };
    }

    const missing = exactMisses.filter((hash) => !found.has(hash));
    if (missing.length > 0) {
      const inputs = missing.map((hash) => byHash.get(hash) ?? '');
      const vectors = await this.callModel(tenantId, inputs);
      missing.forEach((hash, i) => {
        const vector = vectors[i] as Float32Array;
        found.set(hash, vector);
        this.background(this.cache.set(keyOf(hash), vector));
      });
      if (semantic) {
        const entries = missing.flatMap((hash) => {
          const sketch = sketches.get(hash);
          return sketch ? [{ contentHash: hash, sketch }] : [];
        });
        if (entries.length > 0) this.background(semantic.index.add({ tenantId, model: this.model }, entries));
      }
    }
    this.count(tenantId, counts, missing.length);

    // A text repeated in the batch gets its own copy, so mutating one result cannot change another.
    const handedOut = new Set<string>();
    return hashes.map((hash) => {
      const vector = found.get(hash) as Float32Array;
      if (handedOut.has(hash)) return vector.slice();
      handedOut.add(hash);
      return vector;
    });
  }

  stats(): EmbeddingStats {
    const t = this.totals;
    return {
      hits: t.exact.hits + t.semantic.hits,
      misses: this.sentToModel,
      exact: { ...t.exact },
      semantic: { ...t.semantic },
    };
  }

  async cacheUsage(tenantId: string): Promise<EmbedCacheUsage> {
    assertId('tenantId', tenantId);
    const counts = await this.counters.read(tenantId);
    return { scope: this.counters.scope, semanticEnabled: this.opts.semantic !== undefined, model: this.model, ...counts };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.pendingWrites);
    await Promise.allSettled([this.opts.semantic?.index.close(), this.counters.close()]);
    await this.cache.close();
  }

  /** Reserves the input tokens, then embeds; a failed call gives them back. */
  private async callModel(tenantId: string, inputs: string[]): Promise<Float32Array[]> {
    const meter = this.opts.meter;
    const charge = meter ? await meter.reserve(tenantId, 'embed', inputs.reduce((n, text) => n + countTokens(text), 0)) : undefined;
    let vectors: Float32Array[];
    try {
      vectors = await this.embedder.embed(inputs);
    } catch (err) {
      if (meter && charge) await meter.refund(charge);
      throw err;
    }
    if (vectors.length !== inputs.length) {
      throw new AeternaError('UNAVAILABLE', `embedder returned ${vectors.length} vectors for ${inputs.length} texts`);
    }
    return vectors;
  }

  private count(tenantId: string, counts: EmbedCacheCounts, sent: number): void {
    addCounts(this.totals, counts);
    this.sentToModel += sent;
    if (!isZero(counts)) this.background(this.counters.add(tenantId, counts));
  }

  private background(work: Promise<void>): void {
    const write = work.catch(() => undefined).finally(() => this.pendingWrites.delete(write));
    this.pendingWrites.add(write);
  }
}

export interface CreateEmbeddingServiceOptions {
  embedder: EmbedderConfig;
  /** `semantic` absent: exact level only. */
  embedCache: Omit<EmbedCacheConfig, 'semantic'> & { semantic?: EmbedCacheConfig['semantic'] };
  redisUrl?: string;
  /** The token budgets (core's TokenBudgets). */
  meter?: TokenMeter;
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
 *
 * The semantic level and the budget apply to a remote model only. The offline hashing embedder
 * costs microseconds and no money, and it is its own sketch: a semantic level would only hand out
 * another text's vector to save nothing, and a budget would ration something free.
 */
export function createEmbeddingService(opts: CreateEmbeddingServiceOptions): EmbeddingService {
  const { entries, ttlSec, semantic } = opts.embedCache;
  const billable = opts.embedder.kind === 'openai';
  const redis = opts.redisUrl && entries > 0 ? new RedisEmbeddingCache({ url: opts.redisUrl, ttlSec }) : undefined;
  const cache = redis ?? new MemoryEmbeddingCache({ maxEntries: entries, ttlSec });
  const semanticOn = billable && entries > 0 && semantic !== undefined && semantic.entries > 0;
  const index =
    semanticOn && semantic
      ? (redis?.semanticIndex({ ttlSec: semantic.ttlSec, maxPerScope: semantic.entries }) ??
        new MemorySemanticIndex({ ttlSec: semantic.ttlSec, maxPerScope: semantic.entries, maxEntries: entries }))
      : undefined;
  return new CachingEmbeddingService(createEmbedder(opts.embedder), cache, {
    ...(index && semantic ? { semantic: { index, threshold: semantic.threshold } } : {}),
    counters: redis?.counters() ?? new MemoryCacheCounters(),
    ...(billable && opts.meter ? { meter: opts.meter } : {}),
  });
}
