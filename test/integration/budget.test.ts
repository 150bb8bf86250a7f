import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BudgetsConfig } from '../../src/config.js';
import { MeteredLlm, OpenAiChatLlm, promptTokens } from '../../src/cca/index.js';
import { CachingEmbeddingService, MemoryEmbeddingCache, MemorySemanticIndex, type Embedder } from '../../src/embed/index.js';
import { EventLog } from '../../src/events/index.js';
import { BudgetApi, TokenBudgets, budgetRetryAt, countTokens } from '../../src/obs/index.js';
import type { BudgetEventData, EventEnvelope } from '../../src/protocol/index.js';
import { budgetRoutes } from '../../gateway/http/budget-routes.js';
import { createBudgetExtension } from '../../gateway/realtime/budget.js';
import type { Connection } from '../../gateway/realtime/types.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';
import { startLlmServer, type LlmServer } from '../support/index.js';

const unlimited = { embed: { day: 0, month: 0 }, llm: { day: 0, month: 0 } };

/**
 * Each test uses its own tenant, so one database per backend serves the whole file and the
 * budgets' clock is per TokenBudgets instance.
 */
describe.each(backends())('token budgets on %s', (backend) => {
  let t: TestCore;
  let llmServer: LlmServer;
  let n = 0;
  const tenant = () => `budget-${backend}-${++n}`;

  beforeAll(async () => {
    t = await openTestCore(backend);
    llmServer = await startLlmServer();
  });
  afterAll(async () => {
    await llmServer?.close();
    await t?.close();
  });

  function budgets(
    config: { action?: BudgetsConfig['action']; limits?: Partial<BudgetsConfig['limits']> },
    clock = { now: new Date('2026-03-10T12:00:00Z') },
  ) {
    const full: BudgetsConfig = { action: 'reject', warnAt: 0.8, ...config, limits: { ...unlimited, ...config.limits } };
    return new TokenBudgets({ db: t.core.db, commits: t.core.commits, config: full, now: () => clock.now });
  }

  async function budgetEvents(tenantId: string): Promise<EventEnvelope<BudgetEventData>[]> {
    const { events } = await t.core.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, 0, 100));
    return events.filter((e) => e.type.startsWith('budget.')) as EventEnvelope<BudgetEventData>[];
  }

  async function usageRows(tenantId: string) {
    const res = await t.core.db.withTenant(tenantId, (sql) =>
      sql.query<{ kind: string; period: string; tokens: string | number }>('SELECT kind, period, tokens FROM token_usage ORDER BY kind, period'),
    );
    return res.rows.map((r) => ({ ...r, tokens: Number(r.tokens) }));
  }

  it('accumulates usage across calls in the day and the month, atomically under concurrency', async () => {
    const id = tenant();
    const b = budgets({ limits: { llm: { day: 100, month: 0 } } });
    await b.reserve(id, 'embed', 10);
    await b.reserve(id, 'embed', 15);
    expect(await usageRows(id)).toEqual([
      { kind: 'embed', period: 'day', tokens: 25 },
      { kind: 'embed', period: 'month', tokens: 25 },
    ]);
    const results = await Promise.allSettled(Array.from({ length: 14 }, () => b.reserve(id, 'llm', 10)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(Array(4).fill('RATE_LIMITED'));
    const status = await b.status(id);
    expect(status.budgets.llm.day).toMatchObject({ limit: 100, used: 100, remaining: 0, source: 'default', periodStart: '2026-03-10', resetsAt: '2026-03-11T00:00:00.000Z' });
    expect(status.budgets.embed.month).toMatchObject({ limit: 0, used: 25, remaining: null, periodStart: '2026-03-01', resetsAt: '2026-04-01T00:00:00.000Z' });
  });

  it('announces budget.warning once at 80 %, in the log and to the relay', async () => {
    const id = tenant();
    const b = budgets({ limits: { embed: { day: 100, month: 0 } } });
    const notified: string[] = [];
    const stop = t.core.commits.subscribe((tenantId) => notified.push(tenantId));
    await b.reserve(id, 'embed', 79);
    expect(await budgetEvents(id)).toEqual([]);
    await b.reserve(id, 'embed', 1);
    await b.reserve(id, 'embed', 5);
    stop();
    const events = await budgetEvents(id);
    expect(events.map((e) => [e.type, e.data])).toEqual([
      ['budget.warning', { kind: 'embed', period: 'day', used: 80, limit: 100, resetsAt: '2026-03-11T00:00:00.000Z', action: 'reject' }],
    ]);
    expect(events[0]?.actor).toEqual({ userId: 'system', agentId: 'budget' });
    expect(notified).toEqual([id]);
  });

  it('rejects a call that would pass 100 % with RATE_LIMITED, spends nothing, and says so once', async () => {
    const id = tenant();
    const b = budgets({ limits: { llm: { day: 0, month: 100 } } });
    await b.reserve(id, 'llm', 95);
    const err = await rejectionOf(b.reserve(id, 'llm', 10));
    expect(err).toMatchObject({
      code: 'RATE_LIMITED',
      details: { kind: 'llm', period: 'month', used: 95, limit: 100, requested: 10, resetsAt: '2026-04-01T00:00:00.000Z', action: 'reject', retryable: false },
    });
    expect(budgetRetryAt(err)).toBeUndefined();
    await rejectionOf(b.reserve(id, 'llm', 10));
    expect((await b.status(id)).budgets.llm.month.used).toBe(95);
    await b.reserve(id, 'llm', 5); // exactly at the limit is allowed
    expect((await b.status(id)).budgets.llm.month.used).toBe(100);
    const types = (await budgetEvents(id)).map((e) => `${e.type} ${e.data.used}`);
    expect(types).toEqual(['budget.warning 95', 'budget.exceeded 95']);
  });

  it('queue: the same refusal, marked retryable at the reset for job queues', async () => {
    const id = tenant();
    const b = budgets({ action: 'queue', limits: { embed: { day: 10, month: 0 } } });
    const err = await rejectionOf(b.reserve(id, 'embed', 11));
    expect(err).toMatchObject({ code: 'RATE_LIMITED', details: { action: 'queue', retryable: true, retryAt: '2026-03-11T00:00:00.000Z', used: 0 } });
    expect(budgetRetryAt(err)).toEqual(new Date('2026-03-11T00:00:00Z'));
    expect((await b.status(id)).budgets.embed.day.used).toBe(0);
  });

  it('warn: allows the call and announces budget.exceeded once per period', async () => {
    const id = tenant();
    const b = budgets({ action: 'warn', limits: { llm: { day: 50, month: 0 } } });
    await b.reserve(id, 'llm', 60);
    await b.reserve(id, 'llm', 60);
    expect((await b.status(id)).budgets.llm.day).toMatchObject({ used: 120, remaining: 0 });
    expect((await budgetEvents(id)).map((e) => `${e.type} ${e.data.period} ${e.data.used}/${e.data.limit} ${e.data.action}`)).toEqual([
      'budget.warning day 60/50 warn',
      'budget.exceeded day 60/50 warn',
    ]);
  });

  it('starts a new day at UTC midnight (and a new month on the 1st) with fresh usage and fresh warnings', async () => {
    const id = tenant();
    const clock = { now: new Date('2026-03-31T23:59:59Z') };
    const b = budgets({ limits: { embed: { day: 100, month: 1000 } } }, clock);
    await b.reserve(id, 'embed', 100);
    await expect(b.reserve(id, 'embed', 1)).rejects.toMatchObject({ code: 'RATE_LIMITED', details: { period: 'day' } });
    clock.now = new Date('2026-04-01T00:00:00Z');
    await b.reserve(id, 'embed', 90);
    const status = await b.status(id);
    expect(status.budgets.embed.day).toMatchObject({ used: 90, periodStart: '2026-04-01', resetsAt: '2026-04-02T00:00:00.000Z' });
    expect(status.budgets.embed.month).toMatchObject({ used: 90, periodStart: '2026-04-01' });
    clock.now = new Date('2026-04-02T08:00:00Z');
    await b.reserve(id, 'embed', 10);
    expect((await b.status(id)).budgets.embed).toMatchObject({ day: { used: 10 }, month: { used: 100 } });
    const warnings = (await budgetEvents(id)).filter((e) => e.type === 'budget.warning').map((e) => e.data.resetsAt);
    expect(warnings).toEqual(['2026-04-01T00:00:00.000Z', '2026-04-02T00:00:00.000Z']);
  });

  it('lets an admin override limits per tenant (and clear them), validated, over the API', async () => {
    const id = tenant();
    const b = budgets({ limits: { llm: { day: 1000, month: 0 } } });
    const api = new BudgetApi(b, { cacheUsage: async () => ({ scope: 'process', semanticEnabled: false, model: 'm', exact: { hits: 0, misses: 0 }, semantic: { hits: 0, misses: 0 } }) });
    const admin = tenantCtx(id, 'root', ['admin']);
    const set = await api.set(admin, { llm: { day: 50 }, embed: { month: 0 } });
    expect(set.budgets.llm.day).toMatchObject({ limit: 50, source: 'tenant' });
    expect(set.budgets.embed.month).toMatchObject({ limit: 0, source: 'tenant' });
    await expect(b.reserve(id, 'llm', 60)).rejects.toMatchObject({ code: 'RATE_LIMITED', details: { limit: 50 } });
    const neighbour = tenant();
    await b.reserve(neighbour, 'llm', 60); // the default (1000) still applies elsewhere

    for (const bad of [{ llm: { day: -1 } }, { gpu: { day: 5 } }, { llm: { hour: 5 } }, {}, null]) {
      expect(await rejectionOf(api.set(admin, bad))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    expect(await rejectionOf(api.set(tenantCtx(id, 'dev', ['developer']), { llm: { day: 1 } }))).toMatchObject({ code: 'FORBIDDEN' });
    expect(await rejectionOf(api.get(tenantCtx(id, 'viewer', ['viewer'])))).toMatchObject({ code: 'FORBIDDEN' });

    const cleared = await api.set(admin, { llm: { day: null } });
    expect(cleared.budgets.llm.day).toMatchObject({ limit: 1000, source: 'default' });
    await b.reserve(id, 'llm', 60);
    const usage = await api.usage(admin);
    expect(usage).toMatchObject({ tenantId: id, embedCache: { scope: 'process' }, tokens: { llm: { day: { used: 60, limit: 1000 } } } });
  });

  it('serves the same API as REST routes and as acked socket events', async () => {
    const id = tenant();
    const api = new BudgetApi(budgets({ limits: { embed: { day: 0, month: 5000 } } }), t.core.embeddings);
    const admin = tenantCtx(id, 'root', ['admin']);
    const routes = new Map(budgetRoutes(api).map((r) => [`${r.method} ${r.path}`, r]));
    const call = (key: string, body?: unknown) => {
      const route = routes.get(key);
      if (!route) throw new Error(`no route ${key}`);
      return route.handle({ tenant: admin, params: {}, query: {}, body });
    };
    expect(await call('PUT /v1/admin/budgets', { llm: { day: 77 } })).toMatchObject({ status: 200, body: { budgets: { llm: { day: { limit: 77 } } } } });
    expect(await call('GET /v1/admin/budgets')).toMatchObject({ status: 200, body: { tenantId: id, action: 'reject', budgets: { embed: { month: { limit: 5000 } } } } });
    expect(await call('GET /v1/admin/usage')).toMatchObject({
      status: 200,
      body: { tenantId: id, embedCache: { exact: { hits: 0, misses: 0 }, semantic: { hits: 0, misses: 0 } }, tokens: { llm: { day: { limit: 77, used: 0 } } } },
    });
    await expect(call('PUT /v1/admin/budgets', { llm: { day: -5 } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });

    const handlers = new Map<string, (input: unknown) => Promise<unknown>>();
    const conn = { tenant: admin, handle: (event: string, _schema: unknown, fn: (input: unknown) => Promise<unknown>) => void handlers.set(event, fn) };
    createBudgetExtension(api).onConnection(conn as unknown as Connection);
    expect([...handlers.keys()].sort()).toEqual(['budget.get', 'budget.set', 'usage.get']);
    expect(await handlers.get('budget.set')?.({ embed: { day: 9 } })).toMatchObject({ budgets: { embed: { day: { limit: 9, source: 'tenant' } } } });
    expect(await handlers.get('budget.get')?.(undefined)).toMatchObject({ budgets: { embed: { day: { limit: 9 } } } });
    expect(await handlers.get('usage.get')?.(undefined)).toMatchObject({ tenantId: id });
  });

  it('keeps token_usage and token_budgets behind row-level security', async () => {
    const victim = tenant();
    const b = budgets({});
    await b.reserve(victim, 'llm', 42);
    await b.setLimits(victim, { llm: { day: 500 } }, { userId: 'root' });
    const seen = await t.core.db.withTenant('budget-attacker', async (sql) => ({
      usage: (await sql.query('SELECT * FROM token_usage WHERE tenant_id = $1', [victim])).rows,
      budgets: (await sql.query('SELECT * FROM token_budgets WHERE tenant_id = $1', [victim])).rows,
      raised: (await sql.query("UPDATE token_budgets SET token_limit = 0 WHERE tenant_id = $1", [victim])).affectedRows,
    }));
    expect(seen).toEqual({ usage: [], budgets: [], raised: 0 });
    const planted = await rejectionOf(
      t.core.db.withTenant('budget-attacker', (sql) =>
        sql.query("INSERT INTO token_usage (tenant_id, kind, period, period_start, tokens) VALUES ($1, 'llm', 'day', '2026-03-10', 0)", [victim]),
      ),
    );
    expect(planted.message).toMatch(/row-level security/);
    expect((await b.status(victim)).budgets.llm.day).toMatchObject({ used: 42, limit: 500 });
  });

  it('settles to the real cost (which may end past the limit) and refunds failed calls', async () => {
    const id = tenant();
    const b = budgets({ limits: { llm: { day: 100, month: 0 } } });
    const charge = await b.reserve(id, 'llm', 30);
    await b.settle(charge, 110);
    expect((await b.status(id)).budgets.llm.day.used).toBe(110);
    expect((await budgetEvents(id)).map((e) => e.type)).toEqual(['budget.warning', 'budget.exceeded']);
    await expect(b.reserve(id, 'llm', 1)).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    await b.refund(charge);
    expect((await b.status(id)).budgets.llm.day.used).toBe(80);
  });

  it('charges the embedding model’s input tokens, and nothing for exact or semantic cache hits', async () => {
    const id = tenant();
    const b = budgets({ limits: { embed: { day: 1000, month: 0 } } });
    const calls: string[][] = [];
    const model: Embedder = {
      model: 'budget-test-embed',
      dims: 4,
      embed: async (texts) => {
        calls.push([...texts]);
        return texts.map(() => Float32Array.from([0.5, 0.5, 0.5, 0.5]));
      },
    };
    const svc = new CachingEmbeddingService(model, new MemoryEmbeddingCache({ maxEntries: 100, ttlSec: 60 }), {
      semantic: { index: new MemorySemanticIndex({ ttlSec: 60, maxPerScope: 10, maxEntries: 100 }), threshold: 0.98 },
      meter: b,
    });
    const text = 'Quarterly revenue grew in every region except the north-east.';
    await svc.embed(id, [text]);
    const spent = countTokens(text);
    await svc.embed(id, [text, text.toUpperCase()]);
    expect(calls).toHaveLength(1);
    expect((await b.status(id)).budgets.embed.day.used).toBe(spent);

    const other = tenant();
    const tight = budgets({ limits: { embed: { day: spent, month: 0 } } });
    const limited = new CachingEmbeddingService(model, new MemoryEmbeddingCache({ maxEntries: 100, ttlSec: 60 }), { meter: tight });
    await limited.embed(other, [text]); // reaches the limit exactly
    expect(await rejectionOf(limited.embed(other, ['another text altogether']))).toMatchObject({ code: 'RATE_LIMITED', details: { kind: 'embed' } });
    expect(calls).toHaveLength(2);
    await limited.embed(other, [text]); // still served from the cache at the limit
    expect((await tight.status(other)).budgets.embed.day.used).toBe(spent);
    await Promise.all([svc.close(), limited.close()]);
  });

  it('meters LLM calls through MeteredLlm against a real OpenAI-compatible server', async () => {
    const id = tenant();
    const b = budgets({ limits: { llm: { day: 100, month: 0 } } });
    const metered = new MeteredLlm(new OpenAiChatLlm({ url: llmServer.url, model: 'test-chat', timeoutMs: 5_000, retry: { attempts: 1 } }), b);
    const before = llmServer.requests.length;
    llmServer.enqueue({ content: 'Paris.', usage: { prompt_tokens: 21, completion_tokens: 2 } }, { content: 'Three short words', usage: null });
    const req = { messages: [{ role: 'user' as const, content: 'What is the capital of France?' }] };
    await metered.complete(id, req);
    expect((await b.status(id)).budgets.llm.day.used).toBe(23);
    await metered.forTenant(id).complete(req);
    expect((await b.status(id)).budgets.llm.day.used).toBe(23 + promptTokens(req.messages) + countTokens('Three short words'));

    await b.setLimits(id, { llm: { day: 30 } }, { userId: 'root' });
    await expect(metered.complete(id, req)).rejects.toMatchObject({ code: 'RATE_LIMITED', details: { kind: 'llm', period: 'day', limit: 30 } });
    expect(llmServer.requests.length - before).toBe(2); // the refused call never reached the model
  });
});
