import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CachingEmbeddingService,
  MemoryCacheCounters,
  MemoryEmbeddingCache,
  MemorySemanticIndex,
  RedisEmbeddingCache,
  sketchCosine,
  sketchTexts,
  type Embedder,
  type EmbeddingCache,
  type SemanticIndex,
} from '../../src/embed/index.js';
import { countTokens, type TokenCharge, type TokenMeter } from '../../src/obs/index.js';
import { AeternaError } from '../../src/protocol/index.js';
import { requireService } from '../support/index.js';

const redisUrl = requireService('redis');
if (!redisUrl && process.env.CI === 'true') {
  throw new Error('AETERNA_TEST_REDIS_URL is empty in CI: the Redis semantic-cache tests must run there, not skip.');
}

/**
 * A "model" whose vector is a pseudo-random unit vector seeded by the exact text, so a result
 * says which text it was computed from: a semantic hit returns the earlier text's vector, never
 * this text's own.
 */
class FingerprintEmbedder implements Embedder {
  readonly calls: string[][] = [];
  constructor(
    readonly model = 'fingerprint-v1',
    readonly dims = 8,
  ) {}
  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.calls.push([...texts]);
    return texts.map((t) => fingerprint(t, this.dims));
  }
}

function fingerprint(text: string, dims: number): Float32Array {
  const bytes = createHash('sha256').update(text).digest();
  const v = Float32Array.from({ length: dims }, (_, i) => (bytes[i % bytes.length] ?? 0) - 127.5);
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

const same = (a: Float32Array | undefined, b: Float32Array | undefined) => Array.from(a ?? []).join() === Array.from(b ?? []).join();

const BASE = 'The deploy pipeline failed because the staging database ran out of disk space.';
/** Case and punctuation only: sketch cosine 1. */
const SHOUTED = 'THE DEPLOY PIPELINE FAILED BECAUSE THE STAGING DATABASE RAN OUT OF DISK SPACE!!';
/** Plurals: just above 0.98. */
const PLURALS = 'The deploy pipelines failed because the staging databases ran out of disk space.';
/** One content word of ten replaced: well below. */
const OTHER_DB = 'The deploy pipeline failed because the production database ran out of disk space.';

async function similarity(a: string, b: string): Promise<number> {
  const [x, y] = await sketchTexts([a, b]);
  return sketchCosine(x as Int8Array, y as Int8Array);
}

/** Records reservations; refuses when told to, as TokenBudgets does at a limit. */
class FakeMeter implements TokenMeter {
  readonly reserved: number[] = [];
  readonly refunded: number[] = [];
  refuse = false;
  async reserve(tenantId: string, kind: 'embed' | 'llm', tokens: number): Promise<TokenCharge> {
    if (this.refuse) throw new AeternaError('RATE_LIMITED', 'budget exhausted', { kind, period: 'day' });
    this.reserved.push(tokens);
    return { tenantId, kind, tokens, periodStarts: { day: '2026-01-01', month: '2026-01-01' } };
  }
  async settle(): Promise<void> {}
  async refund(charge: TokenCharge): Promise<void> {
    this.refunded.push(charge.tokens);
  }
}

interface Setup {
  embedder?: FingerprintEmbedder;
  cache?: EmbeddingCache;
  index?: SemanticIndex;
  threshold?: number;
  meter?: TokenMeter;
  counters?: MemoryCacheCounters;
}

function build(clock: { now: number }, s: Setup = {}) {
  const embedder = s.embedder ?? new FingerprintEmbedder();
  const cache = s.cache ?? new MemoryEmbeddingCache({ maxEntries: 1000, ttlSec: 86_400, now: () => clock.now });
  const index = s.index ?? new MemorySemanticIndex({ ttlSec: 3600, maxPerScope: 64, maxEntries: 1000, now: () => clock.now });
  const svc = new CachingEmbeddingService(embedder, cache, {
    semantic: { index, threshold: s.threshold ?? 0.98 },
    ...(s.meter ? { meter: s.meter } : {}),
    ...(s.counters ? { counters: s.counters } : {}),
  });
  return { embedder, cache, index, svc };
}

describe('lexical sketches', () => {
  it('place the fixtures where the tests below need them', async () => {
    expect(await similarity(BASE, SHOUTED)).toBeCloseTo(1, 6);
    expect(await similarity(BASE, PLURALS)).toBeGreaterThanOrEqual(0.98);
    expect(await similarity(BASE, PLURALS)).toBeLessThan(0.99);
    expect(await similarity(BASE, OTHER_DB)).toBeLessThan(0.95);
  });

  it('have none for text without letters, digits or pictographs', async () => {
    const [a, b, c] = await sketchTexts(['?!', '...', 'ok']);
    expect(a).toBeUndefined();
    expect(b).toBeUndefined();
    expect(c).toBeInstanceOf(Int8Array);
  });
});

describe('CachingEmbeddingService, two levels in process', () => {
  it('serves an exact repeat from the exact level', async () => {
    const clock = { now: 1_000_000 };
    const { embedder, svc } = build(clock);
    const [first] = await svc.embed('t1', [BASE]);
    const [again] = await svc.embed('t1', [`  ${BASE}\n`]);
    expect(embedder.calls).toEqual([[BASE]]);
    expect(same(again, first)).toBe(true);
    expect(svc.stats()).toEqual({ hits: 1, misses: 1, exact: { hits: 1, misses: 1 }, semantic: { hits: 0, misses: 1 } });
  });

  it('serves a near-identical text (>= 0.98) with the earlier text’s vector, and misses below', async () => {
    const clock = { now: 1_000_000 };
    const { embedder, svc } = build(clock);
    const [base] = await svc.embed('t1', [BASE]);
    const [shouted, plurals] = await svc.embed('t1', [SHOUTED, PLURALS]);
    expect(embedder.calls).toEqual([[BASE]]);
    expect(same(shouted, base)).toBe(true);
    expect(same(plurals, base)).toBe(true);
    expect(same(plurals, fingerprint(PLURALS, 8))).toBe(false);

    const [other] = await svc.embed('t1', [OTHER_DB]);
    expect(embedder.calls).toEqual([[BASE], [OTHER_DB]]);
    expect(same(other, fingerprint(OTHER_DB, 8))).toBe(true);
    expect(svc.stats()).toMatchObject({ hits: 2, misses: 2, exact: { hits: 0, misses: 4 }, semantic: { hits: 2, misses: 2 } });
  });

  it('compares against the threshold itself: a hit at exactly the similarity, a miss just above it', async () => {
    const sim = await similarity(BASE, PLURALS);
    const at = build({ now: 0 }, { threshold: sim });
    await at.svc.embed('t1', [BASE]);
    await at.svc.embed('t1', [PLURALS]);
    expect(at.embedder.calls).toHaveLength(1);

    const above = build({ now: 0 }, { threshold: Math.min(1, sim + 0.001) });
    await above.svc.embed('t1', [BASE]);
    await above.svc.embed('t1', [PLURALS]);
    expect(above.embedder.calls).toEqual([[BASE], [PLURALS]]);
  });

  it('never crosses a tenant or a model: a model change misses both levels', async () => {
    const clock = { now: 0 };
    const shared = build(clock);
    await shared.svc.embed('t1', [BASE]);
    const [t2] = await shared.svc.embed('t2', [SHOUTED]);
    expect(shared.embedder.calls).toEqual([[BASE], [SHOUTED]]);
    expect(same(t2, fingerprint(SHOUTED, 8))).toBe(true);

    const upgraded = new FingerprintEmbedder('fingerprint-v2');
    const next = build(clock, { embedder: upgraded, cache: shared.cache, index: shared.index });
    const [v2] = await next.svc.embed('t1', [BASE]);
    await next.svc.embed('t1', [SHOUTED]);
    expect(upgraded.calls).toEqual([[BASE]]); // then SHOUTED hits v2's own entry
    expect(same(v2, fingerprint(BASE, 8))).toBe(true);
    expect(next.svc.stats()).toMatchObject({ exact: { hits: 0, misses: 2 }, semantic: { hits: 1, misses: 1 } });
  });

  it('expires semantic entries after their TTL (1 h) while the exact level (24 h) still serves repeats', async () => {
    const clock = { now: 5_000_000 };
    const { embedder, svc } = build(clock);
    await svc.embed('t1', [BASE]);
    clock.now += 3600 * 1000 - 1;
    await svc.embed('t1', [SHOUTED]);
    expect(embedder.calls).toHaveLength(1);
    clock.now += 1;
    await svc.embed('t1', [PLURALS]);
    expect(embedder.calls).toEqual([[BASE], [PLURALS]]);
    await svc.embed('t1', [BASE]);
    expect(embedder.calls).toHaveLength(2);
    clock.now += 86_400 * 1000;
    await svc.embed('t1', [BASE]);
    expect(embedder.calls).toEqual([[BASE], [PLURALS], [BASE]]);
  });

  it('does not store a semantic hit under its own text: the approximation ends with the semantic TTL', async () => {
    const clock = { now: 0 };
    const { embedder, svc } = build(clock);
    await svc.embed('t1', [BASE]);
    await svc.embed('t1', [SHOUTED]);
    clock.now += 3600 * 1000;
    const [own] = await svc.embed('t1', [SHOUTED]);
    expect(embedder.calls).toEqual([[BASE], [SHOUTED]]);
    expect(same(own, fingerprint(SHOUTED, 8))).toBe(true);
  });

  it('skips the semantic level for text without features, which would all look alike', async () => {
    const { embedder, svc } = build({ now: 0 });
    await svc.embed('t1', ['?!']);
    await svc.embed('t1', ['...']);
    expect(embedder.calls).toEqual([['?!'], ['...']]);
    expect(svc.stats().semantic).toEqual({ hits: 0, misses: 0 });
  });

  it('counts per tenant and level for the usage report', async () => {
    const counters = new MemoryCacheCounters();
    const { svc } = build({ now: 0 }, { counters });
    await svc.embed('t1', [BASE, BASE]);
    await svc.embed('t1', [BASE, SHOUTED, OTHER_DB]);
    await svc.embed('t2', [BASE]);
    expect(await counters.read('t1')).toEqual({ exact: { hits: 1, misses: 3 }, semantic: { hits: 1, misses: 2 } });
    expect(await svc.cacheUsage('t2')).toEqual({
      scope: 'process',
      semanticEnabled: true,
      model: 'fingerprint-v1',
      exact: { hits: 0, misses: 1 },
      semantic: { hits: 0, misses: 1 },
    });
  });

  it('charges only what is sent to the model, refuses before calling it, and refunds a failed call', async () => {
    const meter = new FakeMeter();
    const { embedder, svc } = build({ now: 0 }, { meter });
    await svc.embed('t1', [BASE, OTHER_DB]);
    expect(meter.reserved).toEqual([countTokens(BASE) + countTokens(OTHER_DB)]);
    await svc.embed('t1', [BASE, SHOUTED]);
    expect(meter.reserved).toHaveLength(1); // exact and semantic hits are free

    meter.refuse = true;
    await expect(svc.embed('t1', ['something new entirely'])).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    expect(embedder.calls).toHaveLength(1);
    await svc.embed('t1', [BASE]); // a refused tenant is still served from the cache
    meter.refuse = false;

    embedder.embed = async () => {
      throw new AeternaError('UNAVAILABLE', 'model down');
    };
    await expect(svc.embed('t1', ['fails at the model'])).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(meter.refunded).toEqual([countTokens('fails at the model')]);
  });

  it('treats a failing semantic index as a miss', async () => {
    const broken: SemanticIndex = {
      nearest: async () => {
        throw new Error('index down');
      },
      add: async () => {
        throw new Error('index down');
      },
      close: async () => undefined,
    };
    const { embedder, svc } = build({ now: 0 }, { index: broken });
    await svc.embed('t1', [BASE]);
    await svc.embed('t1', [SHOUTED]);
    expect(embedder.calls).toHaveLength(2);
    await svc.close();
  });
});

describe('MemorySemanticIndex bounds', () => {
  const sketch = (i: number) => Int8Array.from({ length: 4 }, (_, j) => (j === i % 4 ? 100 : 1));
  const hash = (i: number) => createHash('sha256').update(String(i)).digest('hex');

  it('keeps the newest maxPerScope entries of a scope and maxEntries in all', async () => {
    const index = new MemorySemanticIndex({ ttlSec: 60, maxPerScope: 3, maxEntries: 5 });
    const a = { tenantId: 'a', model: 'm' };
    const b = { tenantId: 'b', model: 'm' };
    await index.add(a, [0, 1, 2, 3].map((i) => ({ contentHash: hash(i), sketch: sketch(i) })));
    expect(index.size).toBe(3);
    expect((await index.nearest(a, [sketch(0)], 0.99))[0]).toBeUndefined(); // the oldest went
    expect((await index.nearest(a, [sketch(3)], 0.99))[0]?.contentHash).toBe(hash(3));
    await index.add(b, [10, 11, 12].map((i) => ({ contentHash: hash(i), sketch: sketch(i) })));
    expect(index.size).toBe(5); // a, written to least recently, gave up its oldest
    expect((await index.nearest(a, [sketch(1)], 0.99))[0]).toBeUndefined();
    expect((await index.nearest(b, [sketch(10)], 0.99))[0]?.contentHash).toBe(hash(10));
  });

  it('refuses a scope that could alias another tenant', async () => {
    const index = new MemorySemanticIndex({ ttlSec: 60, maxPerScope: 3, maxEntries: 5 });
    await expect(index.nearest({ tenantId: 'a:emb:x', model: 'm' }, [], 0.98)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe.skipIf(!redisUrl)('CachingEmbeddingService on Redis (real Redis)', () => {
  const url = redisUrl ?? '';
  const tenant = `semtest-${randomUUID().slice(0, 8)}`;
  const model = `fp-${randomUUID().slice(0, 8)}:latest`;
  let raw: Redis;
  const opened: CachingEmbeddingService[] = [];

  /** One "node": its own connection to the shared Redis, as every gateway and worker has. */
  function node(clock: { now: number }, embedder = new FingerprintEmbedder(model)) {
    const cache = new RedisEmbeddingCache({ url, ttlSec: 600 });
    const svc = new CachingEmbeddingService(embedder, cache, {
      semantic: { index: cache.semanticIndex({ ttlSec: 60, maxPerScope: 16, now: () => clock.now }), threshold: 0.98 },
      counters: cache.counters(),
    });
    opened.push(svc);
    return { embedder, svc };
  }

  beforeAll(() => {
    raw = new Redis(url, { maxRetriesPerRequest: 1 });
  });

  afterAll(async () => {
    await Promise.allSettled(opened.map((s) => s.close()));
    const keys = await raw.keys(`t:${tenant}*`);
    if (keys.length > 0) await raw.del(...keys);
    await raw.quit();
  });

  it('shares both levels and the counters between nodes, every key under t:{tenant}:emb:', async () => {
    const clock = { now: Date.now() };
    const one = node(clock);
    const [base] = await one.svc.embed(tenant, [BASE]);
    await one.svc.close(); // waits for the background writes

    const two = node(clock);
    const [exact, near] = await two.svc.embed(tenant, [BASE, PLURALS]);
    expect(two.embedder.calls).toEqual([]);
    expect(same(exact, base)).toBe(true);
    expect(same(near, base)).toBe(true);
    const [other] = await two.svc.embed(tenant, [OTHER_DB]);
    expect(two.embedder.calls).toEqual([[OTHER_DB]]);
    expect(same(other, fingerprint(OTHER_DB, 8))).toBe(true);
    await two.svc.close();

    const three = node(clock);
    expect(await three.svc.cacheUsage(tenant)).toEqual({
      scope: 'cluster',
      semanticEnabled: true,
      model,
      exact: { hits: 1, misses: 3 },
      semantic: { hits: 1, misses: 2 },
    });

    const keys = (await raw.keys(`*${tenant}*`)).sort();
    expect(keys).toEqual(
      [
        `t:${tenant}:emb:counters`,
        `t:${tenant}:emb:${model}:sketches-v1`,
        `t:${tenant}:emb:${model}:${createHash('sha256').update(BASE).digest('hex')}`,
        `t:${tenant}:emb:${model}:${createHash('sha256').update(OTHER_DB).digest('hex')}`,
      ].sort(),
    );
    const pttl = await raw.pttl(`t:${tenant}:emb:${model}:sketches-v1`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
    expect(await raw.zcard(`t:${tenant}:emb:${model}:sketches-v1`)).toBe(2);
  });

  it('sees another node’s new texts once its copy of the scope is older than mirrorMs (1 s)', async () => {
    const clock = { now: Date.now() };
    const scope = `${tenant}-m`;
    const reader = node(clock);
    await reader.svc.embed(scope, [OTHER_DB]); // reads the scope's recent set and keeps a copy
    const writer = node(clock);
    await writer.svc.embed(scope, [BASE]);
    await writer.svc.close();
    await reader.svc.embed(scope, [SHOUTED]);
    expect(reader.embedder.calls).toEqual([[OTHER_DB], [SHOUTED]]); // its copy is younger than 1 s

    const vim = 'Alice prefers dark mode in the editor and uses vim keybindings for all projects';
    const another = node(clock);
    await another.svc.embed(scope, [vim]);
    await another.svc.close();
    clock.now += 1000;
    const [shoutedVim] = await reader.svc.embed(scope, [vim.toUpperCase()]);
    expect(reader.embedder.calls).toHaveLength(2);
    expect(same(shoutedVim, fingerprint(vim, 8))).toBe(true);
  });

  it('misses after the semantic TTL and for another model or tenant', async () => {
    const clock = { now: Date.now() };
    const fresh = `${tenant}-b`;
    const a = node(clock);
    await a.svc.embed(fresh, [BASE]);
    await a.svc.close();

    const otherModel = node(clock, new FingerprintEmbedder(`${model}-v2`));
    await otherModel.svc.embed(fresh, [SHOUTED]);
    expect(otherModel.embedder.calls).toEqual([[SHOUTED]]);

    const otherTenant = node(clock);
    await otherTenant.svc.embed(`${tenant}-c`, [SHOUTED]);
    expect(otherTenant.embedder.calls).toEqual([[SHOUTED]]);

    clock.now += 60_000;
    const late = node(clock);
    await late.svc.embed(fresh, [PLURALS]);
    expect(late.embedder.calls).toEqual([[PLURALS]]);
  });
});
