import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AeternaClient } from '../../src/client/index.js';
import type { EventEnvelope } from '../../src/protocol/index.js';
import { TEST_JWT_SECRET, tokenFor } from '../support/backends.js';
import { createTestDatabase, requireService, type TestDatabase } from '../support/index.js';
import { killAllNodes, startNode } from '../support/nodes.js';

const pgUrl = requireService('postgres');
const redisUrl = requireService('redis'); // proves redis-server is installed; this file runs its own

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A Redis of this test's own, on a fixed port so it can be killed and brought back. */
async function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

describe.skipIf(!pgUrl || !redisUrl)('losing Redis', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let dir: string;
  let redis: ChildProcess | undefined;

  beforeAll(async () => {
    database = await createTestDatabase(pgUrl as string);
    dir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-redis-loss-'));
  });
  afterAll(async () => {
    killAllNodes();
    redis?.kill('SIGKILL');
    await database?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps clients connected, resumes cross-node fan-out when Redis returns, and the client recovers every event', async () => {
    const port = await freePort();
    redis = await startRedis(port, dir);
    const env = {
      AETERNA_DATABASE_URL: database.url,
      AETERNA_REDIS_URL: `redis://127.0.0.1:${port}`,
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_RELAY_TICK_MS: '250',
      AETERNA_RELAY_LEASE_MS: '2000',
      // One partition, taken by the node that starts first: node A relays, and keeps relaying
      // while Redis is gone, so node B's clients really miss those broadcasts.
      AETERNA_RELAY_PARTITIONS: '1',
    };
    const a = await startNode({ ...env, AETERNA_NODE_ID: 'loss-a' });
    const b = await startNode({ ...env, AETERNA_NODE_ID: 'loss-b' });
    const token = await tokenFor({ tenantId: 'loss', userId: 'alice', roles: ['developer'] });
    const clients = await Promise.all([a, b].map((node) => AeternaClient.connect({ url: node.url, token, transport: 'websocket' })));
    const seen: number[][] = [[], []];
    for (const [i, client] of clients.entries()) await client.subscribe({ layers: ['project'] }, (e: EventEnvelope) => void seen[i]?.push(e.seq));
    let disconnects = 0;
    for (const client of clients) client.on('disconnected', () => disconnects++);
    const write = async (i: number) => {
      const res = await fetch(`${a.url}/v1/memories`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ layer: 'project', projectId: 'p', content: `redis loss write ${i} ${i * 31}` }),
      });
      expect(res.status).toBe(201);
    };
    const until = async (check: () => boolean, what: string) => {
      const deadline = Date.now() + 20_000;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(seen)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };

    for (let i = 1; i <= 5; i++) await write(i);
    await until(() => seen.every((s) => s.length === 5), 'the first five events on both nodes');

    redis.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 6; i <= 10; i++) await write(i); // committed while Redis is gone: PostgreSQL is the log
    await new Promise((r) => setTimeout(r, 500));
    redis = await startRedis(port, dir);
    await new Promise((r) => setTimeout(r, 1500));
    for (let i = 11; i <= 15; i++) await write(i);

    const all = Array.from({ length: 15 }, (_, i) => i + 1);
    await until(() => seen.every((s) => s.length === 15), 'all fifteen events on both nodes');
    expect(seen).toEqual([all, all]);
    expect(disconnects).toBe(0);
    for (const client of clients) client.close();
    await Promise.all([a.stop(), b.stop()]);
  });
});
