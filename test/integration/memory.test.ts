import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryService } from '../../src/memory/index.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';

describe.each(backends())('MemoryService on %s', (backend) => {
  let t: TestCore;
  let memory: MemoryService;
  let n = 0;
  /** A fresh tenant per test: no test sees another's rows or seqs. */
  const tenant = (roles: ('viewer' | 'developer' | 'admin')[] = ['developer'], userId = 'alice') =>
    tenantCtx(`${backend}-t${++n}`, userId, roles);

  beforeAll(async () => {
    t = await openTestCore(backend);
    memory = t.core.memory;
  });
  afterAll(async () => {
    await t?.close();
  });

  describe('add', () => {
    it('stores a memory and appends memory.added to the event log', async () => {
      const ctx = tenant();
      const { memory: m, deduplicated } = await memory.add(ctx, {
        layer: 'project',
        projectId: 'apollo',
        content: 'The deploy pipeline uses GitHub Actions for CI',
        tags: ['ci', 'deploy'],
        metadata: { source: 'chat' },
        importance: 0.7,
      });
      expect(deduplicated).toBe(false);
      expect(m).toMatchObject({ layer: 'project', scopeId: 'apollo', version: 1, tags: ['ci', 'deploy'], importance: 0.7 });
      expect(m.createdBy).toEqual({ userId: 'alice' });
      const page = await memory.events(ctx, {});
      expect(page.events.map((e) => [e.seq, e.type])).toEqual([[1, 'memory.added']]);
      expect(page.events[0]).toMatchObject({ tenantId: ctx.tenantId, actor: { userId: 'alice' }, data: { memory: { id: m.id } } });
    });

    it('fills the agent, user and session scopes from the token', async () => {
      const ctx = { ...tenant(), agentId: 'planner', sessionId: 's1' };
      const agent = await memory.add(ctx, { layer: 'agent', content: 'agent note' });
      const user = await memory.add(ctx, { layer: 'user', content: 'user note' });
      const session = await memory.add(ctx, { layer: 'session', content: 'session note' });
      expect([agent.memory.scopeId, user.memory.scopeId, session.memory.scopeId]).toEqual(['planner', 'alice', 's1']);
    });

    it.each([
      ['project', 'projectId'],
      ['team', 'teamId'],
      ['org', 'orgId'],
      ['company', 'companyId'],
      ['agent', 'agentId'],
      ['session', 'sessionId'],
    ])('refuses layer %s without %s, naming the field', async (layer, field) => {
      const err = await rejectionOf(memory.add(tenant(), { layer, content: 'x' }));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(field);
      expect(err.details).toEqual({ field });
    });

    it('rejects bad input and writes nothing', async () => {
      const ctx = tenant();
      const cases: [unknown, string][] = [
        [{ layer: 'galaxy', projectId: 'p', content: 'x' }, 'INVALID_ARGUMENT'],
        [{ layer: 'project', projectId: 'p', content: 42 }, 'INVALID_ARGUMENT'],
        [{ layer: 'project', projectId: 'p', content: '' }, 'INVALID_ARGUMENT'],
        [{ layer: 'project', projectId: "p'; DROP TABLE memories; --", content: 'x' }, 'INVALID_ARGUMENT'],
        [{ layer: 'project', projectId: 'p', content: 'x', projectID: 'typo' }, 'INVALID_ARGUMENT'],
        [{ layer: 'project', projectId: 'p', content: 'x', importance: 2 }, 'INVALID_ARGUMENT'],
        [{ layer: 'project', projectId: 'p', content: 'x', tags: ['has space'] }, 'INVALID_ARGUMENT'],
        [{ layer: 'project', projectId: 'p', content: 'x'.repeat(64 * 1024 + 1) }, 'PAYLOAD_TOO_LARGE'],
        [null, 'INVALID_ARGUMENT'],
        ['a string', 'INVALID_ARGUMENT'],
      ];
      for (const [input, code] of cases) {
        expect((await rejectionOf(memory.add(ctx, input))).code, JSON.stringify(input)?.slice(0, 80)).toBe(code);
      }
      expect((await memory.list(ctx, {})).items).toEqual([]);
      expect((await memory.events(ctx, {})).events).toEqual([]);
    });

    it('accepts content exactly at the byte cap, counting UTF-8 bytes', async () => {
      const ctx = tenant();
      const ok = await memory.add(ctx, { layer: 'project', projectId: 'p', content: 'é'.repeat(32 * 1024) });
      expect(ok.memory.content.length).toBe(32 * 1024);
      const err = await rejectionOf(memory.add(ctx, { layer: 'project', projectId: 'p', content: 'é'.repeat(32 * 1024) + 'x' }));
      expect(err.code).toBe('PAYLOAD_TOO_LARGE');
    });

    it('deduplicates an exact and a near-identical add into the existing memory', async () => {
      const ctx = tenant();
      const text = 'Our staging database runs PostgreSQL 15 on a dedicated host in the Frankfurt region with nightly backups';
      const first = await memory.add(ctx, { layer: 'project', projectId: 'p', content: text, tags: ['db'] });
      const again = await memory.add(ctx, { layer: 'project', projectId: 'p', content: text });
      expect(again).toMatchObject({ deduplicated: true, duplicateOf: first.memory.id, similarity: 1 });
      expect(again.memory.version).toBe(1); // nothing changed, nothing written

      // Near-verbatim: case, punctuation and a plural differ; the facts do not.
      const repeat = `${text.toLowerCase().replace('backups', 'backup')}.`;
      const near = await memory.add(ctx, { layer: 'project', projectId: 'p', content: repeat, tags: ['ops'] });
      expect(near.deduplicated).toBe(true);
      expect(near.duplicateOf).toBe(first.memory.id);
      expect(near.similarity).toBeGreaterThanOrEqual(0.95);
      expect(near.memory).toMatchObject({ version: 2, content: repeat });

      // One changed word is a different fact (Frankfurt vs Dublin): it must not overwrite the first.
      const changed = await memory.add(ctx, { layer: 'project', projectId: 'p', content: text.replace('Frankfurt', 'Dublin') });
      expect(changed.deduplicated).toBe(false);
      expect(near.memory.tags.sort()).toEqual(['db', 'ops']);

      const other = await memory.add(ctx, { layer: 'project', projectId: 'other', content: text });
      expect(other.deduplicated).toBe(false);
      expect((await memory.list(ctx, {})).items).toHaveLength(3);
      expect((await memory.events(ctx, {})).events.map((e) => e.type)).toEqual(['memory.added', 'memory.updated', 'memory.added', 'memory.added']);
    });
  });

  describe('get and list', () => {
    it('gets a memory and counts the access', async () => {
      const ctx = tenant();
      const { memory: m } = await memory.add(ctx, { layer: 'team', teamId: 'core', content: 'standup at 9' });
      const got = await memory.get(ctx, m.id);
      expect(got).toMatchObject({ id: m.id, content: 'standup at 9', accessCount: 1 });
      expect(got.lastAccessedAt).not.toBeNull();
      expect((await memory.get(ctx, m.id)).accessCount).toBe(2);
    });

    it('answers NOT_FOUND for unknown ids and INVALID_ARGUMENT for malformed ones', async () => {
      const ctx = tenant();
      expect((await rejectionOf(memory.get(ctx, '0190c0de-0000-7000-8000-000000000000'))).code).toBe('NOT_FOUND');
      expect((await rejectionOf(memory.get(ctx, 'not-a-uuid'))).code).toBe('INVALID_ARGUMENT');
    });

    it('pages through every memory exactly once, newest first', async () => {
      const ctx = tenant();
      const ids: string[] = [];
      for (let i = 0; i < 25; i++) {
        ids.push((await memory.add(ctx, { layer: 'project', projectId: 'p', content: `distinct fact number ${i} about ${i * 7919}` })).memory.id);
      }
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await memory.list(ctx, { layer: 'project', projectId: 'p', limit: '10', ...(cursor ? { cursor } : {}) });
        seen.push(...page.items.map((m) => m.id));
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual([...ids].reverse());
    });

    it('filters by layer, scope and tags, and rejects bad filters', async () => {
      const ctx = tenant();
      await memory.add(ctx, { layer: 'project', projectId: 'a', content: 'alpha one', tags: ['x', 'y'] });
      await memory.add(ctx, { layer: 'project', projectId: 'b', content: 'beta two', tags: ['x'] });
      await memory.add(ctx, { layer: 'team', teamId: 't', content: 'gamma three', tags: ['y'] });
      const contents = async (q: Record<string, string>) => (await memory.list(ctx, q)).items.map((m) => m.content).sort();
      expect(await contents({ layer: 'project' })).toEqual(['alpha one', 'beta two']);
      expect(await contents({ layer: 'project', projectId: 'b' })).toEqual(['beta two']);
      expect(await contents({ tags: 'y' })).toEqual(['alpha one', 'gamma three']);
      expect(await contents({ tags: 'x,y' })).toEqual(['alpha one']);
      for (const bad of [{ layer: 'nope' }, { limit: '0' }, { limit: '101' }, { cursor: '!!!' }, { unknown: '1' }]) {
        expect((await rejectionOf(memory.list(ctx, bad))).code, JSON.stringify(bad)).toBe('INVALID_ARGUMENT');
      }
    });
  });

  describe('search', () => {
    it('finds a paraphrase with shared words first, and honours the threshold', async () => {
      const ctx = tenant();
      const target = await memory.add(ctx, { layer: 'project', projectId: 'p', content: 'The deploy pipeline uses GitHub Actions for CI' });
      await memory.add(ctx, { layer: 'project', projectId: 'p', content: 'Alice prefers dark mode in the editor' });
      await memory.add(ctx, { layer: 'project', projectId: 'p', content: 'Lunch is served at noon on Fridays' });
      const { results } = await memory.search(ctx, { query: 'which CI does the deploy pipeline use' });
      expect(results[0]?.memory.id).toBe(target.memory.id);
      expect(results[0]?.similarity).toBeGreaterThan(results[1]?.similarity ?? 0);

      const strict = await memory.search(ctx, { query: 'which CI does the deploy pipeline use', threshold: 0.99 });
      expect(strict.results).toEqual([]);
      const exact = await memory.search(ctx, { query: 'The deploy pipeline uses GitHub Actions for CI', threshold: 0.99 });
      expect(exact.results.map((r) => r.memory.id)).toEqual([target.memory.id]);
      for (const r of (await memory.search(ctx, { query: 'deploy pipeline', threshold: 0.2 })).results) {
        expect(r.similarity).toBeGreaterThanOrEqual(0.2);
      }
    });

    it('weights equally similar memories by importance', async () => {
      const ctx = tenant();
      const low = await memory.add(ctx, { layer: 'project', projectId: 'a', content: 'cache invalidation strategy for the API', importance: 0.1 });
      const high = await memory.add(ctx, { layer: 'project', projectId: 'b', content: 'cache invalidation strategy for the API', importance: 0.9 });
      const { results } = await memory.search(ctx, { query: 'cache invalidation strategy', layers: ['project'] });
      expect(results.map((r) => r.memory.id)).toEqual([high.memory.id, low.memory.id]);
      expect(results[0]?.similarity).toBeCloseTo(results[1]?.similarity ?? 0, 5);
    });

    it('lets the narrower layer win when two layers hold near-identical content', async () => {
      const ctx = tenant();
      const text = 'Code reviews need two approvals before merging to main';
      const company = await memory.add(ctx, { layer: 'company', companyId: 'acme', content: text, importance: 1 });
      const project = await memory.add(ctx, { layer: 'project', projectId: 'p', content: text, importance: 0.2 });
      await memory.add(ctx, { layer: 'team', teamId: 't', content: 'The team lunch is on Thursday' });
      const { results } = await memory.search(ctx, { query: 'how many approvals do code reviews need' });
      const ids = results.map((r) => r.memory.id);
      expect(ids).toContain(project.memory.id);
      expect(ids).not.toContain(company.memory.id);
      expect(results.find((r) => r.memory.id === project.memory.id)?.shadowed).toEqual([company.memory.id]);
    });

    it('filters by layers, scope and tags, and never returns deleted memories', async () => {
      const admin = tenant(['admin']);
      const a = await memory.add(admin, { layer: 'project', projectId: 'a', content: 'kubernetes cluster upgrade plan', tags: ['infra'] });
      const b = await memory.add(admin, { layer: 'team', teamId: 't', content: 'kubernetes cluster upgrade notes' });
      const ids = async (q: Record<string, unknown>) => (await memory.search(admin, { query: 'kubernetes cluster upgrade', ...q })).results.map((r) => r.memory.id);
      expect(await ids({ layers: ['team'] })).toEqual([b.memory.id]);
      expect(await ids({ layers: ['project'], projectId: 'zzz' })).toEqual([]);
      expect(await ids({ tags: ['infra'] })).toEqual([a.memory.id]);
      await memory.delete(admin, a.memory.id);
      expect(await ids({})).toEqual([b.memory.id]);
    });

    it('rejects bad search input', async () => {
      const ctx = tenant();
      for (const bad of [{}, { query: '' }, { query: 'x', limit: 0 }, { query: 'x', threshold: 1.5 }, { query: 'x', layers: ['nope'] }, { query: 'x', layers: [] }]) {
        expect((await rejectionOf(memory.search(ctx, bad))).code, JSON.stringify(bad)).toBe('INVALID_ARGUMENT');
      }
    });
  });

  describe('update, delete, feedback', () => {
    it('updates with optimistic concurrency: a stale version gets CONFLICT and changes nothing', async () => {
      const ctx = tenant();
      const { memory: m } = await memory.add(ctx, { layer: 'project', projectId: 'p', content: 'the build takes four minutes' });
      const updated = await memory.update(ctx, m.id, { version: 1, content: 'the build takes ninety seconds since caching', tags: ['build'] });
      expect(updated).toMatchObject({ version: 2, tags: ['build'] });
      const stale = await rejectionOf(memory.update(ctx, m.id, { version: 1, content: 'lost update' }));
      expect(stale.code).toBe('CONFLICT');
      expect(stale.details).toMatchObject({ currentVersion: 2 });
      expect((await memory.get(ctx, m.id)).content).toBe('the build takes ninety seconds since caching');
      const { results } = await memory.search(ctx, { query: 'build caching seconds' });
      expect(results[0]?.memory.id).toBe(m.id);
      expect((await rejectionOf(memory.update(ctx, m.id, { version: 2 }))).code).toBe('INVALID_ARGUMENT');
      const types = (await memory.events(ctx, {})).events.map((e) => e.type);
      expect(types).toEqual(['memory.added', 'memory.updated']);
    });

    it('soft-deletes idempotently, admin only', async () => {
      const dev = tenant();
      const admin = { ...dev, roles: ['admin' as const] };
      const { memory: m } = await memory.add(dev, { layer: 'project', projectId: 'p', content: 'temporary note' });
      expect((await rejectionOf(memory.delete(dev, m.id))).code).toBe('FORBIDDEN');
      expect(await memory.delete(admin, m.id)).toEqual({ id: m.id, deleted: true, alreadyDeleted: false });
      expect(await memory.delete(admin, m.id)).toEqual({ id: m.id, deleted: true, alreadyDeleted: true });
      expect((await rejectionOf(memory.get(dev, m.id))).code).toBe('NOT_FOUND');
      expect((await rejectionOf(memory.update(dev, m.id, { version: 1, content: 'x' }))).code).toBe('NOT_FOUND');
      expect((await rejectionOf(memory.delete(admin, '0190c0de-0000-7000-8000-000000000000'))).code).toBe('NOT_FOUND');
      expect((await memory.events(dev, {})).events.map((e) => e.type)).toEqual(['memory.added', 'memory.deleted']);
    });

    it('moves importance with feedback, within [0, 1]', async () => {
      const ctx = tenant();
      const { memory: m } = await memory.add(ctx, { layer: 'project', projectId: 'p', content: 'use pnpm', importance: 0.5 });
      expect((await memory.feedback(ctx, m.id, { type: 'helpful' })).importance).toBeCloseTo(0.6, 5);
      expect((await memory.feedback(ctx, m.id, { type: 'outdated', score: -0.5 })).importance).toBeCloseTo(0.55, 5);
      for (let i = 0; i < 12; i++) await memory.feedback(ctx, m.id, { type: 'inaccurate' });
      expect((await memory.get(ctx, m.id)).importance).toBe(0);
      expect((await rejectionOf(memory.feedback(ctx, m.id, { type: 'great' }))).code).toBe('INVALID_ARGUMENT');
      expect((await rejectionOf(memory.feedback(ctx, m.id, { type: 'helpful', score: 3 }))).code).toBe('INVALID_ARGUMENT');
      const last = (await memory.events(ctx, {})).events.at(-1);
      expect(last).toMatchObject({ type: 'memory.feedback', data: { memoryId: m.id, type: 'inaccurate', importance: 0 } });
    });
  });

  describe('roles and scopes', () => {
    it('lets a viewer read and search but not write', async () => {
      const dev = tenant();
      const viewer = { ...dev, userId: 'val', roles: ['viewer' as const] };
      const { memory: m } = await memory.add(dev, { layer: 'project', projectId: 'p', content: 'shared fact' });
      expect((await memory.get(viewer, m.id)).id).toBe(m.id);
      expect((await memory.search(viewer, { query: 'shared fact' })).results).toHaveLength(1);
      for (const attempt of [
        memory.add(viewer, { layer: 'project', projectId: 'p', content: 'x' }),
        memory.update(viewer, m.id, { version: 1, content: 'x' }),
        memory.feedback(viewer, m.id, { type: 'helpful' }),
        memory.delete(viewer, m.id),
      ]) {
        expect((await rejectionOf(attempt)).code).toBe('FORBIDDEN');
      }
    });

    it("keeps a user's own layer private from other users, but not from admins", async () => {
      const alice = tenant();
      const bob = { ...alice, userId: 'bob' };
      const admin = { ...alice, userId: 'root', roles: ['admin' as const] };
      const { memory: m } = await memory.add(alice, { layer: 'user', content: 'my private preference is vim' });
      expect((await rejectionOf(memory.get(bob, m.id))).code).toBe('NOT_FOUND');
      expect((await memory.search(bob, { query: 'private preference vim' })).results).toEqual([]);
      expect((await memory.list(bob, { layer: 'user' })).items).toEqual([]);
      expect((await rejectionOf(memory.list(bob, { layer: 'user', userId: 'alice' }))).code).toBe('FORBIDDEN');
      expect((await rejectionOf(memory.add(bob, { layer: 'user', userId: 'alice', content: 'x' }))).code).toBe('FORBIDDEN');
      expect((await memory.get(admin, m.id)).id).toBe(m.id);
    });
  });

  describe('tenant isolation and the event log', () => {
    it("never shows one tenant another tenant's memories", async () => {
      const a = tenant();
      const b = tenant();
      const { memory: m } = await memory.add(a, { layer: 'company', companyId: 'acme', content: 'tenant A secret roadmap' });
      expect((await rejectionOf(memory.get(b, m.id))).code).toBe('NOT_FOUND');
      expect((await rejectionOf(memory.update(b, m.id, { version: 1, content: 'x' }))).code).toBe('NOT_FOUND');
      expect((await rejectionOf(memory.delete({ ...b, roles: ['admin'] }, m.id))).code).toBe('NOT_FOUND');
      expect((await memory.search(b, { query: 'tenant A secret roadmap' })).results).toEqual([]);
      expect((await memory.list(b, {})).items).toEqual([]);
      expect((await memory.events(b, {})).events).toEqual([]);
    });

    it('gives 50 concurrent adds of one tenant the seqs 1..50, each once', async () => {
      const ctx = tenant();
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          memory.add(ctx, { layer: 'project', projectId: `p${i % 5}`, content: `concurrent write ${i}: ${'abcdefghij'[i % 10]} ${i * 31}` }),
        ),
      );
      const { events, head } = await memory.events(ctx, { limit: '1000' });
      expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(head).toBe(50);
      expect(new Set(events.map((e) => e.id)).size).toBe(50);
    });

    it('reads the log in pages after a seq', async () => {
      const ctx = tenant();
      for (let i = 0; i < 7; i++) await memory.add(ctx, { layer: 'project', projectId: 'p', content: `event page item ${i} ${i * 13}` });
      const first = await memory.events(ctx, { since: '0', limit: '3' });
      expect(first.events.map((e) => e.seq)).toEqual([1, 2, 3]);
      const second = await memory.events(ctx, { since: String(first.nextSince), limit: '3' });
      expect(second.events.map((e) => e.seq)).toEqual([4, 5, 6]);
      expect(second.epoch).toBe(first.epoch);
      expect((await memory.events(ctx, { since: '7' })).events).toEqual([]);
      for (const bad of [{ since: '-1' }, { since: 'abc' }, { limit: '5000' }]) {
        expect((await rejectionOf(memory.events(ctx, bad))).code).toBe('INVALID_ARGUMENT');
      }
    });
  });
});
