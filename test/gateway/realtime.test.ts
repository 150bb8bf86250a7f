import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ack, EventEnvelope, SOCKET_PATHS, SubscribeResult } from '../../src/protocol/index.js';
import { tokenFor } from '../support/backends.js';
import { openSocket, startTestGateway, until, type TestGateway } from '../support/gateway.js';

type Flavor = keyof typeof SOCKET_PATHS;

describe('realtime gateway (one node, embedded)', () => {
  let g: TestGateway;
  let base: string;
  const sockets: Socket[] = [];

  async function open(token: string | undefined, flavor: Flavor = 'msgpack', transports: ('websocket' | 'polling')[] = ['websocket']): Promise<Socket> {
    const socket = await openSocket(base, token, { flavor, transports });
    sockets.push(socket);
    return socket;
  }

  async function call<T>(socket: Socket, event: string, payload?: unknown): Promise<Ack<T>> {
    return (await socket.timeout(10_000).emitWithAck(event, payload)) as Ack<T>;
  }

  function collect(socket: Socket, type: string): EventEnvelope[] {
    const seen: EventEnvelope[] = [];
    socket.on(type, (e: EventEnvelope) => seen.push(e));
    return seen;
  }

  const rest = (token: string, path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  beforeAll(async () => {
    g = await startTestGateway({ AETERNA_RELAY_TICK_MS: '200', AETERNA_RATE_LIMIT_PER_SEC: '20', AETERNA_RATE_LIMIT_BURST: '30' });
    base = g.url;
  });
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await g?.close();
  });

  it('refuses a handshake without a valid token with UNAUTHENTICATED', async () => {
    for (const token of [undefined, 'garbage', await tokenFor({ tenantId: 'x', userId: 'u', roles: ['viewer'] }, '-1h')]) {
      const err = (await open(token).catch((e: unknown) => e)) as Error & { data?: { code: string } };
      expect(err.data?.code).toBe('UNAUTHENTICATED');
    }
  });

  it.each(['msgpack', 'json'] as const)('runs memory operations with acks over %s', async (flavor) => {
    const token = await tokenFor({ tenantId: `ops-${flavor}`, userId: 'alice', roles: ['admin'] });
    const socket = await open(token, flavor);
    const added = await call<{ memory: { id: string; version: number } }>(socket, 'memory.add', { layer: 'team', teamId: 'core', content: 'socket write' });
    expect(added.ok).toBe(true);
    if (!added.ok) return;
    const id = added.data.memory.id;
    expect(await call(socket, 'memory.get', { id })).toMatchObject({ ok: true, data: { memory: { id, content: 'socket write' } } });
    expect(await call(socket, 'memory.update', { id, version: 1, content: 'socket edit' })).toMatchObject({ ok: true, data: { memory: { version: 2 } } });
    expect(await call(socket, 'memory.update', { id, version: 1, content: 'stale' })).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
    expect(await call(socket, 'memory.search', { query: 'socket edit' })).toMatchObject({ ok: true, data: { results: [{ memory: { id } }] } });
    expect(await call(socket, 'memory.feedback', { id, type: 'helpful' })).toMatchObject({ ok: true });
    expect(await call(socket, 'memory.list', { layer: 'team' })).toMatchObject({ ok: true, data: { items: [{ id }] } });
    expect(await call(socket, 'memory.delete', { id })).toMatchObject({ ok: true, data: { deleted: true } });
    expect(await call(socket, 'memory.add', { layer: 'team', content: 'x' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', details: { field: 'teamId' } } });
    expect(await call(socket, 'memory.get', { id: 'nope' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await call(socket, 'memory.get', 'not an object')).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await call(socket, 'events.read', { since: 0 })).toMatchObject({ ok: true, data: { head: 4 } });
  });

  it('delivers writes from REST live to subscribers of the layer, on both endpoints and over long-polling', async () => {
    const token = await tokenFor({ tenantId: 'live', userId: 'alice', roles: ['developer'] });
    const ws = await open(token, 'msgpack');
    const json = await open(token, 'json');
    const polling = await open(token, 'json', ['polling']);
    const got = [ws, json, polling].map((s) => collect(s, 'memory.added'));
    for (const s of [ws, json, polling]) {
      expect(await call<SubscribeResult>(s, 'subscribe', { layers: ['project'], scopes: { projectId: 'apollo' } })).toMatchObject({
        ok: true,
        data: { rooms: ['t:live:layer:project:apollo'], recovered: true },
      });
    }
    expect((await rest(token, '/v1/memories', { layer: 'project', projectId: 'apollo', content: 'first live' })).status).toBe(201);
    expect((await rest(token, '/v1/memories', { layer: 'project', projectId: 'other', content: 'not for them' })).status).toBe(201);
    expect((await rest(token, '/v1/memories', { layer: 'project', projectId: 'apollo', content: 'second live' })).status).toBe(201);
    await until(() => got.every((g) => g.length >= 2), 'live events on all three clients');
    for (const g of got) {
      expect(g.map((e) => e.seq)).toEqual([1, 3]);
      expect(g.map((e) => (e.data as { memory: { content: string } }).memory.content)).toEqual(['first live', 'second live']);
      expect(g[0]).toMatchObject({ tenantId: 'live', type: 'memory.added', actor: { userId: 'alice' } });
    }
  });

  it('replays exactly the missed events of the subscription on resume, then goes live', async () => {
    const token = await tokenFor({ tenantId: 'resume', userId: 'alice', roles: ['developer'] });
    for (let i = 0; i < 5; i++) await rest(token, '/v1/memories', { layer: 'team', teamId: i % 2 ? 'b' : 'a', content: `before ${i} ${i * 97}` });
    const socket = await open(token);
    const live = collect(socket, 'memory.added');
    const res = await call<SubscribeResult>(socket, 'subscribe', { layers: ['team'], scopes: { teamId: 'a' }, since: 1 });
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    expect(res.data).toMatchObject({ head: 5, recovered: true });
    expect(res.data.events.map((e) => e.seq)).toEqual([3, 5]);
    await rest(token, '/v1/memories', { layer: 'team', teamId: 'a', content: 'after resume' });
    await until(() => live.length === 1, 'the live event after replay');
    expect(live[0]?.seq).toBe(6);

    const resync: unknown[] = [];
    socket.on('resync.required', (r: unknown) => resync.push(r));
    const wrongEpoch = await call<SubscribeResult>(socket, 'subscribe', { layers: ['team'], since: 2, epoch: 'not-the-epoch' });
    expect(wrongEpoch).toMatchObject({ ok: true, data: { recovered: false, events: [] } });
    await until(() => resync.length === 1, 'resync.required');
    expect(resync[0]).toMatchObject({ reason: 'epoch_changed', head: 6 });
  });

  it('never lets a client into another tenant\'s rooms, whatever it sends', async () => {
    const a = await tokenFor({ tenantId: 'iso-a', userId: 'alice', roles: ['admin'] });
    const b = await tokenFor({ tenantId: 'iso-b', userId: 'mallory', roles: ['admin'] });
    const spy = await open(b);
    const seen = collect(spy, 'memory.added');
    for (const room of ['t:iso-a:layer:project:p', 't:iso-a:layer:project:*', 't:iso-b:layer:project:p:../../iso-a', 'iso-a', 't:iso-b:layer:nope:x', 't:iso-b:layer:user:alice']) {
      const res = await call(spy, 'subscribe', { rooms: [room] });
      if (room === 't:iso-b:layer:user:alice') {
        expect(res, room).toMatchObject({ ok: true }); // an admin may watch any user layer of their own tenant
      } else {
        expect(res, room).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
      }
    }
    await call(spy, 'subscribe', { layers: ['project'] });
    await rest(a, '/v1/memories', { layer: 'project', projectId: 'p', content: 'tenant A only' });
    const own = await open(a);
    const ownSeen = collect(own, 'memory.added');
    await call(own, 'subscribe', { layers: ['project'] });
    await rest(a, '/v1/memories', { layer: 'project', projectId: 'p', content: 'tenant A again' });
    await until(() => ownSeen.length === 1, 'tenant A event on its own client');
    expect(seen).toEqual([]);
  });

  it('delivers each event once to a connection subscribed to a scope and to its whole layer', async () => {
    const token = await tokenFor({ tenantId: 'overlap', userId: 'alice', roles: ['developer'] });
    const socket = await open(token);
    const got = collect(socket, 'memory.added');
    await call(socket, 'subscribe', { layers: ['project'], scopes: { projectId: 'a' } });
    const both = await call<SubscribeResult>(socket, 'subscribe', { rooms: ['t:overlap:layer:project:*', 't:overlap:layer:project:a'] });
    expect(both).toMatchObject({ ok: true, data: { rooms: ['t:overlap:layer:project:*'] } });
    await rest(token, '/v1/memories', { layer: 'project', projectId: 'a', content: 'once only' });
    await rest(token, '/v1/memories', { layer: 'project', projectId: 'b', content: 'other scope' });
    await until(() => got.length >= 2, 'both events');
    await new Promise((r) => setTimeout(r, 300));
    expect(got.map((e) => e.seq)).toEqual([1, 2]);
  });

  it('keeps the user layer private in subscriptions', async () => {
    const bob = await tokenFor({ tenantId: 'priv', userId: 'bob', roles: ['developer'] });
    const socket = await open(bob);
    expect(await call(socket, 'subscribe', { rooms: ['t:priv:layer:user:alice'] })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    expect(await call(socket, 'subscribe', { rooms: ['t:priv:layer:user:*'] })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    expect(await call<SubscribeResult>(socket, 'subscribe', { layers: ['user'] })).toMatchObject({ ok: true, data: { rooms: ['t:priv:layer:user:bob'] } });
  });

  it('answers a flood with RATE_LIMITED instead of dropping it', async () => {
    const token = await tokenFor({ tenantId: 'flood', userId: 'alice', roles: ['viewer'] });
    const socket = await open(token);
    const replies = await Promise.all(Array.from({ length: 60 }, () => call(socket, 'memory.list', {})));
    const limited = replies.filter((r) => !r.ok && r.error.code === 'RATE_LIMITED').length;
    expect(limited).toBeGreaterThan(0);
    expect(replies.filter((r) => r.ok).length).toBeGreaterThanOrEqual(30);
    expect(limited + replies.filter((r) => r.ok).length).toBe(60);
  });

  it('closes a connection that sends a message over the size limit, and only that one', async () => {
    const token = await tokenFor({ tenantId: 'big', userId: 'alice', roles: ['developer'] });
    const offender = await open(token);
    const bystander = await open(token, 'json');
    const closed = new Promise<string>((resolve) => offender.once('disconnect', (reason) => resolve(reason)));
    offender.emit('memory.add', { layer: 'project', projectId: 'p', content: 'x'.repeat(1536 * 1024) });
    expect(await closed).toBe('transport close');
    expect(await call(bystander, 'memory.list', {})).toMatchObject({ ok: true, data: { items: [] } });
  });

  it('disconnects a connection when its token expires, saying why', async () => {
    const token = await tokenFor({ tenantId: 'exp', userId: 'alice', roles: ['viewer'] }, '2s');
    const socket = await open(token);
    const reasons: unknown[] = [];
    socket.on('server.close', (r: unknown) => reasons.push(r));
    await new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
    expect(reasons).toEqual([{ code: 'token_expired', retry: false }]);
  });
});
