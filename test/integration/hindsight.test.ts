import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentsApi, recency, successRate, type AgentsApi } from '../../src/cca/index.js';
import { EventLog } from '../../src/events/index.js';
import { EVENT_TYPES, type HindsightPatternEventData } from '../../src/protocol/index.js';
import { agentsRoutes } from '../../gateway/http/agents-routes.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';

const STATEMENT = 'query on shard 7 took 5012ms, over the 5000ms statement timeout';
const REPLICA = 'query on replica shard 7 took 5012ms, over the 5000ms statement timeout';
const LOCK = 'query on shard 7 took 5012ms, over the 5000ms lock timeout';
const UNDEFINED_ID = "Cannot read properties of undefined (reading 'id')";

const stackAt = (line: number) => `TypeError: x\n    at loadUser (/srv/app/src/users.ts:${line}:9)\n    at handler (/srv/app/src/api.ts:${line * 2}:3)`;

describe('hindsight learning (PGlite)', () => {
  let t: TestCore;
  let api: AgentsApi;

  async function eventsOf(tenantId: string, type: string) {
    const page = await t.core.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, 0, 1000));
    return page.events.filter((e) => e.type === type);
  }

  beforeAll(async () => {
    t = await openTestCore('pglite');
    api = createAgentsApi(t.core);
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('groups reports that differ only in variable parts into one pattern, and finds similar earlier ones', async () => {
    const ctx = tenantCtx('t-report');
    const first = await api.report(ctx, { errorType: 'TypeError', message: UNDEFINED_ID, stack: stackAt(10) });
    expect(first).toMatchObject({ isNew: true, occurrences: 1, matches: [], promoted: null });
    expect(first.signature).toBe('TypeError: Cannot read properties of undefined (reading <str>) @ loadUser < handler');

    const second = await api.report(ctx, { errorType: 'TypeError', message: "Cannot read properties of undefined (reading 'email')", stack: stackAt(77) });
    expect(second).toMatchObject({ patternId: first.patternId, isNew: false, occurrences: 2 });
    expect(second.matches.map((m) => [m.patternId, m.exact, m.similarity])).toEqual([[first.patternId, true, 1]]);

    const timeout = await api.report(ctx, { errorType: 'TimeoutError', message: STATEMENT });
    expect(timeout.matches).toEqual([]);
    const similar = await api.report(ctx, { errorType: 'TimeoutError', message: REPLICA });
    expect(similar.isNew).toBe(true);
    expect(similar.matches).toHaveLength(1);
    expect(similar.matches[0]).toMatchObject({ patternId: timeout.patternId, exact: false, occurrences: 1 });
    expect(similar.matches[0]?.similarity).toBeGreaterThanOrEqual(t.config.hindsight.similarity);
    expect(similar.matches[0]?.similarity).toBeLessThan(1);
  });

  it('stores reports redacted, and keeps secrets out of signatures', async () => {
    const ctx = tenantCtx('t-redact');
    const report = await api.report(ctx, {
      errorType: 'AuthError',
      message: 'login failed for postgres://app:hunter2@db/prod with password=hunter2',
      context: { request: { headers: { authorization: 'Bearer abcDEF1234567890xyzXYZ' } } },
    });
    expect(report.signature).not.toContain('hunter2');
    const stored = await t.core.db.withTenant('t-redact', (sql) => sql.query('SELECT o.message, o.context, p.signature FROM hindsight_occurrences o JOIN hindsight_patterns p ON p.id = o.pattern_id'));
    const text = JSON.stringify(stored.rows);
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('abcDEF1234567890xyzXYZ');
    expect(text).toContain('[REDACTED:');
  });

  it('ranks query results by success rate × similarity × recency', async () => {
    const ctx = tenantCtx('t-rank');
    const exact = await api.report(ctx, { errorType: 'TimeoutError', message: STATEMENT });
    const replica = await api.report(ctx, { errorType: 'TimeoutError', message: REPLICA });
    const lock = await api.report(ctx, { errorType: 'TimeoutError', message: LOCK });
    const unrelated = await api.report(ctx, { errorType: 'TypeError', message: UNDEFINED_ID });
    for (let i = 0; i < 3; i++) await api.resolve(ctx, { patternId: exact.patternId, resolution: 'retry the query', success: false });
    for (let i = 0; i < 3; i++) await api.resolve(ctx, { patternId: replica.patternId, resolution: 'route reads to the primary', success: true });
    await api.resolve(ctx, { patternId: replica.patternId, resolution: 'raise  the timeout', success: false });

    // The query's own numbers differ: the signature is the same.
    const result = await api.query(ctx, { errorType: 'TimeoutError', message: 'query on shard 3 took 7100ms, over the 5000ms statement timeout' });
    expect(result.patterns.map((p) => p.patternId)).toEqual([replica.patternId, lock.patternId, exact.patternId]);
    expect(result.patterns.map((p) => p.patternId)).not.toContain(unrelated.patternId);
    const [top, middle, last] = result.patterns;
    expect(last).toMatchObject({ exact: true, similarity: 1, attempts: 3, successes: 0 });
    expect(last?.score).toBeCloseTo(successRate(0, 3) * 1, 3);
    expect(middle).toMatchObject({ exact: false, attempts: 0, resolutions: [] });
    expect(middle?.score).toBeCloseTo(0.5 * (middle?.similarity ?? 0), 3);
    expect(top?.score).toBeCloseTo(successRate(3, 4) * (top?.similarity ?? 0), 3);
    // Its resolutions, best first, with whitespace-variants of one resolution grouped.
    expect(top?.resolutions.map((r) => [r.resolution, r.successes, r.failures])).toEqual([
      ['route reads to the primary', 3, 0],
      ['raise the timeout', 0, 1],
    ]);

    // Five half-lives later the replica pattern's successes no longer outrank fresher patterns.
    await t.core.db.withTenant('t-rank', (sql) =>
      sql.query("UPDATE hindsight_patterns SET last_seen_at = now() - interval '150 days', last_resolved_at = now() - interval '150 days' WHERE id = $1", [replica.patternId]),
    );
    const later = await api.query(ctx, { errorType: 'TimeoutError', message: STATEMENT, limit: 3 });
    expect(later.patterns.map((p) => p.patternId)).toEqual([lock.patternId, exact.patternId, replica.patternId]);
    const aged = later.patterns[2];
    expect(aged?.score).toBeCloseTo(successRate(3, 4) * (aged?.similarity ?? 0) * recency(new Date(Date.now() - 150 * 86_400_000), Date.now(), 30), 3);

    // The default limit is 3; a query without a type matches by message and frames.
    expect((await api.query(ctx, { errorType: 'TimeoutError', message: STATEMENT, limit: 1 })).patterns).toHaveLength(1);
    const untyped = await api.query(ctx, { message: STATEMENT });
    expect(untyped.patterns.find((p) => p.patternId === exact.patternId)).toMatchObject({ exact: true, similarity: 1 });
  });

  it('promotes a pattern seen 3 times with a working resolution to the team layer, exactly once', async () => {
    const ctx = tenantCtx('t-promote');
    const report = () => api.report(ctx, { errorType: 'ECONNREFUSED', message: 'connect ECONNREFUSED 10.0.0.12:6379', teamId: 'platform' });
    const first = await report();
    await report();
    const third = await report();
    // Seen 3 times but nothing has worked yet: not promoted.
    expect(third.promoted).toBeNull();
    expect((await api.resolve(ctx, { patternId: first.patternId, resolution: 'restart the app', success: false })).promoted).toBeNull();

    const resolved = await api.resolve(ctx, { patternId: first.patternId, resolution: 'Start Redis: `docker compose up -d redis`', success: true });
    expect(resolved).toMatchObject({ attempts: 2, successes: 1, success: true });
    expect(resolved.promoted).toMatchObject({ teamId: 'platform' });
    const memory = await t.core.memory.get(ctx, resolved.promoted!.memoryId);
    expect(memory).toMatchObject({ layer: 'team', scopeId: 'platform', metadata: { kind: 'hindsight', patternId: first.patternId } });
    expect(memory.content).toBe('Known error pattern: ECONNREFUSED: connect ECONNREFUSED <n>:<n>\nResolution that worked: Start Redis: `docker compose up -d redis`');
    expect(memory.tags).toEqual(['hindsight', 'error-pattern', 'econnrefused']);

    // More successes and sightings change nothing: one memory, one event.
    expect((await api.resolve(ctx, { patternId: first.patternId, resolution: 'Start Redis', success: true })).promoted).toBeNull();
    expect((await report()).promoted).toBeNull();
    const events = await eventsOf('t-promote', EVENT_TYPES.hindsightPattern);
    expect(events).toHaveLength(1);
    expect(events[0]?.actor).toEqual({ userId: 'system', agentId: 'hindsight' });
    expect(events[0]?.data).toEqual({
      layer: 'team',
      scopeId: 'platform',
      patternId: first.patternId,
      memoryId: resolved.promoted!.memoryId,
      errorType: 'ECONNREFUSED',
      signature: 'ECONNREFUSED: connect ECONNREFUSED <n>:<n>',
      occurrences: 3,
      resolution: 'Start Redis: `docker compose up -d redis`',
    } satisfies HindsightPatternEventData);
    const teamNotes = await t.core.memory.list(ctx, { layer: 'team', teamId: 'platform' });
    expect(teamNotes.items).toHaveLength(1);
    const query = await api.query(ctx, { errorType: 'ECONNREFUSED', message: 'connect ECONNREFUSED 10.0.0.99:6380' });
    expect(query.patterns[0]?.promoted).toEqual(resolved.promoted);
  });

  it('promotes on the third report when a resolution already worked, to the default team when none was named', async () => {
    const ctx = tenantCtx('t-promote-report');
    const first = await api.report(ctx, { errorType: 'ENOSPC', message: 'no space left on device, write 4096 bytes' });
    await api.resolve(ctx, { patternId: first.patternId, resolution: 'prune docker images', success: true });
    expect((await api.report(ctx, { errorType: 'ENOSPC', message: 'no space left on device, write 512 bytes' })).promoted).toBeNull();
    const third = await api.report(ctx, { errorType: 'ENOSPC', message: 'no space left on device, write 1 bytes' });
    expect(third.promoted).toMatchObject({ teamId: t.config.hindsight.defaultTeamId });
    expect(await eventsOf('t-promote-report', EVENT_TYPES.hindsightPattern)).toHaveLength(1);
  });

  it('refuses bad input with INVALID_ARGUMENT or NOT_FOUND, and checks roles', async () => {
    const ctx = tenantCtx('t-bad');
    const bad: [string, () => Promise<unknown>][] = [
      ['no message', () => api.report(ctx, { errorType: 'Error' })],
      ['an empty error type', () => api.report(ctx, { errorType: '  ', message: 'x' })],
      ['a control character in the type', () => api.report(ctx, { errorType: 'Err\u0007', message: 'x' })],
      ['a NUL in the message', () => api.report(ctx, { errorType: 'Error', message: 'a\u0000b' })],
      ['a huge stack', () => api.report(ctx, { errorType: 'Error', message: 'x', stack: 'at f (a.js:1:1)\n'.repeat(10_000) })],
      ['a huge context', () => api.report(ctx, { errorType: 'Error', message: 'x', context: { blob: 'x'.repeat(20_000) } })],
      ['a bad team id', () => api.report(ctx, { errorType: 'Error', message: 'x', teamId: 'a team' })],
      ['an unknown field', () => api.report(ctx, { errorType: 'Error', message: 'x', severity: 'high' })],
      ['a limit of 0', () => api.query(ctx, { message: 'x', limit: 0 })],
      ['a limit over 20', () => api.query(ctx, { message: 'x', limit: 21 })],
      ['a pattern id that is not a UUID', () => api.resolve(ctx, { patternId: 'abc', resolution: 'x', success: true })],
      ['no success flag', () => api.resolve(ctx, { patternId: '01939f2e-8a54-7c3e-9d2b-3f4a5b6c7d8e', resolution: 'x' })],
      ['an empty resolution', () => api.resolve(ctx, { patternId: '01939f2e-8a54-7c3e-9d2b-3f4a5b6c7d8e', resolution: ' ', success: true })],
    ];
    for (const [what, call] of bad) expect((await rejectionOf(call())).code, what).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(api.resolve(ctx, { patternId: '01939f2e-8a54-7c3e-9d2b-3f4a5b6c7d8e', resolution: 'x', success: true }))).code).toBe('NOT_FOUND');
    const patterns = await t.core.db.withTenant('t-bad', (sql) => sql.query('SELECT 1 FROM hindsight_patterns'));
    expect(patterns.rows).toEqual([]);

    const viewer = tenantCtx('t-bad', 'vic', ['viewer']);
    expect((await rejectionOf(api.report(viewer, { errorType: 'Error', message: 'x' }))).code).toBe('FORBIDDEN');
    expect((await rejectionOf(api.resolve(viewer, { patternId: '01939f2e-8a54-7c3e-9d2b-3f4a5b6c7d8e', resolution: 'x', success: true }))).code).toBe('FORBIDDEN');
    await expect(api.query(viewer, { message: 'x' })).resolves.toMatchObject({ patterns: [] });
  });

  it("keeps each tenant's patterns to itself", () => checkIsolation(t));

  it('serves report, query and resolve over REST routes', async () => {
    const ctx = tenantCtx('t-rest');
    const routes = agentsRoutes(api);
    const call = (path: string, body: unknown, params: Record<string, string> = {}) =>
      routes.find((r) => r.path === path)!.handle({ tenant: ctx, params, query: {}, body });
    const created = await call('/v1/hindsight/report', { errorType: 'Error', message: 'disk quota exceeded for user 12' });
    expect(created.status).toBe(201);
    const patternId = (created.body as { patternId: string }).patternId;
    expect((await call('/v1/hindsight/report', { errorType: 'Error', message: 'disk quota exceeded for user 99' })).status).toBe(200);
    // The path names the pattern; a body field cannot point the call elsewhere.
    const resolved = await call('/v1/hindsight/:id/resolve', { patternId: 'ignored', resolution: 'raise the quota', success: true }, { id: patternId });
    expect(resolved).toMatchObject({ status: 201, body: { patternId, successes: 1 } });
    const queried = await call('/v1/hindsight/query', { errorType: 'Error', message: 'disk quota exceeded for user 5' });
    expect(queried).toMatchObject({ status: 200, body: { patterns: [{ patternId, occurrences: 2 }] } });
  });
});

/** Row-level security on the hindsight tables, queried the way buggy or hostile code would. */
async function checkIsolation(t: TestCore): Promise<void> {
  const api = createAgentsApi(t.core);
  const victim = await api.report(tenantCtx('hs-victim'), { errorType: 'Error', message: 'payroll export failed for batch 17' });
  const attacker = tenantCtx('hs-attacker');
  expect((await api.query(attacker, { errorType: 'Error', message: 'payroll export failed for batch 17' })).patterns).toEqual([]);
  expect((await rejectionOf(api.resolve(attacker, { patternId: victim.patternId, resolution: 'x', success: true }))).code).toBe('NOT_FOUND');
  const seen = await t.core.db.withTenant('hs-attacker', async (sql) => ({
    patterns: (await sql.query("SELECT id FROM hindsight_patterns WHERE tenant_id = 'hs-victim'")).rows,
    occurrences: (await sql.query('SELECT id FROM hindsight_occurrences WHERE pattern_id = $1', [victim.patternId])).rows,
    updated: (await sql.query("UPDATE hindsight_patterns SET occurrences = 99 WHERE tenant_id = 'hs-victim'")).affectedRows,
  }));
  expect(seen).toEqual({ patterns: [], occurrences: [], updated: 0 });
  // The attacker's own report of the same error is its own pattern.
  const own = await api.report(attacker, { errorType: 'Error', message: 'payroll export failed for batch 3' });
  expect(own).toMatchObject({ isNew: true, occurrences: 1, matches: [] });
  expect(own.patternId).not.toBe(victim.patternId);
}

describe.skipIf(!backends().includes('postgres'))('hindsight learning on PostgreSQL', () => {
  let t: TestCore;

  beforeAll(async () => {
    t = await openTestCore('postgres');
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it("keeps each tenant's patterns to itself", () => checkIsolation(t));

  it('promotes exactly once when two resolutions race', async () => {
    const api = createAgentsApi(t.core);
    const ctx = tenantCtx('hs-race');
    const first = await api.report(ctx, { errorType: 'Error', message: 'lock wait timeout on table orders', teamId: 'db' });
    await api.report(ctx, { errorType: 'Error', message: 'lock wait timeout on table orders' });
    await api.report(ctx, { errorType: 'Error', message: 'lock wait timeout on table orders' });
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) => api.resolve(ctx, { patternId: first.patternId, resolution: `kill the idle transaction ${i % 2}`, success: true })),
    );
    expect(results.filter((r) => r.promoted !== null)).toHaveLength(1);
    const page = await t.core.db.withTenant('hs-race', (sql) => EventLog.read(sql, 'hs-race', 0, 1000));
    expect(page.events.filter((e) => e.type === EVENT_TYPES.hindsightPattern)).toHaveLength(1);
    expect((await t.core.memory.list(ctx, { layer: 'team', teamId: 'db' })).items).toHaveLength(1);
  });
});
