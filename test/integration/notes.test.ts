import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DISTILL_JOB, OpenAiChatLlm, createAgentsApi, createNoteDistiller, createSessionSweeper, type AgentsApi, type DistillOutcome } from '../../src/cca/index.js';
import { EventLog } from '../../src/events/index.js';
import type { JobContext } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { EVENT_TYPES, type EventEnvelope, type Memory, type NoteCreatedEventData, type TrajectoryEventInput } from '../../src/protocol/index.js';
import { notesProcessors } from '../../workers/processors/notes.js';
import { agentsRoutes } from '../../gateway/http/agents-routes.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';
import { startLlmServer, type LlmServer } from '../support/index.js';

const T = 'acme';
const dev = tenantCtx(T, 'alice', ['developer']);
const silent = createLogger('silent');
// Fake credentials, assembled at run time so no scanner mistakes this file for a leak.
const apiKey = 'sk-' + 'live-' + 'Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2';

/** A session that changed something and recovered from a failure: worth a note. */
function fixSession(sessionId: string, projectId: string | undefined, file = 'src/billing/invoice.ts'): TrajectoryEventInput[] {
  const p = projectId ? { projectId } : {};
  return [
    { sessionId, ...p, toolName: 'readFile', input: { path: file }, output: 'export function total() {…}', success: true, durationMs: 4 },
    { sessionId, toolName: 'runTests', input: 'npm test -- invoice', output: '1 failing: invoice total rounds half-up', success: false, durationMs: 2100 },
    { sessionId, toolName: 'editFile', input: { path: file, patch: 'use banker rounding' }, output: 'ok', success: true, durationMs: 8 },
    { sessionId, toolName: 'runTests', input: 'npm test -- invoice', output: '12 passing', success: true, durationMs: 1900 },
  ];
}

describe('note-taking: capture, session end and distillation (PGlite)', () => {
  let t: TestCore;
  let api: AgentsApi;
  let since = 0;
  let llm: LlmServer;

  /** The log since the last call, as clients and the relay see it. */
  async function newEvents(): Promise<EventEnvelope[]> {
    const page = await t.core.db.withTenant(T, (sql) => EventLog.read(sql, T, since, 1000));
    const last = page.events[page.events.length - 1];
    if (last) since = last.seq;
    return page.events;
  }

  /**
   * What the relay does once `session.ended` routes to cca.distill (JOB_ROUTES, wired by the lead):
   * one job per session.ended event, with the event's id.
   */
  function distillJobs(events: EventEnvelope[]): JobContext[] {
    return events
      .filter((e) => e.type === EVENT_TYPES.sessionEnded)
      .map((e) => ({ kind: DISTILL_JOB, id: e.id, tenantId: T, attempt: 1, signal: new AbortController().signal, event: { id: e.id, seq: e.seq, type: e.type, data: e.data } }));
  }

  async function runDistill(jobs: JobContext[], processors = notesProcessors({ core: t.core, log: silent, llm: undefined })): Promise<void> {
    for (const job of jobs) await processors[DISTILL_JOB]!(job);
  }

  async function notesIn(layer: string, scopeId: string): Promise<Memory[]> {
    const listed = await t.core.memory.list(dev, { layer, [`${layer}Id`]: scopeId, limit: 100 });
    return listed.items.filter((m) => m.metadata['kind'] === 'note');
  }

  beforeAll(async () => {
    t = await openTestCore('pglite', { AETERNA_TRAJECTORY_MAX_FIELD_BYTES: '512', AETERNA_TRAJECTORY_MAX_BATCH: '10' });
    api = createAgentsApi(t.core);
    llm = await startLlmServer();
  }, 60_000);
  afterAll(async () => {
    await llm?.close();
    await t?.close();
  });
  beforeEach(async () => {
    await newEvents();
  });

  it('has a processor for cca.distill', () => {
    expect(notesProcessors({ core: t.core, log: silent })[DISTILL_JOB]).toBeTypeOf('function');
  });

  it('redacts and caps what it stores, and starts the session once', async () => {
    const captured = await api.capture(dev, {
      events: [
        { sessionId: 's-store', projectId: 'apollo', toolName: 'http.post', input: { url: 'https://api.example.com', headers: { authorization: `Bearer ${apiKey}` } }, output: 'x'.repeat(5000), success: true },
        { sessionId: 's-store', toolName: 'shell.exec', input: `psql postgres://app:hunter2@db/prod -c "select 1"`, output: { password: 'hunter2' }, success: true },
      ],
    });
    expect(captured.captured).toBe(2);
    expect(captured.events.map((e) => [e.segment, e.truncated.output, e.redactions])).toEqual([
      [1, true, 1],
      [1, false, 2],
    ]);
    const stored = await t.core.db.withTenant(T, (sql) =>
      sql.query<{ input: string; output: string; output_truncated: boolean; actor: unknown; project_id: string }>(
        "SELECT input, output, output_truncated, actor, project_id FROM trajectory_events WHERE session_id = 's-store' ORDER BY segment, ordinal",
      ),
    );
    const text = JSON.stringify(stored.rows);
    expect(text).not.toContain(apiKey);
    expect(text).not.toContain('hunter2');
    expect(stored.rows[0]?.output_truncated).toBe(true);
    expect(Buffer.byteLength(stored.rows[0]?.output ?? '')).toBeLessThanOrEqual(512);
    expect(stored.rows[0]?.actor).toEqual({ userId: 'alice' });
    expect(stored.rows.map((r) => r.project_id)).toEqual(['apollo', 'apollo']);
    // A second capture continues the session: no second session.started.
    await api.capture(dev, { sessionId: 's-store', toolName: 'readFile', success: true });
    const started = (await newEvents()).filter((e) => e.type === EVENT_TYPES.sessionStarted);
    expect(started.map((e) => e.data)).toEqual([{ layer: 'session', scopeId: 's-store', sessionId: 's-store', segment: 1, projectId: 'apollo' }]);
  });

  it('refuses bad input with INVALID_ARGUMENT, and writes nothing', async () => {
    const bad: [string, unknown][] = [
      ['a session id outside the id rule', { sessionId: '../etc', toolName: 'x', success: true }],
      ['no toolName', { sessionId: 's-bad', success: true }],
      ['no success', { sessionId: 's-bad', toolName: 'x' }],
      ['an unknown field', { sessionId: 's-bad', toolName: 'x', success: true, sucess: false }],
      ['a negative duration', { sessionId: 's-bad', toolName: 'x', success: true, durationMs: -1 }],
      ['a bad feedback rating', { sessionId: 's-bad', toolName: 'feedback', success: true, feedback: { rating: 'great' } }],
      ['an empty batch', { events: [] }],
      ['a batch over the configured size', { events: Array.from({ length: 11 }, () => ({ sessionId: 's-bad', toolName: 'x', success: true })) }],
      ['one bad event in a batch', { events: [{ sessionId: 's-bad', toolName: 'x', success: true }, { sessionId: 's-bad', toolName: '', success: true }] }],
      ['not an object', 'readFile'],
    ];
    for (const [what, input] of bad) {
      const err = await rejectionOf(api.capture(dev, input));
      expect(err.code, what).toBe('INVALID_ARGUMENT');
    }
    expect((await rejectionOf(api.endSession(dev, { sessionId: 'no such/session' }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(api.endSession(dev, { sessionId: 'never-captured' }))).code).toBe('NOT_FOUND');
    const rows = await t.core.db.withTenant(T, (sql) => sql.query("SELECT 1 FROM trajectory_sessions WHERE session_id = 's-bad'"));
    expect(rows.rows).toEqual([]);
    expect(await newEvents()).toEqual([]);
    // A viewer may read but not record.
    const viewer = tenantCtx(T, 'vic', ['viewer']);
    expect((await rejectionOf(api.capture(viewer, { sessionId: 's-bad', toolName: 'x', success: true }))).code).toBe('FORBIDDEN');
    expect((await rejectionOf(api.endSession(viewer, { sessionId: 's-bad' }))).code).toBe('FORBIDDEN');
  });

  it('distils a significant session into one project note, once, with note.created', async () => {
    await api.capture(dev, { events: fixSession('s-fix', 'apollo') });
    const ended = await api.endSession(dev, { sessionId: 's-fix' });
    expect(ended).toMatchObject({ sessionId: 's-fix', segment: 1, ended: true, reason: 'ended', events: 4, projectId: 'apollo' });
    const jobs = distillJobs(await newEvents());
    expect(jobs).toHaveLength(1);
    await runDistill(jobs);

    const notes = await notesIn('project', 'apollo');
    expect(notes).toHaveLength(1);
    const note = notes[0] as Memory;
    expect(note.metadata).toMatchObject({ kind: 'note', sessionId: 's-fix', segment: 1, source: 'extractive' });
    expect(note.createdBy).toEqual({ userId: 'system', agentId: 'note-taker' });
    expect(note.content).toContain('What worked:');
    expect(note.content).toContain('runTests failed: 1 failing: invoice total rounds half-up; fixed by editFile, then runTests succeeded');
    expect(note.content).toContain('Sequence: readFile → runTests → editFile → runTests');
    expect(note.tags).toEqual(expect.arrayContaining(['note', 'procedural', 'runtests', 'editfile', 'errors']));
    const created = (await newEvents()).filter((e) => e.type === EVENT_TYPES.noteCreated);
    expect(created.map((e) => e.data)).toEqual([{ layer: 'project', scopeId: 'apollo', memoryId: note.id, sessionId: 's-fix', segment: 1, deduplicated: false } satisfies NoteCreatedEventData]);

    // The same job again (a stalled worker, an admin retry) and a second end: nothing new.
    await runDistill(jobs);
    const again = await api.endSession(dev, { sessionId: 's-fix' });
    expect(again).toMatchObject({ ended: false, segment: 1, reason: 'ended' });
    expect(await newEvents()).toEqual([]);
    expect(await notesIn('project', 'apollo')).toHaveLength(1);
  });

  it('writes no note for a session that only read', async () => {
    await api.capture(dev, {
      events: [
        { sessionId: 's-read', projectId: 'apollo', toolName: 'readFile', input: 'README.md', success: true },
        { sessionId: 's-read', toolName: 'search', input: 'invoice', success: true },
        // A name that sounds state-changing, flagged otherwise by the caller.
        { sessionId: 's-read', toolName: 'writeFile', input: '--dry-run', success: true, stateChanging: false },
      ],
    });
    const before = await notesIn('project', 'apollo');
    await api.endSession(dev, { sessionId: 's-read' });
    const events = await newEvents();
    await runDistill(distillJobs(events));
    expect(await notesIn('project', 'apollo')).toEqual(before);
    expect((await newEvents()).filter((e) => e.type === EVENT_TYPES.noteCreated)).toEqual([]);
    const state = await t.core.db.withTenant(T, (sql) => sql.query("SELECT status, reason FROM trajectory_notes WHERE session_id = 's-read'"));
    expect(state.rows).toEqual([{ status: 'skipped', reason: 'insignificant' }]);
  });

  it('counts user feedback and a stateChanging flag as significant', async () => {
    await api.capture(dev, { events: [{ sessionId: 's-fb', projectId: 'hermes', toolName: 'search', success: true }, { sessionId: 's-fb', toolName: 'feedback', input: 'great answer', success: true, feedback: { rating: 'positive' } }] });
    await api.capture(dev, { sessionId: 's-flag', projectId: 'hermes', toolName: 'lookup', success: true, stateChanging: true });
    await api.endSession(dev, { sessionId: 's-fb' });
    await api.endSession(dev, { sessionId: 's-flag' });
    await runDistill(distillJobs(await newEvents()));
    const notes = await notesIn('project', 'hermes');
    expect(notes.map((n) => n.metadata['sessionId']).sort()).toEqual(['s-fb', 's-flag']);
    expect(notes.find((n) => n.metadata['sessionId'] === 's-fb')?.content).toContain('User feedback (positive): great answer');
  });

  it('merges a near-identical note into the existing one (≥ 0.95) instead of adding a second', async () => {
    await api.capture(dev, { events: fixSession('s-dup-1', 'zeus') });
    await api.endSession(dev, { sessionId: 's-dup-1' });
    await runDistill(distillJobs(await newEvents()));
    const [first] = await notesIn('project', 'zeus');

    // Another session that did the same work on a file with a slightly different name.
    await api.capture(dev, { events: fixSession('s-dup-2', 'zeus', 'src/billing/invoices.ts') });
    await api.endSession(dev, { sessionId: 's-dup-2' });
    const processors = notesProcessors({ core: t.core, log: silent, llm: undefined });
    const [job] = distillJobs(await newEvents());
    const outcome: DistillOutcome = await createNoteDistiller({ ...t.core, llm: undefined }).distill(T, job!.event.data);
    expect(outcome).toMatchObject({ status: 'deduplicated', memoryId: first!.id });
    expect(outcome.status === 'deduplicated' && outcome.similarity).toBeGreaterThanOrEqual(0.95);
    expect(outcome.status === 'deduplicated' && outcome.similarity).toBeLessThan(1);
    await processors[DISTILL_JOB]!(job!); // a re-run of the same job: already written
    const notes = await notesIn('project', 'zeus');
    expect(notes.map((n) => n.id)).toEqual([first!.id]);
    expect(notes[0]?.content).toContain('src/billing/invoices.ts');
    const created = (await newEvents()).filter((e) => e.type === EVENT_TYPES.noteCreated).map((e) => e.data as NoteCreatedEventData);
    expect(created).toEqual([{ layer: 'project', scopeId: 'zeus', memoryId: first!.id, sessionId: 's-dup-2', segment: 1, deduplicated: true }]);
  });

  it('keeps the note of a session without a project at its session layer', async () => {
    await api.capture(dev, { events: fixSession('s-loose', undefined) });
    await api.endSession(dev, { sessionId: 's-loose' });
    await runDistill(distillJobs(await newEvents()));
    expect(await notesIn('session', 's-loose')).toHaveLength(1);
  });

  it('uses the project session.end names over the captured one', async () => {
    await api.capture(dev, { events: fixSession('s-named', 'old-project') });
    await api.endSession(dev, { sessionId: 's-named', projectId: 'new-project' });
    await runDistill(distillJobs(await newEvents()));
    expect(await notesIn('project', 'new-project')).toHaveLength(1);
    expect(await notesIn('project', 'old-project')).toHaveLength(0);
  });

  it('starts a new segment when an ended session captures again, and distils it on its own', async () => {
    await api.capture(dev, { events: fixSession('s-again', 'athena') });
    await api.endSession(dev, { sessionId: 's-again' });
    await runDistill(distillJobs(await newEvents()));
    await newEvents();
    const captured = await api.capture(dev, { sessionId: 's-again', toolName: 'deploy', input: 'prod', success: true });
    expect(captured.events[0]?.segment).toBe(2);
    const ended = await api.endSession(dev, { sessionId: 's-again' });
    expect(ended).toMatchObject({ segment: 2, ended: true, events: 1 });
    const events = await newEvents();
    expect(events.map((e) => e.type)).toEqual([EVENT_TYPES.sessionStarted, EVENT_TYPES.sessionEnded]);
    await runDistill(distillJobs(events));
    const notes = await notesIn('project', 'athena');
    expect(notes.map((n) => n.metadata['segment']).sort()).toEqual([1, 2]);
  });

  it('ends idle sessions in the sweep, which leads to their note', async () => {
    await api.capture(dev, { events: fixSession('s-idle', 'hera') });
    await api.capture(dev, { events: fixSession('s-closed', 'hera') });
    await api.endSession(dev, { sessionId: 's-closed' });
    await newEvents();
    const config = { ...t.core.config, notes: { ...t.core.config.notes, sessionIdleMs: 3_600_000 } };
    // Not idle for an hour yet: nothing ends.
    expect(await createSessionSweeper({ ...t.core, config }, silent).sweep()).toBe(0);
    expect(await newEvents()).toEqual([]);
    // With no idle time allowed every open session is idle; the ended one is not ended twice.
    const sweeper = createSessionSweeper({ ...t.core, config: { ...config, notes: { ...config.notes, sessionIdleMs: 0 } } }, silent);
    const ended = await sweeper.sweep();
    const events = await newEvents();
    const endedEvents = events.filter((e) => e.type === EVENT_TYPES.sessionEnded);
    expect(endedEvents.map((e) => (e.data as { sessionId: string }).sessionId)).toContain('s-idle');
    expect(endedEvents.map((e) => (e.data as { sessionId: string }).sessionId)).not.toContain('s-closed');
    expect(endedEvents.find((e) => (e.data as { sessionId: string }).sessionId === 's-idle')).toMatchObject({
      actor: { userId: 'system', agentId: 'session-sweeper' },
      data: { reason: 'idle', segment: 1, projectId: 'hera' },
    });
    expect(ended).toBe(endedEvents.length);
    await runDistill(distillJobs(events));
    expect((await notesIn('project', 'hera')).map((n) => n.metadata['sessionId'])).toContain('s-idle');
    expect(await sweeper.sweep()).toBe(0);
  });

  it('sweeps on its own timer once started, until stopped', async () => {
    await api.capture(dev, { sessionId: 's-timer', toolName: 'deploy', success: true });
    await newEvents();
    const notes = { ...t.core.config.notes, sessionIdleMs: 0, sweepIntervalMs: 20 };
    const sweeper = createSessionSweeper({ ...t.core, config: { ...t.core.config, notes } }, silent);
    sweeper.start();
    const deadline = Date.now() + 15_000;
    let ended: EventEnvelope[] = [];
    while (ended.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      ended = (await newEvents()).filter((e) => e.type === EVENT_TYPES.sessionEnded);
    }
    await sweeper.stop();
    expect(ended.map((e) => (e.data as { sessionId: string }).sessionId)).toEqual(['s-timer']);
  });

  it('lets the LLM write the note when one is configured, from a redacted transcript', async () => {
    const reply = {
      context: 'Fixing invoice rounding in the billing service.',
      whatWorked: ['Switching to banker rounding fixed the failing invoice test.'],
      keyPatterns: ['Run the focused test before and after each edit.'],
      pitfalls: ['Half-up rounding breaks invoice totals.'],
      tags: ['billing', 'Rounding Rules'],
    };
    llm.enqueue('not json at all', JSON.stringify(reply));
    const model = new OpenAiChatLlm({ url: llm.url, model: 'note-model', timeoutMs: 5000, retry: { attempts: 1 } });
    const processors = notesProcessors({ core: t.core, log: silent, llm: model });
    const events = fixSession('s-llm', 'ares');
    events[0] = { ...events[0]!, input: { path: 'src/billing/invoice.ts', token: apiKey } };
    await api.capture(dev, { events });
    await api.endSession(dev, { sessionId: 's-llm' });
    const [job] = distillJobs(await newEvents());

    // An unreadable reply fails the job (it retries); nothing is stored meanwhile.
    expect((await rejectionOf(processors[DISTILL_JOB]!(job!))).code).toBe('INTERNAL');
    expect(await notesIn('project', 'ares')).toHaveLength(0);
    await processors[DISTILL_JOB]!(job!);

    expect(llm.requests).toHaveLength(2);
    const prompt = llm.requests[1]?.body?.messages?.map((m) => m.content).join('\n') ?? '';
    expect(prompt).toContain('runTests (FAILED');
    expect(prompt).toContain('[REDACTED:');
    expect(prompt).not.toContain(apiKey);
    expect(llm.requests[1]?.body?.response_format).toEqual({ type: 'json_object' });
    const [note] = await notesIn('project', 'ares');
    expect(note?.metadata).toMatchObject({ kind: 'note', source: 'llm', model: 'note-model', sessionId: 's-llm' });
    expect(note?.content).toBe(
      [
        'Context: Fixing invoice rounding in the billing service.',
        'What worked:',
        '- Switching to banker rounding fixed the failing invoice test.',
        'Failures and fixes:',
        '- Half-up rounding breaks invoice totals.',
        'Key patterns:',
        '- Run the focused test before and after each edit.',
      ].join('\n'),
    );
    expect(note?.tags).toEqual(['note', 'procedural', 'billing', 'rounding-rules']);
    // A later run reuses the stored note: the model is not asked again.
    await processors[DISTILL_JOB]!(job!);
    expect(llm.requests).toHaveLength(2);
  });

  it("keeps each tenant's trajectories and sessions to itself, even with a forged tenant id", () => checkIsolation(t));

  it('serves capture and session end over REST routes', async () => {
    const routes = agentsRoutes(api);
    const route = (method: string, path: string) => routes.find((r) => r.method === method && r.path === path)!;
    const capture = await route('POST', '/v1/trajectories').handle({ tenant: dev, params: {}, query: {}, body: { sessionId: 's-rest', projectId: 'apollo', toolName: 'deploy', success: false } });
    expect(capture.status).toBe(201);
    // The path names the session; a body field cannot point the call elsewhere.
    const end = await route('POST', '/v1/sessions/:id/end').handle({ tenant: dev, params: { id: 's-rest' }, query: {}, body: { sessionId: 's-store' } });
    expect(end).toMatchObject({ status: 200, body: { sessionId: 's-rest', ended: true } });
    expect((await rejectionOf(route('POST', '/v1/sessions/:id/end').handle({ tenant: dev, params: { id: 's-rest' }, query: {}, body: { bogus: 1 } }))).code).toBe('INVALID_ARGUMENT');
  });
});

/** Row-level security on the trajectory tables, written the way buggy or hostile code would query. */
async function checkIsolation(t: TestCore): Promise<void> {
  const api = createAgentsApi(t.core);
  await api.capture(tenantCtx('victim'), { events: fixSession('shared-id', 'apollo') });
  const seen = await t.core.db.withTenant('attacker', async (sql) => ({
    events: (await sql.query("SELECT id FROM trajectory_events WHERE tenant_id = 'victim'")).rows,
    sessions: (await sql.query("SELECT session_id FROM trajectory_sessions WHERE tenant_id = 'victim'")).rows,
    updated: (await sql.query("UPDATE trajectory_sessions SET ended_at = now() WHERE tenant_id = 'victim'")).affectedRows,
  }));
  expect(seen).toEqual({ events: [], sessions: [], updated: 0 });
  // The same session id in another tenant is another session.
  expect((await rejectionOf(api.endSession(tenantCtx('attacker'), { sessionId: 'shared-id' }))).code).toBe('NOT_FOUND');
  const planted = await rejectionOf(
    t.core.db.withTenant('attacker', (sql) =>
      sql.query(
        `INSERT INTO trajectory_events (tenant_id, id, session_id, segment, ordinal, tool_name, success, actor) VALUES ('victim', gen_random_uuid(), 'x', 1, 1, 't', true, '{}')`,
      ),
    ),
  );
  expect(planted.message).toMatch(/row-level security/);
  const own = await t.core.db.withTenant('victim', (sql) => sql.query<{ n: number }>("SELECT count(*)::int AS n FROM trajectory_events WHERE session_id = 'shared-id'"));
  expect(own.rows).toEqual([{ n: 4 }]);
  expect(await api.endSession(tenantCtx('victim'), { sessionId: 'shared-id' })).toMatchObject({ ended: true, events: 4 });
}

const pgUrl = backends().includes('postgres');
describe.skipIf(!pgUrl)('note-taking on PostgreSQL', () => {
  let t: TestCore;

  beforeAll(async () => {
    t = await openTestCore('postgres');
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it("keeps each tenant's trajectories and sessions to itself, even with a forged tenant id", () => checkIsolation(t));
});
