import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CachingEmbeddingService,
  contentHash,
  createEmbeddingService,
  HashingEmbedder,
  MemoryEmbeddingCache,
  RedisEmbeddingCache,
  type Embedder,
  type EmbeddingCache,
  type EmbeddingCacheKey,
} from '../../src/embed/index.js';
import { requireService } from '../support/index.js';

const redisUrl = requireService('redis');
if (!redisUrl && process.env.CI === 'true') {
  throw new Error('AETERNA_TEST_REDIS_URL is empty in CI: the RedisEmbeddingCache tests must run there, not skip.');
}

/** Our own Embedder interface, counting what reaches the "model". */
class CountingEmbedder implements Embedder {
  readonly calls: string[][] = [];
  constructor(
    readonly model = 'counting-v1',
    readonly dims = 3,
  ) {}
  /** [1, length of the text, 0, …] normalised, so a result shows which text it came from. */
  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.calls.push([...texts]);
    return texts.map((t) => {
      const v = new Float32Array(this.dims);
      v[0] = 1 / Math.hypot(1, t.length);
      v[1] = t.length / Math.hypot(1, t.length);
      return v;
    });
  }
}

/** Which text a CountingEmbedder vector was made from, by its length. */
const lengthOf = (v: Float32Array | undefined): number => Math.round((v?.[1] ?? 0) / (v?.[0] ?? 1));

function key(tenantId: string, text: string, model = 'm1'): EmbeddingCacheKey {
  return { tenantId, model, contentHash: contentHash(text) };
}

const vec = (...xs: number[]) => Float32Array.from(xs);

describe('MemoryEmbeddingCache', () => {
  it('returns what was stored, as a copy the caller cannot corrupt', async () => {
    const cache = new MemoryEmbeddingCache({ maxEntries: 10, ttlSec: 60 });
    const stored = vec(1, 2, 3);
    await cache.set(key('t1', 'a'), stored);
    stored[0] = 99;
    const first = await cache.get(key('t1', 'a'));
    expect(Array.from(first ?? [])).toEqual([1, 2, 3]);
    first?.fill(0);
    expect(Array.from((await cache.get(key('t1', 'a'))) ?? [])).toEqual([1, 2, 3]);
  });

  it('keeps tenants and models apart', async () => {
    const cache = new MemoryEmbeddingCache({ maxEntries: 10, ttlSec: 60 });
    await cache.set(key('t1', 'a', 'm1'), vec(1));
    expect(await cache.get(key('t2', 'a', 'm1'))).toBeUndefined();
    expect(await cache.get(key('t1', 'a', 'm2'))).toBeUndefined();
    expect(await cache.get(key('t1', 'b', 'm1'))).toBeUndefined();
    expect(await cache.get(key('t1', 'a', 'm1'))).toBeDefined();
  });

  it('evicts the least recently used entry, counting reads as use', async () => {
    const cache = new MemoryEmbeddingCache({ maxEntries: 2, ttlSec: 60 });
    await cache.set(key('t', 'a'), vec(1));
    await cache.set(key('t', 'b'), vec(2));
    expect(await cache.get(key('t', 'a'))).toBeDefined(); // a is now the most recent
    await cache.set(key('t', 'c'), vec(3));
    expect(cache.size).toBe(2);
    expect(await cache.get(key('t', 'b'))).toBeUndefined();
    expect(await cache.get(key('t', 'a'))).toBeDefined();
    expect(await cache.get(key('t', 'c'))).toBeDefined();
  });

  it('expires entries after ttlSec', async () => {
    let now = 1_000_000;
    const cache = new MemoryEmbeddingCache({ maxEntries: 10, ttlSec: 30, now: () => now });
    await cache.set(key('t', 'a'), vec(1));
    now += 29_999;
    expect(await cache.get(key('t', 'a'))).toBeDefined();
    now += 1;
    expect(await cache.get(key('t', 'a'))).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('stores nothing when maxEntries is 0', async () => {
    const cache = new MemoryEmbeddingCache({ maxEntries: 0, ttlSec: 30 });
    await cache.set(key('t', 'a'), vec(1));
    expect(await cache.get(key('t', 'a'))).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('refuses keys that could alias another tenant', async () => {
    const cache = new MemoryEmbeddingCache({ maxEntries: 10, ttlSec: 30 });
    await expect(cache.get(key('a:emb:x', 'a'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(cache.get({ tenantId: 't', model: 'm', contentHash: 'abc' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('CachingEmbeddingService', () => {
  function service(embedder = new CountingEmbedder(), cache: EmbeddingCache = new MemoryEmbeddingCache({ maxEntries: 100, ttlSec: 60 })) {
    return { embedder, cache, svc: new CachingEmbeddingService(embedder, cache) };
  }

  it('calls the model once per call, only for distinct misses, and returns input order', async () => {
    const { embedder, svc } = service();
    const first = await svc.embed('t1', ['aa', 'b', 'aa', 'cccc']);
    expect(embedder.calls).toEqual([['aa', 'b', 'cccc']]);
    expect(first.map(lengthOf)).toEqual([2, 1, 2, 4]);
    expect(first[0]).not.toBe(first[2]); // duplicates are independent copies
    expect(svc.stats()).toMatchObject({ hits: 0, misses: 3 });

    const second = await svc.embed('t1', ['cccc', 'dd', 'aa']);
    expect(embedder.calls).toEqual([['aa', 'b', 'cccc'], ['dd']]);
    expect(second.map(lengthOf)).toEqual([4, 2, 2]);
    expect(Array.from(second[0] ?? [])).toEqual(Array.from(first[3] ?? []));
    expect(svc.stats()).toMatchObject({ hits: 2, misses: 4 });

    await svc.embed('t1', ['aa', 'b']);
    expect(embedder.calls).toHaveLength(2);
    expect(svc.stats()).toEqual({ hits: 4, misses: 4, exact: { hits: 4, misses: 4 }, semantic: { hits: 0, misses: 0 } });
    expect(await svc.embed('t1', [])).toEqual([]);
    expect(embedder.calls).toHaveLength(2);
  });

  it('keys and embeds the normalised text: NFC, LF line ends, trimmed; case and inner spacing still count', async () => {
    const { embedder, svc } = service();
    await svc.embed('t1', ['  Cafe\u0301 menu\r\nline two \n']);
    expect(embedder.calls).toEqual([['Caf\u00e9 menu\nline two']]);
    await svc.embed('t1', ['Caf\u00e9 menu\nline two', '\tCafe\u0301 menu\rline two']);
    expect(embedder.calls).toHaveLength(1);
    await svc.embed('t1', ['caf\u00e9 menu\nline two', 'Caf\u00e9  menu\nline two']);
    expect(embedder.calls[1]).toEqual(['caf\u00e9 menu\nline two', 'Caf\u00e9  menu\nline two']);
    // Whitespace alone is sent as it is (providers may refuse an empty input).
    await svc.embed('t1', ['   ']);
    expect(embedder.calls[2]).toEqual(['   ']);
  });

  it('misses for another tenant and for another model over the same cache', async () => {
    const cache = new MemoryEmbeddingCache({ maxEntries: 100, ttlSec: 60 });
    const a = service(new CountingEmbedder('model-a'), cache);
    await a.svc.embed('t1', ['hello']);
    await a.svc.embed('t2', ['hello']);
    expect(a.embedder.calls).toEqual([['hello'], ['hello']]);

    const b = service(new CountingEmbedder('model-b'), cache);
    await b.svc.embed('t1', ['hello']);
    expect(b.embedder.calls).toEqual([['hello']]);
    expect(b.svc.stats()).toMatchObject({ hits: 0, misses: 1 });
  });

  it('treats a failing or wrong-sized cache as a miss and still embeds', async () => {
    const broken: EmbeddingCache = {
      get: async () => {
        throw new Error('cache down');
      },
      set: async () => {
        throw new Error('cache down');
      },
      close: async () => undefined,
    };
    const first = service(new CountingEmbedder(), broken);
    expect(await first.svc.embed('t1', ['x'])).toHaveLength(1);
    await first.svc.close();

    const wrongSize: EmbeddingCache = { get: async () => vec(1, 0), set: async () => undefined, close: async () => undefined };
    const second = service(new CountingEmbedder(), wrongSize);
    const [v] = await second.svc.embed('t1', ['x']);
    expect(v).toHaveLength(3);
    expect(second.embedder.calls).toEqual([['x']]);
  });

  it('rejects an invalid tenant id before touching cache or model', async () => {
    const { embedder, svc } = service();
    await expect(svc.embed('bad tenant:*', ['x'])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(embedder.calls).toHaveLength(0);
  });

  it('propagates a model failure', async () => {
    const failing = new CountingEmbedder();
    failing.embed = async () => {
      throw new Error('model down');
    };
    const { svc } = service(failing);
    await expect(svc.embed('t1', ['x'])).rejects.toThrow('model down');
  });

  it('is built from config: hashing embedder with an in-memory cache when there is no Redis', async () => {
    const svc = createEmbeddingService({ embedder: { kind: 'hashing', dims: 64 }, embedCache: { entries: 10, ttlSec: 60 } });
    expect(svc.model).toBe('aeterna-hash-v1-64');
    expect(svc.dims).toBe(64);
    await svc.embed('t1', ['hello world']);
    await svc.embed('t1', ['hello world']);
    expect(svc.stats()).toMatchObject({ hits: 1, misses: 1 });
    await svc.close();

    const remote = createEmbeddingService({
      embedder: { kind: 'openai', url: 'http://127.0.0.1:1/v1', model: 'nomic-embed-text', dims: 768, timeoutMs: 1_000 },
      embedCache: { entries: 10, ttlSec: 60 },
    });
    expect(remote.model).toBe('nomic-embed-text');
    expect(remote.dims).toBe(768);
    // The semantic level is for billable models only; the hashing embedder is its own sketch.
    expect(await remote.cacheUsage('t1')).toMatchObject({ scope: 'process', semanticEnabled: false });
    await remote.close();
    const withSemantic = createEmbeddingService({
      embedder: { kind: 'openai', url: 'http://127.0.0.1:1/v1', model: 'nomic-embed-text', dims: 768, timeoutMs: 1_000 },
      embedCache: { entries: 10, ttlSec: 60, semantic: { entries: 8, ttlSec: 60, threshold: 0.98 } },
    });
    expect(await withSemantic.cacheUsage('t1')).toMatchObject({ scope: 'process', semanticEnabled: true, model: 'nomic-embed-text' });
    await withSemantic.close();
    const hashing = createEmbeddingService({
      embedder: { kind: 'hashing', dims: 64 },
      embedCache: { entries: 10, ttlSec: 60, semantic: { entries: 8, ttlSec: 60, threshold: 0.98 } },
    });
    expect(await hashing.cacheUsage('t1')).toMatchObject({ semanticEnabled: false });
    await hashing.close();
  });
});

describe.skipIf(!redisUrl)('RedisEmbeddingCache (real Redis)', () => {
  const url = redisUrl ?? '';
  // A fresh tenant per run so parallel runs and other suites never see each other's keys.
  const tenant = `embtest-${randomUUID().slice(0, 8)}`;
  let raw: Redis;
  let cache: RedisEmbeddingCache;

  beforeAll(() => {
    raw = new Redis(url, { maxRetriesPerRequest: 1 });
    cache = new RedisEmbeddingCache({ url, ttlSec: 120 });
  });

  afterAll(async () => {
    const keys = await raw.keys(`t:${tenant}*`);
    if (keys.length > 0) await raw.del(...keys);
    await cache.close();
    await raw.quit();
  });

  it('stores float32 little-endian bytes under t:{tenant}:emb:{model}:{hash} with a TTL', async () => {
    const k = { tenantId: tenant, model: 'nomic-embed-text:latest', contentHash: contentHash('hello') };
    const v = vec(0.5, -0.25, 1e-3);
    await cache.set(k, v);

    const redisKey = `t:${tenant}:emb:nomic-embed-text:latest:${contentHash('hello')}`;
    expect(await raw.keys(`t:${tenant}:*`)).toEqual([redisKey]);
    const bytes = await raw.getBuffer(redisKey);
    expect(bytes?.length).toBe(12);
    expect([bytes?.readFloatLE(0), bytes?.readFloatLE(4), bytes?.readFloatLE(8)]).toEqual(Array.from(v));
    const ttl = await raw.ttl(redisKey);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(120);

    expect(Array.from((await cache.get(k)) ?? [])).toEqual(Array.from(v));
    expect(await cache.get({ ...k, tenantId: `${tenant}-other` })).toBeUndefined();
    expect(await cache.get({ ...k, model: 'other-model' })).toBeUndefined();
  });

  it('treats a corrupt value as a miss', async () => {
    const k = { tenantId: tenant, model: 'm', contentHash: contentHash('corrupt') };
    await raw.set(`t:${tenant}:emb:m:${k.contentHash}`, 'abc');
    expect(await cache.get(k)).toBeUndefined();
  });

  it('serves CachingEmbeddingService across instances, as it would across nodes', async () => {
    const embedder = new HashingEmbedder(32);
    const one = new CachingEmbeddingService(embedder, new RedisEmbeddingCache({ url, ttlSec: 60 }));
    const [first] = await one.embed(tenant, ['shared across nodes']);
    await one.close(); // waits for the background cache write

    const counting = new CountingEmbedder(embedder.model, embedder.dims);
    const two = new CachingEmbeddingService(counting, new RedisEmbeddingCache({ url, ttlSec: 60 }));
    const [second] = await two.embed(tenant, ['shared across nodes']);
    expect(counting.calls).toHaveLength(0);
    expect(Array.from(second ?? [])).toEqual(Array.from(first ?? []));
    expect(two.stats()).toMatchObject({ hits: 1, misses: 0 });
    await two.close();
  });
});

describe('RedisEmbeddingCache (unreachable Redis)', () => {
  it('answers get with a miss and swallows set, then closes cleanly', async () => {
    const cache = new RedisEmbeddingCache({ url: 'redis://127.0.0.1:1', ttlSec: 60 });
    const k = key('t1', 'a');
    await expect(cache.set(k, vec(1, 2))).resolves.toBeUndefined();
    await expect(cache.get(k)).resolves.toBeUndefined();
    expect(cache.errors).toBeGreaterThan(0);
    await cache.close();
  });

  it('never makes an embed fail', async () => {
    const svc = new CachingEmbeddingService(new HashingEmbedder(16), new RedisEmbeddingCache({ url: 'redis://127.0.0.1:1', ttlSec: 60 }));
    const [v] = await svc.embed('t1', ['still works']);
    expect(v).toHaveLength(16);
    expect(svc.stats()).toMatchObject({ hits: 0, misses: 1 });
    await svc.close();
  });
});
