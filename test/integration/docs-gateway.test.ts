import { Redis } from 'ioredis';
import { io as connectSocket, type Socket } from 'socket.io-client';
import uWS from 'uWebSockets.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate } from 'y-protocols/awareness';
import * as Y from 'yjs';
import { createDocsExtension } from '../../gateway/realtime/docs.js';
import { createRealtime, type Realtime } from '../../gateway/realtime/server.js';
import { DocStore, readSyncMessage, syncStep1Message } from '../../src/docs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { SOCKET_PATHS, msgpackParser, type Ack } from '../../src/protocol/index.js';
import { PostgresDb, type Db } from '../../src/store/index.js';
import type { Role } from '../../src/tenancy/index.js';
import { openTestCore, tokenFor, type TestCore } from '../support/backends.js';
import { requireService } from '../support/index.js';

type Flavor = keyof typeof SOCKET_PATHS;
type Bytes = Uint8Array;

/** One gateway node as far as documents go: its own uWS app, socket.io servers and DocStore. */
interface DocNode {
  url: string;
  realtime: Realtime;
  close(): Promise<void>;
}

async function startDocNode(t: TestCore, db: Db, redisUrl?: string): Promise<DocNode> {
  const app = uWS.App();
  const redis = redisUrl ? { pub: new Redis(redisUrl), sub: new Redis(redisUrl) } : undefined;
  const realtime = createRealtime({ app, tokens: t.core.tokens, config: t.config.realtime, log: createLogger('silent'), ...(redis ? { redis } : {}) });
  const docs = createDocsExtension(new DocStore({ db, maxUpdateBytes: 64 * 1024 }), realtime.broadcaster, { awarenessWindowMs: 40 });
  realtime.use(docs);
  const port = await new Promise<number>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (socket) => (socket ? resolve(uWS.us_socket_local_port(socket)) : reject(new Error('listen failed')))),
  );
  return {
    url: `http://127.0.0.1:${port}`,
    realtime,
    async close() {
      await realtime.drain();
      await realtime.close();
      await Promise.allSettled([redis?.pub.quit(), redis?.sub.quit()]);
      (app as unknown as { close(): void }).close();
    },
  };
}

const sockets: Socket[] = [];

async function connect(node: DocNode, tenantId: string, flavor: Flavor, roles: Role[] = ['developer'], userId = 'alice'): Promise<Socket> {
  const socket = connectSocket(node.url, {
    path: SOCKET_PATHS[flavor],
    ...(flavor === 'msgpack' ? { parser: msgpackParser } : {}),
    transports: ['websocket'],
    auth: { token: await tokenFor({ tenantId, userId, roles }) },
    reconnection: false,
    forceNew: true,
  });
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  return socket;
}

async function call<T>(socket: Socket, event: string, payload: unknown): Promise<Ack<T>> {
  return (await socket.timeout(10_000).emitWithAck(event, payload)) as Ack<T>;
}

async function ok<T>(socket: Socket, event: string, payload: unknown): Promise<T> {
  const ack = await call<T>(socket, event, payload);
  if (!ack.ok) throw new Error(`${event} failed: ${ack.error.code} ${ack.error.message}`);
  return ack.data;
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const REMOTE = 'remote';

/** What every well-behaved editor does over these events, with no client library in between. */
async function editor(socket: Socket, docId: string, opts: { base64?: boolean } = {}) {
  const doc = new Y.Doc();
  const awareness = new Awareness(doc);
  const wire = (bytes: Bytes) => (opts.base64 ? Buffer.from(bytes).toString('base64') : bytes);
  const pending: Promise<unknown>[] = [];
  const received = { updates: 0, awareness: 0 };
  socket.on('doc.update', (msg: { docId: string; data: Bytes }) => {
    if (msg.docId !== docId) return;
    received.updates++;
    Y.applyUpdate(doc, msg.data, REMOTE);
  });
  socket.on('doc.awareness', (msg: { docId: string; data: Bytes }) => {
    if (msg.docId !== docId) return;
    received.awareness++;
    applyAwarenessUpdate(awareness, msg.data, REMOTE);
  });
  doc.on('update', (update: Bytes, origin: unknown) => {
    if (origin !== REMOTE) pending.push(ok(socket, 'doc.update', { docId, data: wire(update) }));
  });
  const opened = await ok<{ docId: string; state: Bytes; writable: boolean }>(socket, 'doc.open', { docId });
  Y.applyUpdate(doc, opened.state, REMOTE);
  return {
    doc,
    awareness,
    opened,
    received,
    text: doc.getText('body'),
    committed: () => Promise.all(pending.splice(0)),
    point: (cursor: number) => {
      awareness.setLocalStateField('cursor', cursor);
      return ok(socket, 'doc.awareness', { docId, data: wire(encodeAwarenessUpdate(awareness, [doc.clientID])) });
    },
    destroy: () => awareness.destroy(),
  };
}

type Editor = Awaited<ReturnType<typeof editor>>;
const editors: Editor[] = [];
async function track(e: Promise<Editor>): Promise<Editor> {
  const made = await e;
  editors.push(made);
  return made;
}

afterAll(() => {
  for (const e of editors.splice(0)) e.destroy();
  for (const s of sockets.splice(0)) s.disconnect();
});

describe('shared documents over one gateway node', () => {
  let t: TestCore;
  let node: DocNode;

  beforeAll(async () => {
    t = await openTestCore('pglite', { AETERNA_RATE_LIMIT_PER_SEC: '500', AETERNA_RATE_LIMIT_BURST: '500' });
    node = await startDocNode(t, t.core.db);
  });
  afterAll(async () => {
    await node?.close();
    await t?.close();
  });

  it('relays updates between a msgpack editor and a JSON editor that sends base64, and both converge', async () => {
    const a = await track(editor(await connect(node, 'one', 'msgpack'), 'notes'));
    const b = await track(editor(await connect(node, 'one', 'json'), 'notes', { base64: true }));
    expect(a.opened).toMatchObject({ docId: 'notes', writable: true });
    a.text.insert(0, 'from msgpack. ');
    b.text.insert(0, 'from json. ');
    await Promise.all([a.committed(), b.committed()]);
    await until(() => a.text.toString() === b.text.toString() && a.text.length > 20, 'both editors to converge');
    // The sender is not echoed its own update.
    expect([a.received.updates, b.received.updates]).toEqual([1, 1]);
    const late = await track(editor(await connect(node, 'one', 'json'), 'notes'));
    expect(late.text.toString()).toBe(a.text.toString());
  });

  it('answers a y-protocols step 1 with step 2 and its own step 1', async () => {
    const writer = await track(editor(await connect(node, 'one', 'msgpack'), 'handshake'));
    writer.text.insert(0, 'server copy');
    await writer.committed();
    const socket = await connect(node, 'one', 'json', ['viewer'], 'vic');
    await ok(socket, 'doc.open', { docId: 'handshake' });
    const local = new Y.Doc();
    const reply = await ok<{ data: Bytes; step1: Bytes }>(socket, 'doc.sync', { docId: 'handshake', data: syncStep1Message(Y.encodeStateVector(local)) });
    const step2 = readSyncMessage(reply.data);
    expect(step2.type).toBe('step2');
    if (step2.type === 'step2') Y.applyUpdate(local, step2.update);
    expect(local.getText('body').toString()).toBe('server copy');
    expect(readSyncMessage(reply.step1)).toEqual({ type: 'step1', stateVector: Y.encodeStateVector(writer.doc) });
  });

  it('lets a viewer read but not write, and refuses edits to a document not opened', async () => {
    const viewer = await connect(node, 'one', 'msgpack', ['viewer'], 'vic');
    const d = new Y.Doc();
    d.getText('body').insert(0, 'nope');
    const update = Y.encodeStateAsUpdate(d);
    expect(await call(viewer, 'doc.open', { docId: 'ro' })).toMatchObject({ ok: true, data: { docId: 'ro', writable: false } });
    expect(await call(viewer, 'doc.update', { docId: 'ro', data: update })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    const dev = await connect(node, 'one', 'msgpack');
    expect(await call(dev, 'doc.update', { docId: 'ro', data: update })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', details: { reason: 'not_open' } } });
    expect(await call(dev, 'doc.awareness', { docId: 'ro', data: new Uint8Array([0]) })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    await ok(dev, 'doc.open', { docId: 'ro' });
    expect(await call(dev, 'doc.update', { docId: 'ro', data: 'not base64!' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', details: { field: 'data' } } });
    expect(await call(dev, 'doc.update', { docId: 'ro', data: new Uint8Array([1, 2, 3]) })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await call(dev, 'doc.update', { docId: '../x', data: update })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await call(dev, 'doc.close', { docId: 'ro' })).toMatchObject({ ok: true, data: { closed: true } });
    expect(await call(dev, 'doc.update', { docId: 'ro', data: update })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    const reopened = await ok<{ state: Bytes }>(dev, 'doc.open', { docId: 'ro' });
    expect(Y.decodeUpdate(reopened.state).structs).toEqual([]);
  });

  it('keeps the same document id of two tenants apart', async () => {
    const a = await track(editor(await connect(node, 'iso-a', 'msgpack'), 'plan'));
    const b = await track(editor(await connect(node, 'iso-b', 'msgpack'), 'plan'));
    a.text.insert(0, 'tenant A secret');
    await a.committed();
    await a.point(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(b.text.toString()).toBe('');
    expect(b.received).toEqual({ updates: 0, awareness: 0 });
  });

  it('merges a burst of awareness updates into a few messages and retracts a departed editor', async () => {
    const a = await track(editor(await connect(node, 'one', 'msgpack'), 'cursors'));
    const bSocket = await connect(node, 'one', 'json');
    const b = await track(editor(bSocket, 'cursors', { base64: true }));
    await Promise.all(Array.from({ length: 20 }, (_, i) => a.point(i)));
    await b.point(100);
    await until(() => a.awareness.getStates().get(b.doc.clientID)?.['cursor'] === 100, "b's cursor at a");
    await until(() => b.awareness.getStates().get(a.doc.clientID)?.['cursor'] === 19, "a's last cursor at b");
    // 21 updates from two editors within a window or two: far fewer messages than updates.
    expect(b.received.awareness).toBeLessThanOrEqual(4);

    bSocket.disconnect();
    await until(() => !a.awareness.getStates().has(b.doc.clientID), "b's departure at a");
  });
});

const pgUrl = requireService('postgres');
const redisUrl = requireService('redis');

describe.skipIf(!pgUrl || !redisUrl)('Yjs convergence across two gateway nodes (PostgreSQL + Redis)', () => {
  let t: TestCore;
  let secondDb: Db;
  let nodes: DocNode[];

  beforeAll(async () => {
    t = await openTestCore('postgres', { AETERNA_RATE_LIMIT_PER_SEC: '500', AETERNA_RATE_LIMIT_BURST: '500' });
    if (t.config.database.kind !== 'postgres') throw new Error('expected a PostgreSQL test database');
    // A second pool on the same database: the nodes share nothing but PostgreSQL and Redis.
    secondDb = await PostgresDb.open({ url: t.config.database.url, poolSize: 4 });
    nodes = [await startDocNode(t, t.core.db, redisUrl), await startDocNode(t, secondDb, redisUrl)];
  });
  afterAll(async () => {
    await Promise.allSettled((nodes ?? []).map((n) => n.close()));
    await secondDb?.close();
    await t?.close();
  });

  it('converges editors on different nodes, and a late joiner on either node', async () => {
    const tenant = `cluster-${Date.now()}`;
    const [n1, n2] = nodes as [DocNode, DocNode];
    const a = await track(editor(await connect(n1, tenant, 'msgpack'), 'spec'));
    const b = await track(editor(await connect(n2, tenant, 'json'), 'spec'));
    for (let i = 0; i < 15; i++) {
      a.text.insert(a.text.length, `a${i} `);
      b.text.insert(0, `b${i} `);
      if (i % 5 === 4) b.doc.getMap('meta').set(`k${i}`, i);
    }
    await Promise.all([a.committed(), b.committed()]);
    const converged = () => a.text.toString() === b.text.toString() && a.text.length === 100 && a.doc.getMap('meta').size === 3;
    await until(converged, 'editors on two nodes to converge');
    expect(a.doc.getMap('meta').toJSON()).toEqual({ k4: 4, k9: 9, k14: 14 });

    for (const n of [n1, n2]) {
      const late = await track(editor(await connect(n, tenant, 'msgpack'), 'spec'));
      expect(late.text.toString()).toBe(a.text.toString());
      expect(Y.encodeStateVector(late.doc)).toEqual(Y.encodeStateVector(a.doc));
    }

    await a.point(7);
    await until(() => b.awareness.getStates().get(a.doc.clientID)?.['cursor'] === 7, 'awareness across nodes');
  });
});
