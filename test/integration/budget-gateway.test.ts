import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashingEmbedder } from '../../src/embed/index.js';
import { countTokens } from '../../src/obs/index.js';
import type { BudgetEventData, EventEnvelope } from '../../src/protocol/index.js';
import { tokenFor } from '../support/backends.js';
import { openSocket, startTestGateway, until, type TestGateway } from '../support/gateway.js';

/**
 * Budgets end to end, through the wiring in src/core.ts and gateway/app.ts: an admin sets a limit
 * over REST, memory writes embed through a (local, OpenAI-compatible) billable model, the warning
 * arrives live on the `budget` topic, the call that would pass the limit gets HTTP 429 without
 * reaching the model, and a cache hit still goes through at the limit.
 */
describe('token budgets through the gateway', () => {
  let gw: TestGateway;
  let server: http.Server;
  let embedded = 0;
  let socket: Socket | undefined;

  beforeAll(async () => {
    const model = new HashingEmbedder(16);
    server = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      req.on('end', () => {
        const input = (JSON.parse(raw) as { input: string[] }).input;
        embedded += input.length;
        void model.embed(input).then((vectors) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ data: vectors.map((v, index) => ({ index, embedding: Array.from(v) })) }));
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    gw = await startTestGateway({
      AETERNA_EMBED_URL: `http://127.0.0.1:${port}/v1`,
      AETERNA_EMBED_MODEL: 'budget-e2e-embed',
      AETERNA_EMBED_DIMS: '16',
      AETERNA_RELAY_TICK_MS: '100',
    });
  });
  afterAll(async () => {
    socket?.close();
    await gw?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('sets limits over REST, warns on the budget topic, answers 429 at the limit, and lets cache hits through', async () => {
    const texts = [
      'Alpha team ships the billing gateway on monday morning.',
      'Beta team migrates the search indexer onto kafka in q3.',
      'Gamma customers want encrypted invoices for every renewal.',
      'Delta runbook: restart the scheduler then page the on-call.',
    ];
    const firstThree = texts.slice(0, 3).reduce((n, t) => n + countTokens(t), 0);
    const limit = firstThree + 1; // the fourth text does not fit
    const admin = await tokenFor({ tenantId: 'budget-e2e', userId: 'root', roles: ['admin'] });
    const headers = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    const put = (body: unknown) => fetch(`${gw.url}/v1/admin/budgets`, { method: 'PUT', headers, body: JSON.stringify(body) });

    expect((await put({ embed: { day: -1 } })).status).toBe(400);
    const set = await put({ embed: { day: limit } });
    expect(set.status).toBe(200);
    expect(await set.json()).toMatchObject({ budgets: { embed: { day: { limit, source: 'tenant', used: 0 } } } });
    const developer = await tokenFor({ tenantId: 'budget-e2e', userId: 'dev', roles: ['developer'] });
    expect((await fetch(`${gw.url}/v1/admin/budgets`, { headers: { authorization: `Bearer ${developer}` } })).status).toBe(403);

    socket = await openSocket(gw.url, admin);
    const events: EventEnvelope<BudgetEventData>[] = [];
    socket.on('budget.warning', (e: EventEnvelope<BudgetEventData>) => events.push(e));
    expect(await socket.emitWithAck('subscribe', { topics: ['budget'] })).toMatchObject({ ok: true });

    const add = (content: string) => fetch(`${gw.url}/v1/memories`, { method: 'POST', headers, body: JSON.stringify({ layer: 'org', orgId: 'o', content }) });
    const statuses: number[] = [];
    for (const content of texts) statuses.push((await add(content)).status);
    expect(statuses).toEqual([201, 201, 201, 429]);
    expect(embedded).toBe(3);
    await until(() => events.length > 0, 'budget.warning on the budget topic');
    expect(events[0]).toMatchObject({ type: 'budget.warning', data: { kind: 'embed', period: 'day', limit } });

    const refused = await add(texts[3] as string);
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ code: 'RATE_LIMITED', details: { kind: 'embed', period: 'day', limit } });
    expect((await add(texts[0] as string)).status).toBe(200); // an exact cache hit: free, then deduplicated

    const usage = await (await fetch(`${gw.url}/v1/admin/usage`, { headers })).json();
    expect(usage).toMatchObject({
      tenantId: 'budget-e2e',
      embedCache: { scope: 'process', semanticEnabled: true, model: 'budget-e2e-embed', exact: { hits: 1 } },
      answerCache: { scope: 'process', context: { hits: 0, misses: 0, stale: 0 }, search: { hits: 0, misses: 0, stale: 0 } },
      tokens: { embed: { day: { used: firstThree, limit } } },
    });
    const ack = await socket.emitWithAck('budget.get', {});
    expect(ack).toMatchObject({ ok: true, data: { budgets: { embed: { day: { used: firstThree } } } } });
  });
});
