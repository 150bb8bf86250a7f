import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashingEmbedder } from '../../src/embed/index.js';
import { backends, openTestCore, tenantCtx, type TestCore } from '../support/backends.js';
import { requireService } from '../support/index.js';

describe.each(backends())('vector search on %s', (backend) => {
  let t: TestCore;
  beforeAll(async () => {
    t = await openTestCore(backend);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('uses pgvector HNSW where the database has pgvector, the exact scan elsewhere', async (ctx) => {
    const { capabilities } = t.core.db;
    expect(t.core.vectors.name).toBe(capabilities.pgvector ? 'pgvector-hnsw' : 'exact-scan');
    if (!capabilities.pgvector) {
      const reason = `${backend} has no pgvector extension (Debian's PostgreSQL packages ship none): HNSW index tests skipped, search ran on the exact scan`;
      console.warn(`[aeterna tests] ${reason}`);
      ctx.skip(reason);
      return;
    }
    const plan = await t.core.db.withTenant('plan', async (sql) => {
      await sql.query('SET LOCAL enable_seqscan = off');
      const v = `[${Array.from({ length: 384 }, (_, i) => (i === 1 ? 1 : 0)).join(',')}]`;
      return (
        await sql.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN SELECT id FROM memories WHERE vector_dims(embedding) = 384 AND deleted_at IS NULL
            ORDER BY (embedding::vector(384)) <=> $1::vector(384) LIMIT 5`,
          [v],
        )
      ).rows
        .map((r) => r['QUERY PLAN'])
        .join('\n');
    });
    expect(plan).toContain('memories_embedding_hnsw_384');
  });

  it('finds the nearest memories among many, in one tenant only', async () => {
    const a = tenantCtx('vec-a');
    const b = tenantCtx('vec-b');
    const topics = ['kafka consumer lag', 'react component state', 'terraform state locking', 'python packaging wheels', 'redis cluster failover'];
    for (let i = 0; i < 60; i++) {
      const topic = topics[i % topics.length] as string;
      await t.core.memory.add(a, { layer: 'project', projectId: 'p', content: `note ${i}: ${topic} observation number ${i * 17}` });
    }
    await t.core.memory.add(b, { layer: 'project', projectId: 'p', content: 'terraform state locking with dynamodb' });
    const { results } = await t.core.memory.search(a, { query: 'terraform state locking', limit: 12 });
    expect(results).toHaveLength(12);
    for (const r of results) expect(r.memory.tenantId).toBe('vec-a');
    expect(results.filter((r) => r.memory.content.includes('terraform')).length).toBe(12);
  });
});

/** A local server speaking the OpenAI embeddings wire format, backed by the hashing embedder. */
async function startEmbeddingServer(dims: number): Promise<{ url: string; requests: number; close(): Promise<void> }> {
  const model = new HashingEmbedder(dims);
  const state = { requests: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', async () => {
      state.requests++;
      const { input } = JSON.parse(body) as { input: string[] };
      const vectors = await model.embed(input);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ object: 'list', data: vectors.map((v, index) => ({ object: 'embedding', index, embedding: Array.from(v) })) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    get requests() {
      return state.requests;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('an OpenAI-compatible embedder of another dimension count', () => {
  let t: TestCore;
  let server: Awaited<ReturnType<typeof startEmbeddingServer>>;
  const redisUrl = requireService('redis');

  beforeAll(async () => {
    server = await startEmbeddingServer(64);
    t = await openTestCore('pglite', {
      AETERNA_EMBED_URL: server.url,
      AETERNA_EMBED_MODEL: 'test-embed-64',
      AETERNA_EMBED_DIMS: '64',
      ...(redisUrl ? { AETERNA_REDIS_URL: redisUrl } : {}),
    });
  });
  afterAll(async () => {
    await t?.close();
    await server?.close();
  });

  it('stores, indexes and searches its vectors, calling the model once per distinct text', async () => {
    const ctx = tenantCtx('remote-embed');
    expect(t.core.embeddings.model).toBe('test-embed-64');
    const m = await t.core.memory.add(ctx, { layer: 'team', teamId: 't', content: 'on-call rotation changes every Monday' });
    await t.core.memory.add(ctx, { layer: 'team', teamId: 't', content: 'the coffee machine is on the third floor' });
    const before = server.requests;
    const { results } = await t.core.memory.search(ctx, { query: 'on-call rotation changes every Monday' });
    expect(results[0]?.memory.id).toBe(m.memory.id);
    expect(results[0]?.similarity).toBeCloseTo(1, 4);
    // The query text equals a stored memory's: the exact-match cache answers it.
    expect(server.requests).toBe(before);
    const indexes = await t.core.db.withTenant('x', (sql) =>
      sql.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE tablename = 'memories' AND indexname LIKE 'memories_embedding_hnsw_%'"),
    );
    expect(indexes.rows.map((r) => r.indexname)).toContain('memories_embedding_hnsw_64');
  });

  it.skipIf(!redisUrl)('keeps the embedding cache in Redis under tenant-prefixed keys when Redis is configured', async () => {
    const redis = new Redis(redisUrl as string);
    try {
      const keys = await redis.keys('t:remote-embed:emb:test-embed-64:*');
      expect(keys.length).toBeGreaterThanOrEqual(2);
    } finally {
      redis.disconnect();
    }
  });
});
