import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeIdFor } from '../../src/graph/index.js';
import { SOCKET_PATHS, type Ack, type EventEnvelope, type GraphChangedData, type GraphSearchResult } from '../../src/protocol/index.js';
import { TEST_JWT_SECRET, tokenFor } from '../support/backends.js';
import { until } from '../support/gateway.js';
import { createTestDatabase, requireService, type TestDatabase } from '../support/index.js';
import { killAllNodes, spawnWorker, startNode, workerReady, type GatewayNode, type WorkerNode } from '../support/nodes.js';

const pgUrl = requireService('postgres');
const redisUrl = requireService('redis');

/**
 * Cluster mode end to end: gateways only enqueue (BullMQ), worker processes extract, and a gateway
 * that wrote nothing answers graph queries from its own DuckDB projection, caught up from the log.
 */
describe.skipIf(!pgUrl || !redisUrl)('the knowledge graph across gateway and worker processes', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let snapshotDir: string;
  let a: GatewayNode;
  let b: GatewayNode;
  let workers: WorkerNode[];
  let socket: Socket;
  let dev: string;
  const changes: EventEnvelope<GraphChangedData>[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(pgUrl as string);
    snapshotDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-snap-'));
    const env = {
      AETERNA_DATABASE_URL: database.url,
      AETERNA_REDIS_URL: redisUrl as string,
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_DATA_DIR: snapshotDir,
      AETERNA_SNAPSHOT_DIR: snapshotDir,
      AETERNA_RELAY_TICK_MS: '250',
      AETERNA_RELAY_LEASE_MS: '2000',
      AETERNA_DRAIN_MS: '2000',
      AETERNA_JOB_STALLED_MS: '2000',
    };
    workers = [spawnWorker(env), spawnWorker(env)];
    [a, b] = await Promise.all([startNode(env), startNode(env), ...workers.map((w) => workerReady(w))]);
    dev = await tokenFor({ tenantId: 'acme', userId: 'alice', roles: ['developer'] });
    socket = connectSocket(b.url, { path: SOCKET_PATHS.json, transports: ['websocket'], auth: { token: dev }, reconnection: false, forceNew: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    socket.on('graph.changed', (e: EventEnvelope<GraphChangedData>) => changes.push(e));
    const sub = (await socket.timeout(10_000).emitWithAck('subscribe', { topics: ['graph'] })) as Ack<unknown>;
    expect(sub.ok).toBe(true);
  }, 120_000);
  afterAll(async () => {
    socket?.disconnect();
    killAllNodes();
    await database?.drop();
    if (snapshotDir) await rm(snapshotDir, { recursive: true, force: true });
  });

  it('extracts on a worker and answers on another gateway, live and by query', async () => {
    const res = await fetch(`${a.url}/v1/memories`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev}`, 'content-type': 'application/json' },
      body: JSON.stringify({ layer: 'team', teamId: 'core', content: 'Orion Gateway depends on Redis Cluster. Maria Lopez manages Orion Gateway.' }),
    });
    expect(res.status).toBe(201);
    const memoryId = ((await res.json()) as { memory: { id: string } }).memory.id;

    await until(() => changes.some((c) => c.data.sourceMemoryId === memoryId), 'graph.changed relayed to a client of gateway B', 30_000);
    const search = await fetch(`${b.url}/v1/graph/search?q=orion`, { headers: { authorization: `Bearer ${dev}` } });
    expect(search.status).toBe(200);
    const body = (await search.json()) as GraphSearchResult;
    expect(body.results.map((r) => r.node.id)).toContain(nodeIdFor('entity', 'Orion Gateway'));
    // Exactly one extraction batch for the memory, whichever worker ran it.
    expect(changes.filter((c) => c.data.sourceMemoryId === memoryId)).toHaveLength(1);
    const fromA = await fetch(`${a.url}/v1/graph/nodes/${nodeIdFor('entity', 'Maria Lopez')}/neighbors`, { headers: { authorization: `Bearer ${dev}` } });
    expect(fromA.status).toBe(200);
  });
});
