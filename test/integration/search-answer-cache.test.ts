import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContextApi, MemoryAnswerStore, SemanticAnswerCache, type CachedAnswer } from '../../src/cca/index.js';
import type { Memory } from '../../src/protocol/index.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';
import { requireService } from '../support/index.js';

const redisUrl = requireService('redis');

/**
 * The semantic answer cache in front of memory.search (and the fence it shares with
 * context.assemble): a same-meaning query is answered from the cache only while nothing it
 * depends on has changed, on PGlite in process and on PostgreSQL with the answers in Redis.
 */
describe.each(backends())('semantic answer cache for search (%s)', (backend) => {
  let t: TestCore;
  // Each run gets its own tenants: the database is fresh per run but Redis is not, and answers
  // left there by an earlier run must not decide this one.
  const acme = `sc-acme-${backend}-${process.pid}-${Date.now()}`;
  const globex = `sc-globex-${backend}-${process.pid}-${Date.now()}`;
  const alice = tenantCtx(acme, 'alice', ['developer']);
  const bob = tenantCtx(acme, 'bob', ['developer']);
  const add = async (ctx: typeof alice, content: string, scope: Record<string, string> = { layer: 'project', projectId: 'apollo' }) =>
    (await t.core.memory.add(ctx, { ...scope, content })).memory as Memory;
  const search = (ctx: typeof alice, query: string, extra: Record<string, unknown> = {}) =>
    t.core.search.search(ctx, { query, layers: ['project'], projectId: 'apollo', ...extra });

  beforeAll(async () => {
    t = await openTestCore(backend, backend === 'postgres' && redisUrl ? { AETERNA_REDIS_URL: redisUrl } : {});
    await add(alice, 'The billing service retries failed card payments three times before giving up.');
    await add(alice, 'Invoices are generated on the first day of every month by the billing worker.');
    await add(alice, 'The search cluster is reindexed every night at two in the morning.');
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('serves a repeated or near-identical query from the cache, with the same answer', async () => {
    const first = await search(alice, 'how does billing retry failed card payments');
    expect(first.cached).toBe(false);
    expect(first.results.length).toBeGreaterThan(0);
    const again = await search(alice, 'how does billing retry failed card payments');
    expect(again.cached).toBe(true);
    expect(again.results.map((h) => h.memory.id)).toEqual(first.results.map((h) => h.memory.id));
    const paraphrase = await search(alice, 'How does billing retry failed card payments?');
    expect(paraphrase.cached).toBe(true);
    // Other parameters are other answers.
    expect((await search(alice, 'how does billing retry failed card payments', { limit: 1 })).cached).toBe(false);
    expect((await search(alice, 'how does billing retry failed card payments', { threshold: 0.2 })).cached).toBe(false);
    expect(t.core.search.stats()).toMatchObject({ hits: expect.any(Number) as number });
    expect(t.core.search.stats()?.hits).toBeGreaterThanOrEqual(2);
  });

  it('still counts the access of a cached answer (tiering and ranking see it)', async () => {
    const first = await search(alice, 'when are invoices generated');
    const top = first.results[0]?.memory.id as string;
    const before = (await t.core.memory.get(alice, top)).accessCount;
    expect((await search(alice, 'when are invoices generated')).cached).toBe(true);
    expect((await t.core.memory.get(alice, top)).accessCount).toBe(before + 2);
  });

  it('never serves an answer past an edit or a delete of a memory it returned', async () => {
    const first = await search(alice, 'nightly reindex of the search cluster');
    const target = first.results.find((h) => h.memory.content.includes('reindexed')) as { memory: Memory };
    expect(target).toBeDefined();
    expect((await search(alice, 'nightly reindex of the search cluster')).cached).toBe(true);

    await t.core.memory.update(alice, target.memory.id, { content: 'The search cluster is reindexed every night at three in the morning.', version: target.memory.version });
    const afterEdit = await search(alice, 'nightly reindex of the search cluster');
    expect(afterEdit.cached).toBe(false);
    expect(afterEdit.results.find((h) => h.memory.id === target.memory.id)?.memory.content).toContain('three in the morning');

    expect((await search(alice, 'nightly reindex of the search cluster')).cached).toBe(true);
    await t.core.memory.delete(tenantCtx(acme, 'root', ['admin']), target.memory.id);
    const afterDelete = await search(alice, 'nightly reindex of the search cluster');
    expect(afterDelete.cached).toBe(false);
    expect(afterDelete.results.map((h) => h.memory.id)).not.toContain(target.memory.id);
  });

  it('never serves an answer past a new memory in the searched scopes, and keeps it past one elsewhere', async () => {
    const query = 'who owns the deployment pipeline';
    const before = await search(alice, query);
    expect((await search(alice, query)).cached).toBe(true);

    await add(alice, 'Team Atlas owns the deployment pipeline.', { layer: 'project', projectId: 'gemini' });
    expect((await search(alice, query)).cached).toBe(true);

    const added = await add(alice, 'Team Orion owns the deployment pipeline and its release checklist.');
    const after = await search(alice, query);
    expect(after.cached).toBe(false);
    expect(after.results.map((h) => h.memory.id)).toContain(added.id);
    expect(before.results.map((h) => h.memory.id)).not.toContain(added.id);
  });

  it("keeps users' user layers and tenants apart", async () => {
    await add(alice, 'My personal note: my billing dashboard password hint is the blue notebook.', { layer: 'user', userId: 'alice' });
    const mine = await t.core.search.search(alice, { query: 'billing dashboard password hint', layers: ['user'] });
    expect(mine.results.map((h) => h.memory.createdBy.userId)).toEqual(['alice']);
    const bobs = await t.core.search.search(bob, { query: 'billing dashboard password hint', layers: ['user'] });
    expect(bobs.cached).toBe(false);
    expect(bobs.results).toEqual([]);
    // Asking for alice's layer by name is refused before the cache is consulted.
    expect((await rejectionOf(t.core.search.search(bob, { query: 'billing dashboard password hint', layers: ['user'], userId: 'alice' }))).code).toBe('FORBIDDEN');

    // The same user name, query and scope in another tenant: acme has this answer cached, and
    // globex must not even find it (a found-but-rejected entry would count as stale).
    const other = tenantCtx(globex, 'alice', ['developer']);
    await add(other, 'Globex settles card payments by bank transfer only.', { layer: 'project', projectId: 'gemini' });
    const staleBefore = t.core.search.stats()?.stale;
    const elsewhere = await t.core.search.search(other, { query: 'how does billing retry failed card payments', layers: ['project'], projectId: 'apollo' });
    expect(elsewhere).toMatchObject({ cached: false, results: [] });
    expect(t.core.search.stats()?.stale).toBe(staleBefore);
  });

  it('validates input as search does', async () => {
    expect((await rejectionOf(t.core.search.search(alice, { query: '' }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(t.core.search.search(alice, { query: 'x', limit: 0 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(t.core.search.search(alice, { query: 'x', bogus: 1 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(t.core.search.search(tenantCtx(acme, 'nobody', []), { query: 'x' }))).code).toBe('FORBIDDEN');
  });

  it('fences context.assemble the same way: a new memory in its scopes invalidates the packed answer', async () => {
    const api = new ContextApi({ context: t.core.context, summaries: t.core.summaries, memory: t.core.memory, config: t.config.context });
    const input = { query: 'what does the release checklist contain', layers: ['project'], projectId: 'apollo', tokenBudget: 500 };
    await api.assemble(alice, input);
    expect((await api.assemble(alice, input)).cached).toBe(true);
    const added = await add(alice, 'The release checklist contains a database backup and a canary deploy.');
    const fresh = await api.assemble(alice, input);
    expect(fresh.cached).toBe(false);
    expect(fresh.used.map((u) => u.memoryId)).toContain(added.id);
  });

  it('never trusts a fence taken before the tenant had a stream (a reset database behind a surviving cache looks the same)', async () => {
    const tenant = `${globex}-unborn`;
    const cache = new SemanticAnswerCache<string>({ store: new MemoryAnswerStore<CachedAnswer<string>>(10), db: t.core.db, threshold: 0.95, ttlSec: 60, perPartition: 10 });
    const [vector] = await t.core.embeddings.embed(tenant, ['anything at all']);
    const fence = await cache.fence(tenant, [{ layer: 'project', scopeId: 'apollo' }]);
    expect(fence.epoch).toBeNull();
    await cache.set(tenant, 'p', vector as Float32Array, 'nothing found', [], fence);
    expect(await cache.get(tenant, 'p', vector as Float32Array)).toBeUndefined();
    expect(cache.stats().stale).toBe(1);
    await cache.close();
  });
});
