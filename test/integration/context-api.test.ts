import type { Socket } from 'socket.io-client';
import uWS from 'uWebSockets.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contextRoutes } from '../../gateway/http/context-routes.js';
import { createPipeline } from '../../gateway/http/pipeline.js';
import { mountRoutes } from '../../gateway/http/uws.js';
import { createContextExtension } from '../../gateway/realtime/context.js';
import { createRealtime, type Realtime } from '../../gateway/realtime/server.js';
import { createLogger } from '../../src/obs/index.js';
import type { Ack, ContextAssembleResult, Memory, MemorySummaries } from '../../src/protocol/index.js';
import { tenantCtx, tokenFor } from '../support/backends.js';
import { openSocket, restCall } from '../support/gateway.js';
import { openContextFixture, type ContextFixture } from './context-support.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/**
 * context.assemble and memory.summaries over the transports: the routes and the socket extension
 * mounted on a uWS app exactly as the gateway mounts its others, over embedded PGlite.
 */
describe('Context Architect over REST and the socket', () => {
  let f: ContextFixture;
  let realtime: Realtime;
  let app: uWS.TemplatedApp;
  let listen: uWS.us_listen_socket;
  let url: string;
  let dev: string;
  let viewer: string;
  let other: string;
  let socket: Socket;
  let memory: Memory;

  const call = (method: string, path: string, token: string | undefined, body?: unknown): Promise<Reply> => restCall(url, method, path, token, body);

  function emit<T>(event: string, payload: unknown): Promise<Ack<T>> {
    return new Promise((resolve) => socket.emit(event, payload, resolve));
  }

  beforeAll(async () => {
    f = await openContextFixture('pglite');
    const log = createLogger('silent');
    app = uWS.App();
    realtime = createRealtime({ app, tokens: f.t.core.tokens, config: f.t.config.realtime, log });
    realtime.use(createContextExtension(f.api));
    mountRoutes(app, contextRoutes(f.api), createPipeline(f.t.core.tokens, log), { maxBodyBytes: f.t.config.limits.maxBodyBytes, log, inflight: { count: 0 } });
    const port = await new Promise<number>((resolve, reject) =>
      app.listen('127.0.0.1', 0, (s) => {
        if (!s) return reject(new Error('could not listen'));
        listen = s;
        resolve(uWS.us_socket_local_port(s));
      }),
    );
    url = `http://127.0.0.1:${port}`;
    [dev, viewer, other] = await Promise.all([
      tokenFor({ tenantId: 'acme', userId: 'alice', roles: ['developer'] }),
      tokenFor({ tenantId: 'acme', userId: 'val', roles: ['viewer'] }),
      tokenFor({ tenantId: 'globex', userId: 'mallory', roles: ['admin'] }),
    ]);
    memory = (
      await f.t.core.memory.add(tenantCtx('acme'), {
        layer: 'project',
        projectId: 'apollo',
        content: Array.from({ length: 30 }, (_, i) => `Step ${i} of the deploy runbook checks the ${['canary', 'rollback', 'dashboard'][i % 3]} before moving on.`).join(' '),
      })
    ).memory;
    socket = await openSocket(url, viewer);
  }, 60_000);
  afterAll(async () => {
    socket?.close();
    await realtime?.close();
    if (listen) uWS.us_listen_socket_close(listen);
    await f?.close();
  });

  it('POST /v1/context/assemble packs context for a token holder', async () => {
    const reply = await call('POST', '/v1/context/assemble', viewer, { query: 'deploy runbook canary', tokenBudget: 300 });
    expect(reply.status).toBe(200);
    const body = reply.body as unknown as ContextAssembleResult;
    expect(body).toMatchObject({ budget: 300, cached: false });
    expect(body.used.map((u) => u.memoryId)).toEqual([memory.id]);
    expect(body.tokens).toBeLessThanOrEqual(300);
    expect(body.context).toMatch(/^\[1\] project:apollo\n/);
    const again = await call('POST', '/v1/context/assemble', viewer, { query: 'deploy runbook canary', tokenBudget: 300 });
    expect(again.body).toEqual({ ...body, cached: true });
  });

  it('answers bad input with 400 naming the field, and a missing token with 401', async () => {
    const low = await call('POST', '/v1/context/assemble', dev, { query: 'x', tokenBudget: 50 });
    expect(low.status).toBe(400);
    expect(low.body).toMatchObject({ code: 'INVALID_ARGUMENT', details: { issues: [{ path: 'tokenBudget' }] } });
    expect((await call('POST', '/v1/context/assemble', dev, '{"query":')).status).toBe(400);
    expect((await call('POST', '/v1/context/assemble', undefined, { query: 'x' })).status).toBe(401);
  });

  it("gives another tenant nothing of this one's memories", async () => {
    const reply = await call('POST', '/v1/context/assemble', other, { query: 'deploy runbook canary' });
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ context: '', used: [], tokens: 0 });
    expect((await call('GET', `/v1/memories/${memory.id}/summaries`, other)).status).toBe(404);
  });

  it('GET /v1/memories/:id/summaries shows the three levels', async () => {
    const reply = await call('GET', `/v1/memories/${memory.id}/summaries`, viewer);
    expect(reply.status).toBe(200);
    const body = reply.body as unknown as MemorySummaries;
    expect(body).toMatchObject({ memoryId: memory.id, contentHash: memory.contentHash, source: 'extractive' });
    expect(body.levels.sentence.tokens).toBeLessThanOrEqual(50);
    expect(body.levels.paragraph.tokens).toBeLessThanOrEqual(200);
    expect(body.levels.detailed.tokens).toBeLessThanOrEqual(500);
    expect((await call('GET', '/v1/memories/not-a-uuid/summaries', viewer)).status).toBe(400);
  });

  it('context.assemble and memory.summaries over the socket, acked, with the same errors', async () => {
    const ack = await emit<ContextAssembleResult>('context.assemble', { query: 'deploy runbook rollback dashboard', tokenBudget: 200 });
    expect(ack.ok).toBe(true);
    if (ack.ok) {
      expect(ack.data.used.map((u) => u.memoryId)).toEqual([memory.id]);
      expect(ack.data.tokens).toBeLessThanOrEqual(200);
    }
    const bad = await emit<ContextAssembleResult>('context.assemble', { query: 'x', tokenBudget: 40_000 });
    expect(bad).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    const summaries = await emit<MemorySummaries>('memory.summaries', { memoryId: memory.id });
    expect(summaries).toMatchObject({ ok: true, data: { memoryId: memory.id } });
  });
});
