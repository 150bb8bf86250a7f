import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket as ServerSocket } from 'socket.io';
import { afterEach, describe, expect, it } from 'vitest';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness';
import { readSyncMessage, writeSyncStep1 } from 'y-protocols/sync';
import * as Y from 'yjs';
import { AeternaClient, REMOTE_ORIGIN, type AeternaClientOptions } from '../../src/client/index.js';
import {
  AeternaError,
  SOCKET_PATHS,
  msgpackParser,
  type EventEnvelope,
  type ResyncRequired,
  type WireError,
} from '../../src/protocol/index.js';

type Flavor = keyof typeof SOCKET_PATHS;
type AckFn = (reply: unknown) => void;
type Reply = (payload: unknown, socket: ServerSocket) => unknown;

const STREAM_ROOM = 'stream';
const envelope = (seq: number, type = 'memory.added'): EventEnvelope => ({
  seq,
  id: `ev-${seq}`,
  tenantId: 'acme',
  type,
  at: new Date(0).toISOString(),
  actor: { userId: 'alice' },
  data: { n: seq },
  traceId: null,
});
const ok = (data: unknown) => ({ ok: true, data });

/**
 * A scripted stand-in for the gateway on real socket.io: an event log with an epoch, the
 * subscribe/replay rules of the realtime contract, acked calls, presence and Yjs documents.
 * Tests inject races through `beforeSubscribeAck` and break connections on purpose.
 */
class FakeGateway {
  readonly log: EventEnvelope[] = [];
  epoch = 'e1';
  readonly subscribes: Array<Record<string, unknown>> = [];
  readonly calls: Array<{ event: string; payload: unknown }> = [];
  readonly connections: ServerSocket[] = [];
  readonly replies = new Map<string, Reply>();
  readonly docs = new Map<string, Y.Doc>();
  /** Set to refuse handshakes with this error. */
  refuse: WireError | undefined;
  beforeSubscribeAck: ((socket: ServerSocket, payload: Record<string, unknown>) => void) | undefined;
  /** Lose doc updates on the live path, as a Redis outage would. */
  dropDocRelay = false;
  /** Send resync.required after the ack instead of before it. */
  resyncAfterAck = false;
  /** Replay newest first: the contract says seq order, the client must not depend on it. */
  replayReversed = false;
  private constructor(
    readonly io: Server,
    readonly url: string,
    readonly flavor: Flavor,
  ) {}

  static async start(flavor: Flavor = 'msgpack'): Promise<FakeGateway> {
    const httpServer = http.createServer();
    const io = new Server(httpServer, { path: SOCKET_PATHS[flavor], serveClient: false, ...(flavor === 'msgpack' ? { parser: msgpackParser } : {}) });
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    const fake = new FakeGateway(io, `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`, flavor);
    io.use((socket, next) => {
      const token = (socket.handshake.auth as { token?: unknown }).token;
      const error: WireError | undefined = token !== 'good' ? { code: 'UNAUTHENTICATED', message: 'invalid token' } : fake.refuse;
      next(error ? Object.assign(new Error(error.message), { data: error }) : undefined);
    });
    io.on('connection', (socket) => fake.onConnection(socket));
    fakes.push(fake);
    return fake;
  }

  get head(): number {
    return this.log.at(-1)?.seq ?? 0;
  }

  /** Appends to the log and, unless the live path "drops" it, emits it to subscribers. */
  commit(type = 'memory.added', live = true): EventEnvelope {
    const event = envelope(this.head + 1, type);
    this.log.push(event);
    if (live) this.io.to(STREAM_ROOM).emit(type, event);
    return event;
  }

  latest(): ServerSocket {
    const socket = this.connections.at(-1);
    if (!socket) throw new Error('no connection yet');
    return socket;
  }

  bytes(data: Uint8Array): Uint8Array | string {
    return this.flavor === 'json' ? Buffer.from(data).toString('base64') : data;
  }

  private onConnection(socket: ServerSocket): void {
    this.connections.push(socket);
    const fromWire = (data: unknown) => (typeof data === 'string' ? new Uint8Array(Buffer.from(data, 'base64')) : (data as Uint8Array));
    socket.onAny((event: string, ...args: unknown[]) => {
      const ack = args.at(-1);
      if (typeof ack !== 'function') return;
      const payload = args[0];
      this.calls.push({ event, payload });
      if (event === 'subscribe') return void this.subscribe(socket, payload as Record<string, unknown>, ack as AckFn);
      const reply = this.replies.get(event);
      (ack as AckFn)(reply ? reply(payload, socket) : ok({ echo: payload }));
    });
    this.replies.set('session.join', (payload, s) => {
      const { sessionId } = payload as { sessionId: string };
      void s.join(`session:${sessionId}`);
      s.to(`session:${sessionId}`).emit('presence.joined', { ...envelope(0, 'presence.joined'), seq: null, data: { sessionId, member: { memberId: 'bob' } } });
      return ok({ sessionId, members: [{ memberId: 'alice' }, { memberId: 'bob' }] });
    });
    this.replies.set('doc.open', (payload, s) => {
      const { docId } = payload as { docId: string };
      void s.join(`doc:${docId}`);
      const doc = this.docs.get(docId) ?? new Y.Doc();
      this.docs.set(docId, doc);
      return ok({ docId, state: this.bytes(Y.encodeStateAsUpdate(doc)), writable: !docId.startsWith('ro-') });
    });
    this.replies.set('doc.update', (payload, s) => {
      const { docId, data } = payload as { docId: string; data: unknown };
      Y.applyUpdate(this.docs.get(docId) as Y.Doc, fromWire(data));
      if (!this.dropDocRelay) s.to(`doc:${docId}`).emit('doc.update', { docId, data });
      return ok({ docId });
    });
    // y-protocols: a step 1 gets our step 2 and our own step 1; a step 2 or update is applied.
    this.replies.set('doc.sync', (payload) => {
      const { docId, data } = payload as { docId: string; data: unknown };
      const doc = this.docs.get(docId) as Y.Doc;
      const reply = encoding.createEncoder();
      readSyncMessage(decoding.createDecoder(fromWire(data)), reply, doc, 'client');
      if (encoding.length(reply) === 0) return ok({ docId, data: null, step1: null });
      const step1 = encoding.createEncoder();
      writeSyncStep1(step1, doc);
      return ok({ docId, data: this.bytes(encoding.toUint8Array(reply)), step1: this.bytes(encoding.toUint8Array(step1)) });
    });
    this.replies.set('doc.awareness', (payload, s) => {
      const { docId } = payload as { docId: string };
      s.to(`doc:${docId}`).emit('doc.awareness', payload);
      return ok({ docId });
    });
  }

  /** The realtime contract: join, then read the head, then replay (since, head] or refuse. */
  private subscribe(socket: ServerSocket, payload: Record<string, unknown>, ack: AckFn): void {
    this.subscribes.push(payload);
    void socket.join(STREAM_ROOM);
    const head = this.head;
    const result = { rooms: ['t:acme:layer:team:*'], head, epoch: this.epoch, recovered: true, events: [] as EventEnvelope[] };
    const since = payload['since'] as number | undefined;
    let notice: ResyncRequired | undefined;
    if (since !== undefined) {
      if ((payload['epoch'] !== undefined && payload['epoch'] !== this.epoch) || since > head) {
        notice = { reason: 'epoch_changed', epoch: this.epoch, head, reload: ['memories'] };
        result.recovered = false;
      } else {
        result.events = this.log.filter((e) => e.seq > since && e.seq <= head);
        if (this.replayReversed) result.events.reverse();
      }
    }
    if (notice && !this.resyncAfterAck) socket.emit('resync.required', notice);
    this.beforeSubscribeAck?.(socket, payload);
    ack(ok(result));
    if (notice && this.resyncAfterAck) socket.emit('resync.required', notice);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => void this.io.close(() => resolve()));
  }
}

const fakes: FakeGateway[] = [];
const clients: AeternaClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const fake of fakes.splice(0)) await fake.close();
});

async function connect(fake: FakeGateway, options: Partial<AeternaClientOptions> = {}): Promise<AeternaClient> {
  const client = await AeternaClient.connect({
    url: fake.url,
    token: 'good',
    parser: fake.flavor,
    transport: 'websocket',
    callTimeoutMs: 2_000,
    reconnectDelayMs: 20,
    reconnectDelayMaxMs: 100,
    ...options,
  });
  clients.push(client);
  return client;
}

async function until(check: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejection(promise: Promise<unknown>): Promise<AeternaError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AeternaError);
  return err as AeternaError;
}

describe('AeternaClient: connection', () => {
  it('rejects a bad token with the server’s code and message', async () => {
    const fake = await FakeGateway.start();
    const err = await rejection(connect(fake, { token: 'bad' }));
    expect(err.code).toBe('UNAUTHENTICATED');
    expect(err.message).toBe('invalid token');
  });

  it('rejects with UNAVAILABLE when nothing listens', async () => {
    const fake = await FakeGateway.start();
    await fake.close();
    fakes.splice(0);
    expect((await rejection(connect(fake, { connectTimeoutMs: 2_000 }))).code).toBe('UNAVAILABLE');
  });

  it.each(['websocket', 'polling', 'auto'] as const)('connects over %s with the msgpack and JSON parsers', async (transport) => {
    for (const flavor of ['msgpack', 'json'] as const) {
      const fake = await FakeGateway.start(flavor);
      const client = await connect(fake, { transport, token: async () => 'good' });
      expect(await client.call('anything', { bytes: 1 })).toEqual({ echo: { bytes: 1 } });
    }
  });

  it('stops for good when the server closes with retry: false, and comes back with a refreshable token', async () => {
    const fake = await FakeGateway.start();
    const fixed = await connect(fake);
    const closed = new Promise<AeternaError | undefined>((resolve) => fixed.on('closed', resolve));
    fixed.on('error', () => undefined);
    const first = fake.latest();
    first.emit('server.close', { code: 'token_expired', retry: false });
    first.disconnect(true);
    expect((await closed)?.code).toBe('UNAUTHENTICATED');
    await sleep(200);
    expect(fake.connections).toHaveLength(1);

    let asked = 0;
    const refreshing = await connect(fake, { token: () => (asked++, 'good') });
    const second = fake.latest();
    second.emit('server.close', { code: 'token_expired', retry: false });
    second.disconnect(true);
    await until(() => fake.connections.length === 3 && refreshing.connected, 'a reconnect with a fresh token');
    expect(asked).toBe(2);
  });

  it('retries a handshake refused for now and gives up on a refusal that says do not retry', async () => {
    const fake = await FakeGateway.start();
    const client = await connect(fake);
    fake.refuse = { code: 'UNAVAILABLE', message: 'draining' };
    fake.latest().disconnect(true);
    await sleep(150);
    expect(client.connected).toBe(false);
    fake.refuse = undefined;
    await until(() => client.connected, 'the reconnect after the refusal');

    const closed = new Promise<AeternaError | undefined>((resolve) => client.on('closed', resolve));
    client.on('error', () => undefined);
    fake.refuse = { code: 'RATE_LIMITED', message: 'tenant limit', details: { reason: 'tenant_connection_limit' } };
    fake.latest().disconnect(true);
    expect((await closed)?.code).toBe('RATE_LIMITED');
  });
});

describe('AeternaClient: calls', () => {
  it('sends memory methods as the documented events and payloads, and unwraps the results', async () => {
    const fake = await FakeGateway.start();
    const memory = { id: 'm1', version: 2 };
    for (const event of ['memory.get', 'memory.update', 'memory.feedback']) fake.replies.set(event, () => ok({ memory }));
    const client = await connect(fake);
    await client.add({ layer: 'team', teamId: 'core', content: 'hello' });
    expect(await client.get('m1')).toEqual(memory);
    await client.list({ layer: 'team', limit: 5 });
    await client.search({ query: 'hello', layers: ['team'] });
    expect(await client.update('m1', { version: 1, content: 'new' })).toEqual(memory);
    await client.delete('m1');
    expect(await client.feedback('m1', { type: 'helpful' })).toEqual(memory);
    await client.readEvents(10, 50);
    expect(fake.calls).toEqual([
      { event: 'memory.add', payload: { layer: 'team', teamId: 'core', content: 'hello' } },
      { event: 'memory.get', payload: { id: 'm1' } },
      { event: 'memory.list', payload: { layer: 'team', limit: 5 } },
      { event: 'memory.search', payload: { query: 'hello', layers: ['team'] } },
      { event: 'memory.update', payload: { id: 'm1', version: 1, content: 'new' } },
      { event: 'memory.delete', payload: { id: 'm1' } },
      { event: 'memory.feedback', payload: { id: 'm1', type: 'helpful' } },
      { event: 'events.read', payload: { since: 10, limit: 50 } },
    ]);
  });

  it('rejects with the ack’s error, on timeout and on a reply that is not an ack', async () => {
    const fake = await FakeGateway.start();
    fake.replies.set('memory.update', () => ({ ok: false, error: { code: 'CONFLICT', message: 'stale', details: { currentVersion: 3 } } }));
    fake.replies.set('weird', () => 'not an ack');
    fake.replies.set('future', () => ({ ok: false, error: { code: 'TEAPOT', message: 'new code' } }));
    const client = await connect(fake);
    const conflict = await rejection(client.update('m1', { version: 1, content: 'x' }));
    expect([conflict.code, conflict.message, conflict.details]).toEqual(['CONFLICT', 'stale', { currentVersion: 3 }]);
    expect((await rejection(client.call('weird'))).code).toBe('INTERNAL');
    expect((await rejection(client.call('future'))).details).toEqual({ serverCode: 'TEAPOT' });
    fake.latest().removeAllListeners();
    fake.latest().offAny();
    const timedOut = await rejection(client.call('memory.get', { id: 'x' }, { timeoutMs: 100 }));
    expect(timedOut.code).toBe('UNAVAILABLE');
  });
});

describe('AeternaClient: memory stream', () => {
  it('delivers held live events after the ack, each seq once and in order', async () => {
    const fake = await FakeGateway.start();
    for (let i = 0; i < 10; i++) fake.commit('memory.added', false);
    fake.beforeSubscribeAck = (socket) => {
      // Racing the ack: one already in the past, two new ones out of order.
      socket.emit('memory.added', envelope(9));
      socket.emit('memory.added', envelope(12, 'memory.updated'));
      socket.emit('memory.updated', envelope(11, 'memory.updated'));
    };
    const client = await connect(fake);
    const seen: number[] = [];
    const sub = await client.subscribe({ layers: ['team'] }, (e) => void seen.push(e.seq));
    const socket = fake.latest();
    for (const [seq, type] of [[12, 'memory.added'], [13, 'memory.deleted'], [11, 'memory.added'], [14, 'memory.feedback']] as const) {
      socket.emit(type, envelope(seq, type));
    }
    await until(() => seen.length >= 4, 'live events');
    await sleep(50);
    expect(seen).toEqual([11, 12, 13, 14]);
    expect(sub.position()).toEqual({ seq: 14, epoch: 'e1' });
    expect(sub.rooms).toEqual(['t:acme:layer:team:*']);
    expect(fake.subscribes[0]).toEqual({ layers: ['team'] });
  });

  it('starts from a stored position: replay first (sorted), then live, duplicates dropped', async () => {
    const fake = await FakeGateway.start();
    for (let i = 0; i < 8; i++) fake.commit();
    fake.replayReversed = true;
    fake.beforeSubscribeAck = (socket) => {
      socket.emit('memory.added', envelope(8));
      fake.commit();
      fake.commit();
      socket.emit('memory.added', envelope(9));
    };
    const client = await connect(fake);
    const seen: number[] = [];
    await client.subscribe({ layers: ['team'], from: { seq: 5, epoch: 'e1' } }, (e) => void seen.push(e.seq));
    fake.commit();
    await until(() => seen.length >= 6, 'replay and live');
    expect(seen).toEqual([6, 7, 8, 9, 10, 11]);
    expect(fake.subscribes[0]).toMatchObject({ since: 5, epoch: 'e1' });
  });

  it.each([
    ['a server-side disconnect', (s: ServerSocket) => s.disconnect(true)],
    ['a dropped transport', (s: ServerSocket) => s.conn.close()],
    ['a draining node', (s: ServerSocket) => (s.emit('server.shutdown', { code: 'server_shutdown', retry: true }), s.disconnect(true))],
  ])('resumes after %s with no gap and no duplicate while writes continue', async (_name, breakIt) => {
    const fake = await FakeGateway.start();
    for (let i = 0; i < 3; i++) fake.commit();
    const client = await connect(fake);
    const seen: number[] = [];
    const sub = await client.subscribe({ layers: ['team'] }, (e) => void seen.push(e.seq));
    fake.commit();
    fake.commit();
    await until(() => seen.length === 2, 'live events before the break');

    breakIt(fake.latest());
    fake.commit('memory.updated');
    fake.commit('memory.deleted');
    fake.beforeSubscribeAck = (socket) => {
      // A commit racing the re-subscribe, and a relayed copy of one the replay also carries.
      fake.commit();
      socket.emit('memory.deleted', envelope(7, 'memory.deleted'));
    };
    await until(() => seen.length >= 5, 'the replayed gap and the racing commit');
    fake.beforeSubscribeAck = undefined;
    fake.latest().emit('memory.added', envelope(8));
    fake.commit();
    await until(() => seen.length >= 6, 'live events after the resume');
    await sleep(50);
    expect(seen).toEqual([4, 5, 6, 7, 8, 9]);
    expect(fake.subscribes.map((s) => [s['since'], s['epoch']])).toEqual([
      [undefined, undefined],
      [5, 'e1'],
    ]);
    expect(sub.position()).toEqual({ seq: 9, epoch: 'e1' });
  });

  it('re-checks from its position on stream.check (live events the bus dropped)', async () => {
    const fake = await FakeGateway.start();
    const client = await connect(fake);
    const seen: number[] = [];
    await client.subscribe({ layers: ['team'] }, (e) => void seen.push(e.seq));
    fake.commit();
    await until(() => seen.length === 1, 'first live event');
    fake.commit('memory.added', false);
    fake.commit('memory.added', false);
    fake.latest().emit('stream.check', { reason: 'redis_reconnected' });
    await until(() => seen.length === 3, 'the dropped events');
    expect(seen).toEqual([1, 2, 3]);
    expect(fake.subscribes.at(-1)).toMatchObject({ since: 1, epoch: 'e1' });
  });

  it('surfaces resync.required once and continues from the new head and epoch', async () => {
    const fake = await FakeGateway.start();
    for (let i = 0; i < 50; i++) fake.commit('memory.added', false);
    fake.epoch = 'e2';
    const client = await connect(fake);
    const seen: number[] = [];
    const notices: ResyncRequired[] = [];
    fake.beforeSubscribeAck = (socket) => socket.emit('memory.added', envelope(50));
    const sub = await client.subscribe({ layers: ['team'], from: { seq: 3, epoch: 'e1' }, onResync: (n) => void notices.push(n) }, (e) =>
      void seen.push(e.seq),
    );
    expect(notices).toEqual([{ reason: 'epoch_changed', epoch: 'e2', head: 50, reload: ['memories'] }]);
    expect(sub.position()).toEqual({ seq: 50, epoch: 'e2' });
    fake.commit();
    await until(() => seen.length === 1, 'live after the resync');
    expect(seen).toEqual([51]);

    // A resync the server pushes mid-stream (history restored): the position moves back with it.
    fake.latest().emit('resync.required', { reason: 'epoch_changed', epoch: 'e3', head: 20, reload: ['memories'] });
    fake.latest().emit('memory.added', envelope(21));
    await until(() => seen.length === 2, 'the first event of the new epoch');
    expect(seen).toEqual([51, 21]);
    expect(notices).toHaveLength(2);
    expect(sub.position()).toEqual({ seq: 21, epoch: 'e3' });
  });

  it('tells the consumer about an unrecovered resume even if the notice comes late, but only once', async () => {
    const fake = await FakeGateway.start();
    for (let i = 0; i < 5; i++) fake.commit('memory.added', false);
    fake.epoch = 'e9';
    fake.resyncAfterAck = true;
    const client = await connect(fake);
    const notices: ResyncRequired[] = [];
    const seen: number[] = [];
    await client.subscribe({ layers: ['team'], from: { seq: 1, epoch: 'e1' }, onResync: (n) => void notices.push(n) }, (e) => void seen.push(e.seq));
    fake.commit();
    await until(() => seen.length === 1, 'the live event');
    expect(seen).toEqual([6]);
    expect(notices).toEqual([{ reason: 'epoch_changed', epoch: 'e9', head: 5, reload: ['memories'] }]);
  });

  it('keeps one subscription per client, and unsubscribes by its rooms', async () => {
    const fake = await FakeGateway.start();
    const client = await connect(fake);
    const seen: number[] = [];
    const sub = await client.subscribe({ layers: ['team'] }, (e) => void seen.push(e.seq));
    expect((await rejection(client.subscribe({ layers: ['org'] }, () => undefined))).code).toBe('INVALID_ARGUMENT');
    await sub.unsubscribe();
    expect(fake.calls.at(-1)).toEqual({ event: 'unsubscribe', payload: { rooms: ['t:acme:layer:team:*'] } });
    fake.commit();
    await sleep(50);
    expect(seen).toEqual([]);
    await client.subscribe({ layers: ['org'] }, () => undefined);
  });

  it('reports a throwing handler without losing its place', async () => {
    const fake = await FakeGateway.start();
    const client = await connect(fake);
    const errors: AeternaError[] = [];
    const seen: number[] = [];
    await client.subscribe({ layers: ['team'], onError: (e) => void errors.push(e) }, (e) => {
      seen.push(e.seq);
      if (e.seq === 1) throw new Error('boom');
    });
    fake.commit();
    fake.commit();
    await until(() => seen.length === 2, 'both events');
    expect(errors.map((e) => e.details)).toEqual([{ seq: 1 }]);
  });
});

describe('AeternaClient: presence', () => {
  it('joins, hears others, and re-joins after a reconnect', async () => {
    const fake = await FakeGateway.start();
    const alice = await connect(fake);
    const bob = await connect(fake);
    expect((await alice.joinSession('s1', { status: 'thinking', activity: 'planning' })).map((m) => m.memberId)).toEqual(['alice', 'bob']);
    const joined = new Promise<unknown>((resolve) => alice.on('presence.joined', (e) => resolve(e.data)));
    await bob.joinSession('s1');
    expect(await joined).toEqual({ sessionId: 's1', member: { memberId: 'bob' } });

    await alice.setPresence('s1', 'tool-calling', 'search');
    const rejoined = new Promise<string>((resolve) => alice.on('presence.members', (sessionId) => resolve(sessionId)));
    fake.connections[0]?.disconnect(true);
    expect(await rejoined).toBe('s1');
    const joins = fake.calls.filter((c) => c.event === 'session.join').map((c) => c.payload);
    expect(joins.at(-1)).toEqual({ sessionId: 's1', status: 'tool-calling', activity: 'search' });
    await alice.leaveSession('s1');
    expect(fake.calls.at(-1)).toEqual({ event: 'session.leave', payload: { sessionId: 's1' } });
  });
});

describe('AeternaClient: shared documents', () => {
  it.each(['msgpack', 'json'] as const)('keeps two editors in sync over %s, including edits made offline', async (flavor) => {
    const fake = await FakeGateway.start(flavor);
    const a = await connect(fake);
    const b = await connect(fake);
    const docA = await a.openDoc('notes');
    const docB = await b.openDoc('notes');
    expect(await a.openDoc('notes')).toBe(docA);
    expect(docA.writable).toBe(true);

    docA.doc.getText('t').insert(0, 'hello');
    await until(() => docB.doc.getText('t').toString() === 'hello', 'B to see A’s edit');
    const origins: unknown[] = [];
    docB.doc.on('update', (_u: Uint8Array, origin: unknown) => origins.push(origin));
    docB.doc.getText('t').insert(5, ' world');
    await until(() => docA.doc.getText('t').toString() === 'hello world', 'A to see B’s edit');

    // A edits while its connection is down; the edit reaches B after A reconnects and re-opens.
    fake.connections[0]?.conn.close();
    await until(() => !a.connected, 'A to notice the drop');
    docA.doc.getText('t').insert(0, '> ');
    await until(() => docB.doc.getText('t').toString() === '> hello world', 'the offline edit to arrive');
    expect(fake.docs.get('notes')?.getText('t').toString()).toBe('> hello world');
    // B's own edit has no origin; A's, applied from the server, the remote one (never echoed back).
    expect(origins[0]).toBeNull();
    expect(origins.slice(1).every((o) => o === REMOTE_ORIGIN)).toBe(true);

    docA.awareness.setLocalState({ user: 'alice', cursor: 3 });
    await until(() => docB.awareness.getStates().get(docA.doc.clientID)?.['user'] === 'alice', 'awareness to reach B');
    await docA.close();
    await until(() => !docB.awareness.getStates().has(docA.doc.clientID), 'A’s awareness to be removed on close');
  });

  it.each(['msgpack', 'json'] as const)('re-syncs open documents on stream.check over %s (updates the relay dropped)', async (flavor) => {
    const fake = await FakeGateway.start(flavor);
    const a = await connect(fake);
    const b = await connect(fake);
    const docA = await a.openDoc('notes');
    const docB = await b.openDoc('notes');
    fake.dropDocRelay = true;
    docA.doc.getText('t').insert(0, 'from A');
    await until(() => fake.docs.get('notes')?.getText('t').toString() === 'from A', 'A’s update to be stored');
    // Stored by another node whose relay was lost too.
    const server = fake.docs.get('notes') as Y.Doc;
    const other = new Y.Doc();
    other.getMap('m').set('k', 'server side');
    Y.applyUpdate(server, Y.encodeStateAsUpdate(other));
    await sleep(50);
    expect(docB.doc.getText('t').toString()).toBe('');

    fake.connections[1]?.emit('stream.check', { reason: 'redis_reconnected' });
    await until(() => docB.doc.getText('t').toString() === 'from A' && docB.doc.getMap('m').get('k') === 'server side', 'B to catch up');
  });

  it('applies remote updates with the remote origin and reports a read-only document', async () => {
    const fake = await FakeGateway.start();
    const server = new Y.Doc();
    server.getMap('m').set('k', 'v');
    fake.docs.set('ro-doc', server);
    const client = await connect(fake);
    const errors: AeternaError[] = [];
    client.on('error', (e) => errors.push(e));
    const handle = await client.openDoc('ro-doc');
    expect(handle.doc.getMap('m').get('k')).toBe('v');
    expect(handle.writable).toBe(false);
    const origins: unknown[] = [];
    handle.doc.on('update', (_u: Uint8Array, origin: unknown) => origins.push(origin));
    const remote = new Y.Doc();
    Y.applyUpdate(remote, Y.encodeStateAsUpdate(server));
    remote.getMap('m').set('k2', 'v2');
    fake.latest().emit('doc.update', { docId: 'ro-doc', data: Y.encodeStateAsUpdate(remote, Y.encodeStateVector(server)) });
    await until(() => handle.doc.getMap('m').get('k2') === 'v2', 'the remote update');
    expect(origins).toEqual([REMOTE_ORIGIN]);
    handle.doc.getMap('m').set('local', 1);
    await until(() => errors.length === 1, 'the read-only report');
    expect(errors[0]?.code).toBe('FORBIDDEN');

    const peer = new Awareness(new Y.Doc());
    peer.setLocalState({ user: 'carol' });
    fake.latest().emit('doc.awareness', { docId: 'ro-doc', data: encodeAwarenessUpdate(peer, [peer.clientID]) });
    await until(() => handle.awareness.getStates().has(peer.clientID), 'the peer’s awareness');
    peer.destroy();
    fake.latest().emit('doc.update', { docId: 'ro-doc', data: 'not base64 of an update !!' });
    await until(() => errors.length === 2, 'the malformed update report');
    expect(errors[1]?.code).toBe('INVALID_ARGUMENT');
  });
});
