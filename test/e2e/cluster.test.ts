import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SOCKET_PATHS, type Ack, type EventEnvelope, type SubscribeResult } from '../../src/protocol/index.js';
import { TEST_JWT_SECRET, tokenFor } from '../support/backends.js';
import { createTestDatabase, requireService, type TestDatabase } from '../support/index.js';
import { until } from '../support/gateway.js';
import { killAllNodes, startNode, type GatewayNode } from '../support/nodes.js';

const pgUrl = requireService('postgres');
const redisUrl = requireService('redis');

/**
 * Several real gateway processes (cluster mode: PostgreSQL + Redis), started as `npm start` starts
 * them, with clients connected to different nodes.
 */
describe.skipIf(!pgUrl || !redisUrl)('a cluster of gateway processes', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let env: Record<string, string>;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(pgUrl as string);
    env = {
      AETERNA_DATABASE_URL: database.url,
      AETERNA_REDIS_URL: redisUrl as string,
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_DATA_DIR: '/nonexistent-not-used-in-cluster-mode',
      AETERNA_RELAY_TICK_MS: '250',
      AETERNA_RELAY_LEASE_MS: '2000',
      AETERNA_DRAIN_MS: '2000',
    };
  });
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    killAllNodes();
    await database?.drop();
  });

  async function open(node: GatewayNode, token: string, transports: ('websocket' | 'polling')[] = ['websocket']): Promise<Socket> {
    const socket = connectSocket(node.url, { path: SOCKET_PATHS.json, transports, auth: { token }, reconnection: false, forceNew: true });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return socket;
  }

  const call = async <T>(socket: Socket, event: string, payload?: unknown) => (await socket.timeout(10_000).emitWithAck(event, payload)) as Ack<T>;

  const write = (node: GatewayNode, token: string, body: unknown) =>
    fetch(`${node.url}/v1/memories`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it.each([
    ['classic', 'false'],
    ['sharded (Redis 7 SPUBLISH)', 'true'],
  ])('delivers a write made on one node to subscribers on every node, over WebSocket and long-polling, with %s pub/sub', async (_mode, sharded) => {
    const nodeEnv = { ...env, AETERNA_REDIS_SHARDED: sharded };
    const [a, b] = await Promise.all([startNode({ ...nodeEnv, AETERNA_NODE_ID: 'node-a' }), startNode({ ...nodeEnv, AETERNA_NODE_ID: 'node-b' })]);
    const token = await tokenFor({ tenantId: `cross-${sharded}`, userId: 'alice', roles: ['developer'] });
    const onA = await open(a, token);
    const onB = await open(b, token, ['polling']);
    const seen = [onA, onB].map((s) => {
      const got: EventEnvelope[] = [];
      s.on('memory.added', (e: EventEnvelope) => got.push(e));
      return got;
    });
    for (const s of [onA, onB]) expect(await call<SubscribeResult>(s, 'subscribe', { layers: ['org'] })).toMatchObject({ ok: true });
    for (let i = 0; i < 10; i++) {
      expect((await write(i % 2 ? a : b, token, { layer: 'org', orgId: 'o', content: `cross node write ${i} ${i * 7}` })).status).toBe(201);
    }
    await until(() => seen.every((s) => s.length === 10), 'ten events on both nodes');
    for (const s of seen) expect(s.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    onA.disconnect();
    onB.disconnect();
    await Promise.all([a.stop(), b.stop()]);
  });

  it('resumes with no gap and no duplicate after a forced disconnect while writes continue', async () => {
    const [a, b] = await Promise.all([startNode({ ...env, AETERNA_NODE_ID: 'resume-a' }), startNode({ ...env, AETERNA_NODE_ID: 'resume-b' })]);
    const token = await tokenFor({ tenantId: 'gapless', userId: 'alice', roles: ['developer'] });
    const delivered: number[] = [];
    let last = 0;
    const accept = (e: EventEnvelope) => {
      if (e.seq <= last) return; // a duplicate of a replayed event
      delivered.push(e.seq);
      last = e.seq;
    };
    const first = await open(a, token);
    first.on('memory.added', accept);
    await call(first, 'subscribe', { layers: ['project'] });
    const writer = (async () => {
      for (let i = 0; i < 60; i++) {
        await write(i % 2 ? a : b, token, { layer: 'project', projectId: 'p', content: `continuous write ${i} ${i * 13}` });
      }
    })();
    await until(() => delivered.length >= 10, 'the first events');
    first.disconnect(); // forced: events keep committing while this client is away
    await new Promise((r) => setTimeout(r, 300));
    const second = await open(b, token);
    const buffered: EventEnvelope[] = [];
    second.on('memory.added', (e: EventEnvelope) => buffered.push(e));
    const resumed = await call<SubscribeResult>(second, 'subscribe', { layers: ['project'], since: last });
    expect(resumed.ok).toBe(true);
    if (!resumed.ok) return;
    expect(resumed.data.recovered).toBe(true);
    for (const e of resumed.data.events) accept(e);
    second.off('memory.added');
    for (const e of buffered) accept(e);
    second.on('memory.added', accept);
    await writer;
    await until(() => last === 60, 'all 60 events');
    expect(delivered).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    second.disconnect();
    await Promise.all([a.stop(), b.stop()]);
  });

  it('drains on SIGTERM: clients are told to reconnect, the process exits within 10 s, another node takes over relaying', async () => {
    const [a, b] = await Promise.all([startNode({ ...env, AETERNA_NODE_ID: 'drain-a' }), startNode({ ...env, AETERNA_NODE_ID: 'drain-b' })]);
    const token = await tokenFor({ tenantId: 'drain', userId: 'alice', roles: ['developer'] });
    const onA = await open(a, token);
    const onB = await open(b, token);
    const shutdown: unknown[] = [];
    onA.on('server.shutdown', (m: unknown) => shutdown.push(m));
    const disconnected = new Promise<string>((resolve) => onA.once('disconnect', (reason) => resolve(reason)));
    const seenOnB: EventEnvelope[] = [];
    onB.on('memory.added', (e: EventEnvelope) => seenOnB.push(e));
    await call(onB, 'subscribe', { layers: ['team'] });

    const stopped = await a.stop();
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(10_000);
    expect(await disconnected).toBe('io server disconnect');
    expect(shutdown).toEqual([{ code: 'server_shutdown', retry: true }]);

    // Whatever partitions node A relayed, node B takes them once A's leases are released.
    for (let i = 0; i < 5; i++) expect((await write(b, token, { layer: 'team', teamId: 't', content: `after drain ${i} ${i * 3}` })).status).toBe(201);
    await until(() => seenOnB.length === 5, 'events relayed by the surviving node').catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; got ${seenOnB.map((e) => e.seq).join(',')}\nnode B said:\n${b.output().slice(-3000)}`);
    });
    onB.disconnect();
    await b.stop();
  });

  it('announces the members of a kill -9ed node as left on the other nodes within 15 s', async () => {
    const [a, b] = await Promise.all([startNode({ ...env, AETERNA_NODE_ID: 'presence-a' }), startNode({ ...env, AETERNA_NODE_ID: 'presence-b' })]);
    const agentToken = await tokenFor({ tenantId: 'pres', userId: 'alice', agentId: 'planner', roles: ['developer'] });
    const watcherToken = await tokenFor({ tenantId: 'pres', userId: 'bob', roles: ['viewer'] });
    const agentFirst = await open(a, agentToken);
    const agentSecond = await open(a, agentToken, ['polling']);
    const watcher = await open(b, watcherToken);
    const events: { type: string; memberId: string; at: number }[] = [];
    for (const type of ['presence.joined', 'presence.left', 'presence.updated']) {
      watcher.on(type, (e: EventEnvelope<{ member: { memberId: string } }>) => events.push({ type, memberId: e.data.member.memberId, at: Date.now() }));
    }
    expect(await call(watcher, 'session.join', { sessionId: 's1' })).toMatchObject({ ok: true });
    expect(await call(agentFirst, 'session.join', { sessionId: 's1', status: 'thinking' })).toMatchObject({ ok: true });
    // The same agent on a second connection is still one member.
    const second = await call<{ members: { memberId: string; connections: number }[] }>(agentSecond, 'session.join', { sessionId: 's1' });
    expect(second.ok && second.data.members.find((m) => m.memberId === 'alice/planner')?.connections).toBe(2);
    expect(await call(agentFirst, 'presence.update', { sessionId: 's1', status: 'tool-calling', activity: 'grep' })).toMatchObject({ ok: true });
    await until(() => events.some((e) => e.type === 'presence.updated'), 'presence.updated on the other node');
    expect(events.filter((e) => e.type === 'presence.joined').map((e) => e.memberId)).toEqual(['alice/planner']);

    // A node that joins late gets the full list from Redis, not from having seen the joins.
    const late = await startNode({ ...env, AETERNA_NODE_ID: 'presence-c' });
    const lateWatcher = await open(late, watcherToken);
    const members = await call<{ members: { memberId: string }[] }>(lateWatcher, 'session.join', { sessionId: 's1' });
    expect(members.ok && members.data.members.map((m) => m.memberId).sort()).toEqual(['alice/planner', 'bob']);

    const killedAt = Date.now();
    await a.kill();
    await until(() => events.some((e) => e.type === 'presence.left' && e.memberId === 'alice/planner'), 'presence.left of the dead node\'s agent', 20_000);
    const left = events.filter((e) => e.type === 'presence.left');
    expect(left.map((e) => e.memberId)).toEqual(['alice/planner']);
    expect((left[0]?.at ?? Infinity) - killedAt).toBeLessThan(15_000);
    watcher.disconnect();
    lateWatcher.disconnect();
    await Promise.all([b.stop(), late.stop()]);
  });

  it('converges a Yjs document edited on two nodes, and a late joiner on a third gets the same state', async () => {
    const [a, b] = await Promise.all([startNode({ ...env, AETERNA_NODE_ID: 'yjs-a' }), startNode({ ...env, AETERNA_NODE_ID: 'yjs-b' })]);
    const token = await tokenFor({ tenantId: 'yjs', userId: 'alice', roles: ['developer'] });
    const Y = await import('yjs');
    const editors = await Promise.all(
      [a, b].map(async (node) => {
        const socket = await open(node, token);
        const doc = new Y.Doc();
        socket.on('doc.update', (m: { docId: string; data: Uint8Array }) => Y.applyUpdate(doc, new Uint8Array(m.data), 'remote'));
        const opened = await call<{ state: Uint8Array }>(socket, 'doc.open', { docId: 'plan' });
        if (opened.ok) Y.applyUpdate(doc, new Uint8Array(opened.data.state), 'remote');
        doc.on('update', (update: Uint8Array, origin: unknown) => {
          if (origin !== 'remote') void call(socket, 'doc.update', { docId: 'plan', data: update });
        });
        return { socket, doc };
      }),
    );
    const [ea, eb] = editors as [(typeof editors)[0], (typeof editors)[0]];
    for (let i = 0; i < 20; i++) {
      ea.doc.getArray<string>('steps').push([`a${i}`]);
      eb.doc.getArray<string>('steps').push([`b${i}`]);
      ea.doc.getText('title').insert(0, 'x');
    }
    // toJSON() lists only the types a doc has touched locally, so read the same ones on every doc.
    const text = (d: InstanceType<typeof Y.Doc>) => JSON.stringify([d.getArray('steps').toJSON(), d.getText('title').toString()]);
    await until(() => ea.doc.getArray('steps').length === 40 && eb.doc.getArray('steps').length === 40 && text(ea.doc) === text(eb.doc), 'both editors to converge').catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${text(ea.doc)} vs ${text(eb.doc)}`);
    });
    const late = await startNode({ ...env, AETERNA_NODE_ID: 'yjs-c' });
    const lateSocket = await open(late, token);
    const lateDoc = new Y.Doc();
    const opened = await call<{ state: Uint8Array }>(lateSocket, 'doc.open', { docId: 'plan' });
    expect(opened.ok).toBe(true);
    if (opened.ok) Y.applyUpdate(lateDoc, new Uint8Array(opened.data.state));
    expect(text(lateDoc)).toBe(text(ea.doc));
    expect(lateDoc.getText('title').toString()).toBe('x'.repeat(20));
    for (const e of [ea, eb]) e.socket.disconnect();
    lateSocket.disconnect();
    await Promise.all([a.stop(), b.stop(), late.stop()]);
  });
});
