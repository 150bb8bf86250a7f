import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeIdFor } from '../../src/graph/index.js';
import type { Ack, EventEnvelope, GraphChangedData, GraphNeighborsResult, GraphSearchResult } from '../../src/protocol/index.js';
import { tokenFor } from '../support/backends.js';
import { openSocket, restCall, startTestGateway, until, type TestGateway } from '../support/gateway.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/**
 * The whole path in embedded mode: a memory written over REST is relayed, its graph.extract job
 * runs in-process, the graph answers over REST and the socket, graph.changed reaches a subscriber
 * of the `graph` topic, and deleting the memory cascades.
 */
describe('knowledge graph through the gateway (embedded, in-process jobs)', () => {
  let g: TestGateway;
  let dev: string;
  let viewer: string;
  let admin: string;
  let other: string;
  let socket: Socket;
  const changes: EventEnvelope<GraphChangedData>[] = [];

  const call = (method: string, path: string, token: string, body?: unknown): Promise<Reply> => restCall(g.url, method, path, token, body);

  function emit<T>(event: string, payload: unknown): Promise<Ack<T>> {
    return new Promise((resolve) => socket.emit(event, payload, resolve));
  }

  async function waitForNode(label: string, kind: string, token = dev): Promise<Reply> {
    const id = nodeIdFor(kind, label);
    let reply: Reply = { status: 0, body: {} };
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      reply = await call('GET', `/v1/graph/nodes/${id}`, token);
      if (reply.status === 200) return reply;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`node ${label} never appeared (last status ${reply.status})`);
  }

  beforeAll(async () => {
    g = await startTestGateway({ AETERNA_RELAY_TICK_MS: '100', AETERNA_RELAY_LEASE_MS: '1000' }, { jobs: true });
    dev = await tokenFor({ tenantId: 'acme', userId: 'alice', roles: ['developer'] });
    viewer = await tokenFor({ tenantId: 'acme', userId: 'val', roles: ['viewer'] });
    admin = await tokenFor({ tenantId: 'acme', userId: 'root', roles: ['admin'] });
    other = await tokenFor({ tenantId: 'globex', userId: 'mallory', roles: ['admin'] });
    socket = await openSocket(g.url, viewer);
    socket.on('graph.changed', (e: EventEnvelope<GraphChangedData>) => changes.push(e));
    const sub = await emit<{ rooms: string[] }>('subscribe', { topics: ['graph'] });
    expect(sub).toMatchObject({ ok: true, data: { rooms: ['t:acme:topic:graph'] } });
  }, 60_000);
  afterAll(async () => {
    socket?.close();
    await g?.close();
  });

  it('extracts entities and relations from a new memory and announces graph.changed', async () => {
    const added = await call('POST', '/v1/memories', dev, {
      layer: 'project',
      projectId: 'apollo',
      content: 'The Billing Service depends on PostgreSQL. Jane Doe owns the Billing Service.',
    });
    expect(added.status).toBe(201);
    const memoryId = (added.body['memory'] as { id: string }).id;

    const billing = await waitForNode('Billing Service', 'entity');
    expect(billing.body).toMatchObject({ node: { label: 'Billing Service', sourceMemoryId: memoryId } });
    await until(() => changes.some((c) => c.data.sourceMemoryId === memoryId), 'graph.changed on the graph topic');
    const change = changes.find((c) => c.data.sourceMemoryId === memoryId) as EventEnvelope<GraphChangedData>;
    expect(change.data.nodes.upserted).toContain(nodeIdFor('entity', 'Billing Service'));

    const from = nodeIdFor('entity', 'Jane Doe');
    const to = nodeIdFor('code', 'PostgreSQL');
    const path = await call('GET', `/v1/graph/path?from=${from}&to=${to}&maxDepth=3`, viewer);
    expect(path.status).toBe(200);
    expect(path.body).toMatchObject({ found: true });
    const relations = (path.body['edges'] as { relation: string }[]).map((e) => e.relation);
    expect(relations).toEqual(['owns', 'depends_on']);

    const viaSocket = await emit<GraphNeighborsResult>('graph.neighbors', { id: nodeIdFor('entity', 'Billing Service'), direction: 'both', depth: 1 });
    expect(viaSocket.ok).toBe(true);
    if (viaSocket.ok) expect(viaSocket.data.neighbors.map((n) => n.node.id).sort()).toEqual([from, to].sort());

    const search = await call('GET', '/v1/graph/search?q=billing', viewer);
    expect((search.body as unknown as GraphSearchResult).results.map((r) => r.node.id)).toContain(nodeIdFor('entity', 'Billing Service'));
  });

  it('keeps tenants apart and validates input with stable codes', async () => {
    const id = nodeIdFor('entity', 'Billing Service');
    expect((await call('GET', `/v1/graph/nodes/${id}`, other)).status).toBe(404);
    expect(await call('GET', `/v1/graph/nodes/${id}/neighbors?depth=0`, dev)).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', `/v1/graph/nodes/${id}/neighbors?depth=6`, dev)).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', `/v1/graph/path?from=${id}&to=${id}&maxDepth=6`, dev)).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', '/v1/graph/nodes/no-such-node', dev)).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    const bad = await emit('graph.path', { from: id, to: "x'; DROP TABLE graph_nodes; --" });
    expect(bad).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    // Writing needs memory:write; snapshots need an admin.
    expect(await call('POST', '/v1/graph/nodes', viewer, { label: 'X', kind: 'entity' })).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect(await call('POST', '/v1/admin/graph/snapshot', dev, {})).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    // The jobs topic is an admin's; another tenant's topic room is nobody's.
    expect(await emit('subscribe', { topics: ['jobs'] })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    expect(await emit('subscribe', { rooms: ['t:globex:topic:graph'] })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
  });

  it('lets a developer write nodes and edges directly and an admin take a snapshot', async () => {
    const a = await call('POST', '/v1/graph/nodes', dev, { label: 'Runbook', kind: 'doc', properties: { url: 'https://wiki/rb' } });
    expect(a.status).toBe(201);
    const aId = (a.body['node'] as { id: string }).id;
    const billing = nodeIdFor('entity', 'Billing Service');
    const edge = await call('POST', '/v1/graph/edges', dev, { source: aId, target: billing, relation: 'documents' });
    expect(edge.status).toBe(201);
    const dangling = await call('POST', '/v1/graph/edges', dev, { source: aId, target: 'n-missing', relation: 'documents' });
    expect(dangling).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    const snap = await call('POST', '/v1/admin/graph/snapshot', admin, { kind: 'full' });
    expect(snap.status).toBe(201);
    expect(snap.body['snapshot']).toMatchObject({ tenantId: 'acme', kind: 'full' });
  });

  it('cascades a deleted memory: what it alone produced is gone', async () => {
    const added = await call('POST', '/v1/memories', dev, { layer: 'project', projectId: 'apollo', content: 'Project Hermes uses Kafka Streams.' });
    const memoryId = (added.body['memory'] as { id: string }).id;
    const hermes = await waitForNode('Project Hermes', 'entity');
    expect(hermes.status).toBe(200);
    expect((await call('DELETE', `/v1/memories/${memoryId}`, await tokenFor({ tenantId: 'acme', userId: 'root', roles: ['admin'] }))).status).toBe(200);
    const id = nodeIdFor('entity', 'Project Hermes');
    const deadline = Date.now() + 20_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      status = (await call('GET', `/v1/graph/nodes/${id}`, dev)).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(404);
    // The other memory's nodes are untouched.
    expect((await call('GET', `/v1/graph/nodes/${nodeIdFor('entity', 'Billing Service')}`, dev)).status).toBe(200);
  });
});
