import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContextArchitect, createContextServices, type ContextServices } from '../../src/cca/index.js';
import { JOBS_ACTOR } from '../../src/jobs/index.js';
import { countTokens } from '../../src/obs/index.js';
import type { ContextAssembleResult, Memory } from '../../src/protocol/index.js';
import { backends, rejectionOf, tenantCtx } from '../support/backends.js';
import { requireService } from '../support/index.js';
import { MarkedSummarizer, openContextFixture, summariesWith, type ContextFixture } from './context-support.js';

const dev = tenantCtx('acme', 'alice', ['developer']);
const bob = tenantCtx('acme', 'bob', ['developer']);
const admin = tenantCtx('acme', 'root', ['admin']);

/** ~900 tokens: longer than every summary cap. */
function longText(topic: string): string {
  return Array.from({ length: 40 }, (_, i) => `Finding ${i} about ${topic}: the ${['cache', 'queue', 'index', 'shard'][i % 4]} step of job ${i % 9} needs a review.`).join(' ');
}

describe.each(backends())('context.assemble on %s', (backend) => {
  let f: ContextFixture;
  let migration: Memory;
  let invoices: Memory;
  let secret: Memory;

  const assemble = (ctx = dev, input: Record<string, unknown> = {}) => f.api.assemble(ctx, { query: 'billing database migration', ...input });

  beforeAll(async () => {
    f = await openContextFixture(backend);
    const add = async (ctx: typeof dev, input: Record<string, unknown>) => (await f.t.core.memory.add(ctx, input)).memory;
    migration = await add(dev, { layer: 'project', projectId: 'apollo', content: `The billing database migration to PostgreSQL 16 is done. ${longText('billing database migration')}` });
    invoices = await add(dev, { layer: 'project', projectId: 'apollo', content: 'Billing invoices are generated nightly from the billing database.' });
    await add(dev, { layer: 'team', teamId: 'infra', content: 'The Kubernetes cluster upgrade to 1.30 is planned for May.' });
    secret = await add(dev, { layer: 'user', content: "Alice's own note: the billing database migration password hint is the dog's name." });
  }, 60_000);
  afterAll(async () => {
    await f?.close();
  });

  it('packs the most relevant memories first, at the level their relevance earns, within the budget', async () => {
    const exact = await assemble(dev, { query: migration.content, tokenBudget: 4000 });
    expect(exact.cached).toBe(false);
    expect(exact.budget).toBe(4000);
    expect(exact.tokens).toBe(countTokens(exact.context));
    expect(exact.tokens).toBeLessThanOrEqual(4000);
    const [first] = exact.used;
    expect(first).toMatchObject({ memoryId: migration.id, level: 'detailed', relevance: 1 });
    expect(exact.context.startsWith('[1] project:apollo\nThe billing database migration to PostgreSQL 16 is done.')).toBe(true);
    for (let i = 1; i < exact.used.length; i++) expect(exact.used[i]!.relevance).toBeLessThanOrEqual(exact.used[i - 1]!.relevance);
    for (const u of exact.used) {
      const expected = u.relevance > 0.9 ? 'detailed' : u.relevance >= 0.7 ? 'paragraph' : 'sentence';
      expect(u.level).toBe(expected);
    }
    // The unrelated memory is below the relevance floor.
    expect(exact.context).not.toContain('Kubernetes');
  });

  it('never exceeds a small budget: shorter levels first, then fewer memories', async () => {
    for (const tokenBudget of [100, 150, 400]) {
      const res = await assemble(dev, { query: migration.content, tokenBudget });
      expect(res.tokens).toBeLessThanOrEqual(tokenBudget);
      expect(res.used.length).toBeGreaterThan(0);
      expect(res.used.find((u) => u.memoryId === migration.id)?.level).not.toBe('detailed');
    }
  });

  it('uses stored summaries where the job has run and makes the others on the fly', async () => {
    const marked = new MarkedSummarizer();
    await summariesWith(f, marked).summarizeMemory('acme', migration.id, { actor: JOBS_ACTOR });
    const res = await assemble(dev, { query: migration.content, tokenBudget: 4000 });
    expect(res.cached).toBe(false);
    expect(res.context).toContain(`D(${migration.content.slice(0, 20)})`);
    // The invoices memory has no stored summary: it fits every cap, so it is its own summary.
    expect(res.context).toContain(invoices.content);
  });

  it('serves a repeated or near-identical query from the cache, and another query not', async () => {
    const first = await assemble(dev, { query: 'How did the billing database migration go?' });
    const again = await assemble(dev, { query: 'How did the billing database migration go?' });
    const near = await assemble(dev, { query: 'how did the Billing Database migration go' });
    const other = await assemble(dev, { query: 'kubernetes cluster upgrade' });
    expect(first.cached).toBe(false);
    expect(again).toEqual({ ...first, cached: true });
    expect(near).toEqual({ ...first, cached: true });
    expect(other.cached).toBe(false);
    // Another budget is another answer.
    expect((await assemble(dev, { query: 'How did the billing database migration go?', tokenBudget: 500 })).cached).toBe(false);
  });

  it('never serves a cached answer after one of its sources was edited', async () => {
    const { memory } = await f.t.core.memory.add(dev, { layer: 'project', projectId: 'hermes', content: 'Hermes release train leaves every Tuesday at noon.' });
    const query = { query: 'hermes release train', projectId: 'hermes', layers: ['project'] };
    const before = await assemble(dev, query);
    expect(before.context).toContain('Tuesday');
    expect((await assemble(dev, query)).cached).toBe(true);
    await f.t.core.memory.update(dev, memory.id, { version: memory.version, content: 'Hermes release train leaves every Thursday at noon.' });
    const after = await assemble(dev, query);
    expect(after.cached).toBe(false);
    expect(after.context).toContain('Thursday');
    expect(after.context).not.toContain('Tuesday');
    expect((await assemble(dev, query)).cached).toBe(true);
  });

  it('never serves a cached answer after one of its sources was deleted', async () => {
    const keep = (await f.t.core.memory.add(dev, { layer: 'project', projectId: 'iris', content: 'Iris dashboards load from the metrics warehouse.' })).memory;
    const drop = (await f.t.core.memory.add(dev, { layer: 'project', projectId: 'iris', content: 'Iris dashboards cache queries for five minutes.' })).memory;
    const query = { query: 'iris dashboards', projectId: 'iris', layers: ['project'] };
    const before = await assemble(dev, query);
    expect(before.used.map((u) => u.memoryId).sort()).toEqual([keep.id, drop.id].sort());
    expect((await assemble(dev, query)).cached).toBe(true);
    await f.t.core.memory.delete(admin, drop.id);
    const after = await assemble(dev, query);
    expect(after.cached).toBe(false);
    expect(after.used.map((u) => u.memoryId)).toEqual([keep.id]);
    expect(after.context).not.toContain('five minutes');
  });

  it('drops a cached answer built from summaries made on the fly once stored ones arrive', async () => {
    const long = (await f.t.core.memory.add(dev, { layer: 'project', projectId: 'juno', content: longText('juno telemetry') })).memory;
    const query = { query: 'juno telemetry', projectId: 'juno', layers: ['project'] };
    expect((await assemble(dev, query)).cached).toBe(false);
    expect((await assemble(dev, query)).cached).toBe(true);
    await summariesWith(f, new MarkedSummarizer()).summarizeMemory('acme', long.id, { actor: JOBS_ACTOR });
    const after = await assemble(dev, query);
    expect(after.cached).toBe(false);
    expect(after.context).toContain(`(${long.content.slice(0, 20)})`);
  });

  it("never serves one user's answer to another who may not read its sources", async () => {
    const query = { query: secret.content, layers: ['user', 'project'] };
    const alice = await assemble(dev, query);
    expect(alice.used[0]).toMatchObject({ memoryId: secret.id, relevance: 1 });
    expect((await assemble(dev, query)).cached).toBe(true);
    const other = await assemble(bob, query);
    expect(other.cached).toBe(false);
    expect(other.used.map((u) => u.memoryId)).not.toContain(secret.id);
    expect(other.context).not.toContain('password');
    // An admin reads every user layer: its own partition, with the memory in it.
    const root = await assemble(admin, query);
    expect(root.cached).toBe(false);
    expect(root.used.map((u) => u.memoryId)).toContain(secret.id);
  });

  it('checks roles and input before anything is looked up', async () => {
    expect((await rejectionOf(assemble(tenantCtx('acme', 'nobody', [])))).code).toBe('FORBIDDEN');
    expect((await rejectionOf(assemble(bob, { layers: ['user'], userId: 'alice' }))).code).toBe('FORBIDDEN');
    const viewer = await assemble(tenantCtx('acme', 'val', ['viewer']));
    expect(viewer.used.length).toBeGreaterThan(0);
    for (const [input, field] of [
      [{ tokenBudget: 99 }, 'tokenBudget'],
      [{ tokenBudget: 32_001 }, 'tokenBudget'],
      [{ tokenBudget: 1.5 }, 'tokenBudget'],
      [{ query: '' }, 'query'],
      [{ layers: ['galaxy'] }, 'layers.0'],
      [{ budget: 100 }, '(root)'],
    ] as const) {
      const err = await rejectionOf(assemble(dev, input));
      expect(err.code, JSON.stringify(input)).toBe('INVALID_ARGUMENT');
      expect((err.details?.['issues'] as { path: string }[])[0]?.path, JSON.stringify(input)).toBe(field);
    }
    expect((await rejectionOf(f.api.assemble(dev, undefined))).code).toBe('INVALID_ARGUMENT');
  });

  it('works without the cache: every answer is computed', async () => {
    const uncached = new ContextArchitect({ memory: f.t.core.memory, embeddings: f.t.core.embeddings, summaries: f.services.summaries, config: f.t.config.context });
    const input = { query: 'billing', tokenBudget: 1000 };
    const a = await uncached.assemble(dev, input);
    const b = await uncached.assemble(dev, input);
    expect([a.cached, b.cached]).toEqual([false, false]);
    expect(b).toEqual(a);
    expect(uncached.stats()).toEqual({ assembled: 2, cache: null });
  });

  it('counts hits and misses', () => {
    const { cache, assembled } = f.services.context.stats();
    expect(assembled).toBeGreaterThan(10);
    expect(cache?.hits).toBeGreaterThanOrEqual(7);
    expect(cache?.stale).toBeGreaterThanOrEqual(3);
    expect(cache?.misses).toBeGreaterThan(cache?.stale ?? 0);
  });

  const redisUrl = requireService('redis');
  describe.skipIf(!redisUrl)('with the answer cache in Redis', () => {
    let nodeA: ContextServices;
    let nodeB: ContextServices;
    let redis: Redis;
    // The dev Redis is shared: a tenant of its own keeps this run's keys apart.
    const tenant = `ctx-${backend}-${process.pid}-${Date.now()}`;
    const user = tenantCtx(tenant, 'alice', ['admin']);

    beforeAll(() => {
      const open = () =>
        createContextServices({
          config: { ...f.t.config, redisUrl: redisUrl as string },
          db: f.t.core.db,
          memory: f.t.core.memory,
          embeddings: f.t.core.embeddings,
          llm: undefined,
        });
      nodeA = open();
      nodeB = open();
      redis = new Redis(redisUrl as string);
    });
    afterAll(async () => {
      const keys = await redis.keys(`t:${tenant}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await Promise.all([nodeA?.close(), nodeB?.close()]);
      redis.disconnect();
    });

    it('shares answers between nodes under tenant-prefixed keys with a TTL, and an edit on one node invalidates them on all', async () => {
      const { memory } = await f.t.core.memory.add(user, { layer: 'org', orgId: 'o', content: 'The quarterly planning offsite is in Lisbon this year.' });
      const input = { query: 'quarterly planning offsite', tokenBudget: 1000 };
      const miss: ContextAssembleResult = await nodeA.context.assemble(user, input);
      expect(miss.cached).toBe(false);
      const hit = await nodeB.context.assemble(user, input);
      expect(hit).toEqual({ ...miss, cached: true });

      const keys = await redis.keys(`t:${tenant}:*`);
      expect(keys.length).toBe(2);
      for (const key of keys) {
        expect(key.startsWith(`t:${tenant}:answers:context.`)).toBe(true);
        expect(await redis.ttl(key)).toBeGreaterThan(0);
      }

      await f.t.core.memory.update(user, memory.id, { version: memory.version, content: 'The quarterly planning offsite moved to Porto.' });
      const after = await nodeA.context.assemble(user, input);
      expect(after.cached).toBe(false);
      expect(after.context).toContain('Porto');
      expect(nodeA.context.stats().cache).toMatchObject({ stale: 1 });
      expect(await nodeB.context.assemble(user, input)).toEqual({ ...after, cached: true });
    });
  });
});
