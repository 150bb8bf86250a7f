import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CommandSandbox,
  MetaAgent,
  MetaApi,
  MetaRunStore,
  createAgentsApi,
  createMetaAgent,
  createMetaApi,
  type AgentsApi,
} from '../../src/cca/index.js';
import { EventLog } from '../../src/events/index.js';
import { EVENT_TYPES, type EventEnvelope, type MetaFinishedEventData, type MetaIterationEventData, type MetaRun } from '../../src/protocol/index.js';
import { createLogger } from '../../src/obs/index.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';
import { startLlmServer, type LlmServer, type RecordedLlmRequest } from '../support/llm-server.js';

/** The check every command run uses: the solution must be the single line `fixed`. */
const CHECK = ['sh', '-c', 'if grep -qx fixed solution.txt; then echo ok; else echo "AssertionError: expected fixed, got $(cat solution.txt) in iteration $AETERNA_META_ITERATION"; exit 1; fi'];

const reply = (solution: string, rationale: string) => JSON.stringify({ solution, rationale });
const userPrompt = (req: RecordedLlmRequest | undefined) => req?.body?.messages?.find((m) => m.role === 'user')?.content ?? '';

describe.each(backends())('Meta-Agent (%s)', (backend) => {
  let t: TestCore;
  let llm: LlmServer;
  let api: MetaApi;
  let agent: MetaAgent;
  let agents: AgentsApi;
  let store: MetaRunStore;
  const dev = tenantCtx('meta-co', 'alice', ['developer']);
  const admin = tenantCtx('meta-co', 'root', ['admin']);

  async function events(tenantId: string, type: string): Promise<EventEnvelope[]> {
    const page = await t.core.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, 0, 10_000));
    return page.events.filter((e) => e.type === type);
  }
  const ofRun = (list: EventEnvelope[], runId: string) => list.filter((e) => (e.data as { runId?: string }).runId === runId);

  beforeAll(async () => {
    llm = await startLlmServer();
    t = await openTestCore(backend, {
      AETERNA_LLM_URL: llm.url,
      AETERNA_LLM_MODEL: 'meta-test',
      AETERNA_META_COMMANDS: 'sh',
      AETERNA_META_MAX_ITERATIONS: '5',
      AETERNA_META_TEST_TIMEOUT_MS: '20000',
    });
    api = createMetaApi(t.core);
    agent = createMetaAgent(t.core, { pollMs: 25 });
    agents = createAgentsApi(t.core);
    store = new MetaRunStore(t.core.db, t.core.commits);
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await llm?.close();
  });

  it('builds, tests in the sandbox, improves from the failure and stops when the test passes', async () => {
    llm.enqueue(reply('broken', 'first attempt'), reply('fixed', 'print the word fixed'));
    const before = llm.requests.length;
    const started = await api.start(admin, { goal: 'Write the word that makes the check pass', testCommand: CHECK, maxIterations: 3 });
    expect(started).toMatchObject({ status: 'queued', test: { kind: 'command', argv: CHECK }, maxIterations: 3 });
    expect(ofRun(await events('meta-co', EVENT_TYPES.metaStarted), started.runId)).toHaveLength(1);

    const run = await agent.run('meta-co', started.runId);
    expect(run).toMatchObject({ status: 'succeeded', stopReason: 'passed', solution: 'fixed', iterationsDone: 2, escalation: null });
    expect(llm.requests.length - before).toBe(2);
    // Build carries the goal and the test; improve carries the failing output of the sandboxed check.
    expect(userPrompt(llm.requests[before])).toContain('Write the word that makes the check pass');
    expect(userPrompt(llm.requests[before])).toContain('exit code 0 passes');
    expect(userPrompt(llm.requests[before + 1])).toContain('AssertionError: expected fixed, got broken in iteration 1');
    expect(llm.requests[before]?.body?.response_format).toEqual({ type: 'json_object' });

    const full = await api.get(dev, { runId: started.runId });
    expect(full.iterations?.map((i) => [i.iteration, i.source, i.test?.passed, i.test?.via])).toEqual([
      [1, 'build', false, 'command'],
      [2, 'improve', true, 'command'],
    ]);
    const streamed = ofRun(await events('meta-co', EVENT_TYPES.metaIteration), started.runId).map((e) => e.data as MetaIterationEventData);
    expect(streamed.map((d) => `${d.iteration}:${d.phase}`)).toEqual(['1:build', '1:test', '2:improve', '2:test']);
    const finished = ofRun(await events('meta-co', EVENT_TYPES.metaFinished), started.runId);
    expect(finished.map((e) => (e.data as MetaFinishedEventData).status)).toEqual(['succeeded']);

    // The failure was filed with hindsight and the fix that passed became its resolution.
    const known = await agents.query(dev, { errorType: 'TestFailure', message: 'AssertionError: expected fixed, got broken in iteration 1' });
    expect(known.patterns[0]?.resolutions.map((r) => [r.resolution, r.successes])).toEqual([['print the word fixed', 1]]);
  });

  it('looks up hindsight before asking for a fix, and records how the known fix did', async () => {
    llm.enqueue(reply('broken', 'same mistake again'), reply('fixed', 'applied the known fix'));
    const before = llm.requests.length;
    const started = await api.start(admin, { goal: 'Make the check pass, second time round', testCommand: CHECK });
    const run = await agent.run('meta-co', started.runId);
    expect(run.status).toBe('succeeded');
    const improve = userPrompt(llm.requests[before + 1]);
    expect(improve).toContain('Fixes that resolved similar failures before');
    expect(improve).toContain('print the word fixed');
    const full = await api.get(dev, { runId: started.runId });
    expect(full.iterations?.[1]?.hints.map((h) => h.resolution)).toEqual(['print the word fixed']);
    const known = await agents.query(dev, { errorType: 'TestFailure', message: 'AssertionError: expected fixed, got broken in iteration 1' });
    expect(known.patterns[0]?.resolutions.find((r) => r.resolution === 'print the word fixed')?.successes).toBe(2);
  });

  it('ends with an escalation report when the iterations run out', async () => {
    llm.enqueue(reply('nope', 'try one'), reply('still nope', 'try two'));
    const started = await api.start(admin, { goal: 'An impossible goal', testCommand: CHECK, maxIterations: 2 });
    const run = await agent.run('meta-co', started.runId);
    expect(run).toMatchObject({ status: 'failed', stopReason: 'max_iterations', solution: 'still nope', iterationsDone: 2 });
    expect(run.escalation).toMatchObject({ reason: 'max_iterations', goal: 'An impossible goal', lastSolution: 'still nope' });
    expect(run.escalation?.iterations.map((i) => [i.iteration, i.passed])).toEqual([
      [1, false],
      [2, false],
    ]);
    expect(run.escalation?.iterations[1]?.outputTail).toContain('got still nope');
    expect(run.escalation?.patternIds.length).toBeGreaterThan(0);
    expect(run.escalation?.summary).toContain('hindsight.resolve');
    const finished = ofRun(await events('meta-co', EVENT_TYPES.metaFinished), started.runId).map((e) => e.data as MetaFinishedEventData);
    expect(finished).toMatchObject([{ status: 'failed', reason: 'max_iterations', escalation: { reason: 'max_iterations' } }]);
  });

  it('tests through the caller when no command is given, and refuses a verdict nobody asked for', async () => {
    llm.enqueue(reply('draft', 'first draft'), reply('final', 'addressed the review'));
    const started = await api.start(dev, { goal: 'Draft a release note', maxIterations: 3 });
    expect(started.test).toEqual({ kind: 'callback' });
    const running = agent.run('meta-co', started.runId);

    const asked = async (iteration: number) => {
      for (let i = 0; i < 400; i++) {
        const requests = ofRun(await events('meta-co', EVENT_TYPES.metaTest), started.runId);
        if (requests.some((e) => (e.data as { iteration: number }).iteration === iteration)) return requests;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no meta.test for iteration ${iteration}`);
    };
    const first = await asked(1);
    expect(first[0]?.data).toMatchObject({ iteration: 1, solution: 'draft' });
    expect(await rejectionOf(api.testResult(dev, { runId: started.runId, iteration: 2, passed: true }))).toMatchObject({ code: 'CONFLICT' });
    await api.testResult(dev, { runId: started.runId, iteration: 1, passed: false, output: 'Reviewer: mention the migration' });
    expect(await rejectionOf(api.testResult(dev, { runId: started.runId, iteration: 1, passed: true }))).toMatchObject({ code: 'CONFLICT' });
    await asked(2);
    await api.testResult(dev, { runId: started.runId, iteration: 2, passed: true });
    const run = await running;
    expect(run).toMatchObject({ status: 'succeeded', solution: 'final', iterationsDone: 2 });
    expect(userPrompt(llm.requests.at(-1))).toContain('Reviewer: mention the migration');
    expect(await rejectionOf(api.testResult(dev, { runId: started.runId, iteration: 3, passed: true }))).toMatchObject({ code: 'CONFLICT' });
  });

  it('stops when the caller never answers, and when the time budget runs out', async () => {
    llm.enqueue(reply('unanswered', 'waiting'));
    const silent = await api.start(dev, { goal: 'Nobody will check this', testTimeoutMs: 300 });
    const timedOut = await agent.run('meta-co', silent.runId);
    expect(timedOut).toMatchObject({ status: 'failed', stopReason: 'test_timeout', escalation: { reason: 'test_timeout' } });

    llm.enqueue({ hang: true });
    const slow = await api.start(dev, { goal: 'The model never answers', timeBudgetMs: 1000 });
    const outOfTime = await agent.run('meta-co', slow.runId);
    expect(outOfTime).toMatchObject({ status: 'failed', stopReason: 'time_budget', iterationsDone: 0 });
  });

  it('is cancelled at its next step', async () => {
    llm.enqueue(reply('pending', 'waiting for a verdict'));
    const started = await api.start(dev, { goal: 'Cancel me' });
    const running = agent.run('meta-co', started.runId);
    for (let i = 0; i < 400 && ofRun(await events('meta-co', EVENT_TYPES.metaTest), started.runId).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    const cancelled = await api.cancel(dev, { runId: started.runId });
    expect(['running', 'cancelled']).toContain(cancelled.status);
    expect(await running).toMatchObject({ status: 'cancelled', stopReason: 'cancelled' });
    // A queued run is cancelled at once, and its job then leaves it alone.
    const queued = await api.start(dev, { goal: 'Cancelled before it starts' });
    expect(await api.cancel(dev, { runId: queued.runId })).toMatchObject({ status: 'cancelled' });
    const before = llm.requests.length;
    expect(await agent.run('meta-co', queued.runId)).toMatchObject({ status: 'cancelled' });
    expect(llm.requests.length).toBe(before);
  });

  it('resumes after a crash: a candidate written before the crash is tested, not asked for again', async () => {
    const started = await api.start(admin, { goal: 'Resume me', testCommand: CHECK });
    // As if a worker died after saving iteration 1's candidate, before testing it.
    await store.markRunning('meta-co', started.runId, new Date());
    await store.saveCandidate('meta-co', started.runId, { iteration: 1, source: 'build', solution: 'fixed', rationale: 'written before the crash', hints: [] });
    const before = llm.requests.length;
    const run = await agent.run('meta-co', started.runId);
    expect(run).toMatchObject({ status: 'succeeded', solution: 'fixed', iterationsDone: 1 });
    expect(llm.requests.length).toBe(before);
    // A finished run is left as it is.
    expect(await agent.run('meta-co', started.runId)).toMatchObject({ status: 'succeeded' });
    expect(ofRun(await events('meta-co', EVENT_TYPES.metaFinished), started.runId)).toHaveLength(1);
  });

  it('fails with llm_error when the model keeps failing, and budget_exhausted when the tenant is out of tokens', async () => {
    llm.enqueue({ status: 400, json: { error: { message: 'bad model' } } });
    const broken = await api.start(dev, { goal: 'The model is broken' });
    expect(await agent.run('meta-co', broken.runId)).toMatchObject({ status: 'failed', stopReason: 'llm_error' });

    await t.core.budgets.setLimits('meta-poor', { llm: { day: 10 } }, { userId: 'root' });
    const poor = tenantCtx('meta-poor', 'bob', ['developer']);
    const before = llm.requests.length;
    const started = await api.start(poor, { goal: 'A goal whose prompt alone is far more than ten tokens long' });
    expect(await agent.run('meta-poor', started.runId)).toMatchObject({ status: 'failed', stopReason: 'budget_exhausted', escalation: { reason: 'budget_exhausted' } });
    expect(llm.requests.length).toBe(before);
  });

  it('strips NUL from what the model proposes, and ends an empty proposal as llm_error', async () => {
    llm.enqueue(JSON.stringify({ solution: 'fi\u0000xed', rationale: 'with a \u0000 in it' }));
    const started = await api.start(admin, { goal: 'Survive a NUL', testCommand: CHECK, maxIterations: 1 });
    expect(await agent.run('meta-co', started.runId)).toMatchObject({ status: 'succeeded', solution: 'fixed' });

    llm.enqueue('   ');
    const empty = await api.start(dev, { goal: 'The model says nothing' });
    expect(await agent.run('meta-co', empty.runId)).toMatchObject({ status: 'failed', stopReason: 'llm_error' });
  });

  it('ends a run whose job is abandoned after its last try, once', async () => {
    const started = await api.start(dev, { goal: 'Its job will be dead-lettered' });
    await agent.abandon('meta-co', started.runId);
    const run = await api.get(dev, { runId: started.runId });
    expect(run).toMatchObject({ status: 'failed', stopReason: 'internal_error', escalation: { reason: 'internal_error' } });
    await agent.abandon('meta-co', started.runId);
    expect(ofRun(await events('meta-co', EVENT_TYPES.metaFinished), started.runId)).toHaveLength(1);
  });

  it('validates input, checks roles and keeps tenants apart', async () => {
    const bad = async (input: unknown, ctx = admin) => (await rejectionOf(api.start(ctx, input))).code;
    expect(await bad({})).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: '   ' })).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: 'x', maxIterations: 0 })).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: 'x', maxIterations: 6 })).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: 'x', timeBudgetMs: 10 })).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: 'x', testTimeoutMs: 20_001 })).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: 'x', unknown: true })).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: 'x\u0000y' })).toBe('INVALID_ARGUMENT');
    expect(await bad({ goal: 'x', testCommand: '' })).toBe('INVALID_ARGUMENT');
    // Only programs on the server's allow-list run, and only for admins.
    expect(await bad({ goal: 'x', testCommand: 'rm -rf /' })).toBe('FORBIDDEN');
    expect(await bad({ goal: 'x', testCommand: '/bin/sh -c true' })).not.toBe(undefined);
    expect(await bad({ goal: 'x', testCommand: CHECK }, dev)).toBe('FORBIDDEN');
    expect(await bad({ goal: 'x' }, tenantCtx('meta-co', 'val', ['viewer']))).toBe('FORBIDDEN');

    const started = await api.start(dev, { goal: 'Mine' });
    expect((await rejectionOf(api.get(tenantCtx('other-co', 'mallory', ['admin']), { runId: started.runId }))).code).toBe('NOT_FOUND');
    expect((await rejectionOf(api.testResult(tenantCtx('other-co', 'mallory', ['admin']), { runId: started.runId, iteration: 1, passed: true }))).code).toBe('NOT_FOUND');
    expect((await rejectionOf(api.get(dev, { runId: 'not-a-uuid' }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(api.testResult(dev, { runId: started.runId, iteration: 0, passed: true }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(api.testResult(dev, { runId: started.runId, iteration: 1, passed: 'yes' }))).code).toBe('INVALID_ARGUMENT');
    await api.cancel(dev, { runId: started.runId });
  });

  it('refuses to start without a language model, and a worker without one ends the run instead of pretending', async () => {
    const offline = new MetaApi({ store, sandbox: new CommandSandbox({ allow: [], maxTimeoutMs: 1000, maxOutputBytes: 1024, cpuSeconds: 0, memoryMb: 0 }), config: t.config.meta, llmConfigured: false });
    const refused = await rejectionOf(offline.start(dev, { goal: 'anything' }));
    expect(refused).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'llm_not_configured' } });
    expect(refused.message).toContain('AETERNA_LLM_URL');

    const started: MetaRun = await api.start(dev, { goal: 'Run by a worker without a model' });
    const modelless = createMetaAgent({ ...t.core, meteredLlm: undefined }, { log: createLogger('silent') });
    expect(await modelless.run('meta-co', started.runId)).toMatchObject({ status: 'failed', stopReason: 'llm_not_configured', escalation: { reason: 'llm_not_configured' } });
  });
});
