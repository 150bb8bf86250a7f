import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ack, EventEnvelope, MetaFinishedEventData, MetaIterationEventData, MetaRun, MetaTestRequestEventData } from '../../src/protocol/index.js';
import { tokenFor } from '../support/backends.js';
import { openSocket, restCall, startTestGateway, until, type RestReply, type TestGateway } from '../support/gateway.js';
import { requireService } from '../support/index.js';
import { startLlmServer, type LlmServer } from '../support/llm-server.js';

const python = requireService('python');
const TESTER = path.join(path.dirname(fileURLToPath(import.meta.url)), '../e2e/python/meta_tester.py');

/**
 * The Meta-Agent end to end in embedded mode: `meta.run` over the socket or REST commits the run
 * and its `meta.started` event, the relay hands it to the in-process `cca.meta` job, and progress
 * streams on the `meta` topic to subscribers; a caller-side test answers `meta.test`.
 */
describe('Meta-Agent through the gateway (embedded, in-process jobs)', () => {
  let g: TestGateway;
  let llm: LlmServer;
  let dev: string;
  let admin: string;
  let socket: Socket;
  const seen: EventEnvelope[] = [];

  const call = (method: string, route: string, token: string, body?: unknown): Promise<RestReply> => restCall(g.url, method, route, token, body);
  function emit<T>(event: string, payload: unknown): Promise<Ack<T>> {
    return new Promise((resolve) => socket.emit(event, payload, resolve));
  }
  const finishedOf = (runId: string) => seen.find((e) => e.type === 'meta.finished' && (e.data as MetaFinishedEventData).runId === runId);

  beforeAll(async () => {
    // The model proposes "broken" first, then "fixed" for every later request of a run.
    llm = await startLlmServer({
      handler: (req) => {
        const prompt = req.body?.messages?.find((m) => m.role === 'user')?.content ?? '';
        const improving = prompt.includes('Your previous solution');
        return JSON.stringify({ solution: improving ? 'fixed' : 'broken', rationale: improving ? 'said fixed' : 'first guess' });
      },
    });
    g = await startTestGateway(
      { AETERNA_RELAY_TICK_MS: '100', AETERNA_LLM_URL: llm.url, AETERNA_LLM_MODEL: 'meta-test', AETERNA_META_COMMANDS: 'grep' },
      { jobs: true },
    );
    dev = await tokenFor({ tenantId: 'meta-gw', userId: 'alice', roles: ['developer'] });
    admin = await tokenFor({ tenantId: 'meta-gw', userId: 'root', roles: ['admin'] });
    socket = await openSocket(g.url, dev);
    for (const type of ['meta.started', 'meta.iteration', 'meta.test', 'meta.finished']) socket.on(type, (e: EventEnvelope) => seen.push(e));
    expect(await emit('subscribe', { topics: ['meta'] })).toMatchObject({ ok: true, data: { rooms: ['t:meta-gw:topic:meta'] } });
  }, 60_000);
  afterAll(async () => {
    socket?.close();
    await g?.close();
    await llm?.close();
  });

  it('streams a socket-tested run: meta.test is answered with meta.testResult until it passes', async () => {
    socket.on('meta.test', (e: EventEnvelope<MetaTestRequestEventData>) => {
      const passed = e.data.solution === 'fixed';
      socket.emit('meta.testResult', { runId: e.data.runId, iteration: e.data.iteration, passed, output: passed ? 'ok' : 'expected fixed' });
    });
    const started = await emit<MetaRun>('meta.run', { goal: 'Answer with the magic word' });
    expect(started).toMatchObject({ ok: true, data: { status: 'queued', test: { kind: 'callback' } } });
    const runId = started.ok ? started.data.runId : '';
    await until(() => finishedOf(runId) !== undefined, 'meta.finished', 30_000);
    expect(finishedOf(runId)?.data).toMatchObject({ status: 'succeeded', reason: 'passed', iterations: 2 });
    const phases = seen
      .filter((e) => e.type === 'meta.iteration' && (e.data as MetaIterationEventData).runId === runId)
      .map((e) => `${(e.data as MetaIterationEventData).iteration}:${(e.data as MetaIterationEventData).phase}`);
    expect(phases).toEqual(['1:build', '1:test', '2:improve', '2:test']);
    const got = await emit<MetaRun>('meta.get', { runId });
    expect(got).toMatchObject({ ok: true, data: { status: 'succeeded', solution: 'fixed', iterations: [{ test: { passed: false, via: 'callback' } }, { test: { passed: true } }] } });
    socket.off('meta.test');
  });

  it('runs an admin command test started over REST, and answers bad input with stable codes', async () => {
    const started = await call('POST', '/v1/meta/runs', admin, { goal: 'Print fixed', testCommand: ['grep', '-qx', 'fixed', 'solution.txt'] });
    expect(started).toMatchObject({ status: 202, body: { status: 'queued', test: { kind: 'command' } } });
    const runId = started.body['runId'] as string;
    await until(() => finishedOf(runId) !== undefined, 'meta.finished of the command run', 30_000);
    const got = await call('GET', `/v1/meta/runs/${runId}`, dev);
    expect(got).toMatchObject({ status: 200, body: { status: 'succeeded', solution: 'fixed', iterationsDone: 2 } });

    const listed = await call('GET', '/v1/meta/runs?status=succeeded&limit=10', dev);
    expect(listed.status).toBe(200);
    expect((listed.body['runs'] as MetaRun[]).map((r) => r.runId)).toContain(runId);
    expect((listed.body['runs'] as MetaRun[]).every((r) => r.status === 'succeeded' && r.iterations === undefined)).toBe(true);
    expect(await call('GET', '/v1/meta/runs?limit=0', dev)).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', '/v1/meta/runs?status=bogus', dev)).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await emit<{ runs: MetaRun[] }>('meta.list', { limit: 1 })).toMatchObject({ ok: true, data: { runs: [{ runId }] } });
    expect(await call('POST', '/v1/meta/runs', admin, { goal: 'x', testCommand: 'sh -c true' })).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect(await call('POST', '/v1/meta/runs', dev, { goal: 'x', testCommand: 'grep x' })).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect(await call('POST', '/v1/meta/runs', dev, { goal: 'x', maxIterations: 'three' })).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', '/v1/meta/runs/not-a-uuid', dev)).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', '/v1/meta/runs/00000000-0000-4000-8000-000000000000', dev)).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    expect(await call('POST', `/v1/meta/runs/${runId}/test-result`, dev, { iteration: 1, passed: true })).toMatchObject({ status: 409, body: { code: 'CONFLICT' } });
    const other = await tokenFor({ tenantId: 'meta-other', userId: 'mallory', roles: ['admin'] });
    expect(await call('GET', `/v1/meta/runs/${runId}`, other)).toMatchObject({ status: 404 });
  });

  it.skipIf(!python)('lets a python-socketio agent be the test over the JSON endpoint', async () => {
    const child = spawn(python as string, [TESTER, g.url, dev], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, stderr).toBe(0);
    const [first, last] = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(first).toMatchObject({ subscribed: { ok: true }, bad: { ok: false, error: { code: 'INVALID_ARGUMENT' } }, started: { ok: true } });
    expect(last).toMatchObject({ finished: { status: 'succeeded', iterations: 2 }, run: { ok: true, data: { solution: 'fixed' } } });
    expect((last?.['verdicts'] as unknown[]).length).toBe(2);
  }, 90_000);
});
