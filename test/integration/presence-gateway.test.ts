import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { io as connectSocket, type Socket } from 'socket.io-client';
import uWS from 'uWebSockets.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPresenceExtension } from '../../gateway/realtime/presence.js';
import { createRealtime } from '../../gateway/realtime/server.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/obs/index.js';
import { MemoryPresenceRegistry, RedisPresenceRegistry, type PresenceEnvelope, type PresenceRegistry } from '../../src/presence/index.js';
import { SOCKET_PATHS, msgpackParser, type Ack, type PresenceMember } from '../../src/protocol/index.js';
import { TokenVerifier } from '../../src/tenancy/index.js';
import { TEST_JWT_SECRET, tokenFor } from '../support/backends.js';
import { requireService } from '../support/index.js';

/*
 * Presence through the real socket.io servers: one node with the in-process registry
 * (embedded), and several nodes sharing Redis for the adapter and the registry (cluster).
 *
 * Cluster clients here use long-polling. socket.io's uWS integration patches the adapter
 * prototype process-wide, and its fast path for a one-room broadcast without `except`
 * publishes on the uWS app attached *last*: with several nodes in one process, WebSocket
 * clients of the other nodes would miss those events (a real node is one process with one app;
 * test/e2e covers WebSockets across processes). Long-polling clients are written to per socket.
 */

const redisUrl = requireService('redis');
const unique = () => randomBytes(5).toString('hex');
type Flavor = keyof typeof SOCKET_PATHS;

const TTL_MS = 600;
const DEPARTURE_WAIT_MS = 8_000;

interface GatewayNode {
  url: string;
  /** Graceful: drain (removes this node's presence at once), then close. */
  close(): Promise<void>;
  /** As good as kill -9 for presence: heartbeats stop, nothing is removed, sockets drop. */
  kill(): Promise<void>;
}

interface Seen {
  type: string;
  envelope: PresenceEnvelope;
}

let config: Config;
let dataDir: string;
const tokens = new TokenVerifier({ keys: { kind: 'secret', secret: TEST_JWT_SECRET } });
const sockets: Socket[] = [];
/** Every client of the current test, so a timeout can say what each one saw. */
const clients: Client[] = [];
const running: GatewayNode[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-presence-'));
  config = loadConfig({
    AETERNA_DATA_DIR: dataDir,
    AETERNA_JWT_SECRET: TEST_JWT_SECRET,
    AETERNA_LOG_LEVEL: 'silent',
    AETERNA_RATE_LIMIT_PER_SEC: '500',
    AETERNA_RATE_LIMIT_BURST: '500',
  });
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.disconnect();
  clients.length = 0;
  await Promise.all(running.splice(0).map((n) => n.close()));
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function startNode(registry: PresenceRegistry, withRedis: boolean): Promise<GatewayNode> {
  const app = uWS.App();
  const redis = withRedis && redisUrl ? { pub: new Redis(redisUrl), sub: new Redis(redisUrl) } : undefined;
  const realtime = createRealtime({ app, tokens, config: config.realtime, log: createLogger('silent'), ...(redis ? { redis } : {}) });
  realtime.use(createPresenceExtension(registry, realtime.broadcaster, { log: () => undefined }));
  await registry.start();
  const port = await new Promise<number>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (socket) => (socket ? resolve(uWS.us_socket_local_port(socket)) : reject(new Error('listen failed')))),
  );
  let closing: Promise<void> | undefined;
  const shutdown = (graceful: boolean) => {
    closing ??= (async () => {
      if (graceful) await realtime.drain();
      else await registry.close();
      // close() exists in this uWS build (it drops every open socket) but is missing from its typings.
      (app as unknown as { close(): void }).close();
      await realtime.close();
      await Promise.allSettled([redis?.pub.quit(), redis?.sub.quit()]);
    })();
    return closing;
  };
  const node: GatewayNode = { url: `http://127.0.0.1:${port}`, close: () => shutdown(true), kill: () => shutdown(false) };
  running.push(node);
  return node;
}

interface Client {
  socket: Socket;
  seen: Seen[];
}

type Transport = 'websocket' | 'polling';

async function connect(node: GatewayNode, tenantId: string, userId: string, opts: { agentId?: string; flavor?: Flavor; transport?: Transport } = {}): Promise<Client> {
  const flavor = opts.flavor ?? 'msgpack';
  const socket = connectSocket(node.url, {
    path: SOCKET_PATHS[flavor],
    ...(flavor === 'msgpack' ? { parser: msgpackParser } : {}),
    transports: [opts.transport ?? 'websocket'],
    auth: { token: await tokenFor({ tenantId, userId, roles: ['developer'], ...(opts.agentId ? { agentId: opts.agentId } : {}) }) },
    reconnection: false,
    forceNew: true,
  });
  sockets.push(socket);
  const seen: Seen[] = [];
  for (const type of ['presence.joined', 'presence.updated', 'presence.left']) {
    socket.on(type, (envelope: PresenceEnvelope) => seen.push({ type, envelope }));
  }
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  const client = { socket, seen };
  clients.push(client);
  return client;
}

async function call<T>(client: Client, event: string, payload: unknown): Promise<Ack<T>> {
  return (await client.socket.timeout(10_000).emitWithAck(event, payload)) as Ack<T>;
}

async function ok<T>(client: Client, event: string, payload: unknown): Promise<T> {
  const ack = await call<T>(client, event, payload);
  if (!ack.ok) throw new Error(`${event} failed: ${ack.error.code} ${ack.error.message}`);
  return ack.data;
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; seen: ${JSON.stringify(clients.map(brief))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const brief = (client: Client) => client.seen.map(({ type, envelope }) => `${type} ${envelope.data.member.memberId} ${envelope.data.member.connections}`);
/**
 * What a client heard about one member. A join racing another's may be both in the ack's list
 * and heard live (clients upsert), so a test only counts events about members that joined later.
 */
const about = (client: Client, memberId: string) => brief(client).filter((line) => line.split(' ')[1] === memberId);
const join = (client: Client, sessionId: string, extra: Record<string, unknown> = {}) =>
  ok<{ members: PresenceMember[] }>(client, 'session.join', { sessionId, ...extra });

function clusterRegistry(namespace: string, ttlMs = TTL_MS): RedisPresenceRegistry {
  return new RedisPresenceRegistry({ url: redisUrl ?? '', nodeId: `node-${unique()}`, namespace, ttlMs, heartbeatMs: 200, sweepMs: 100, log: () => undefined });
}

const modes: { mode: string; skip: boolean; transport: Transport; nodes: () => Promise<readonly [GatewayNode, GatewayNode]> }[] = [
  {
    mode: 'embedded',
    skip: false,
    transport: 'websocket',
    // One process: both "nodes" are the same one.
    nodes: async () => {
      const node = await startNode(new MemoryPresenceRegistry(), false);
      return [node, node] as const;
    },
  },
  {
    mode: 'cluster',
    skip: !redisUrl,
    transport: 'polling',
    nodes: async () => {
      const namespace = `test-${unique()}`;
      return [await startNode(clusterRegistry(namespace), true), await startNode(clusterRegistry(namespace), true)] as const;
    },
  },
];

describe.each(modes)('presence over the gateway ($mode)', ({ skip, transport, nodes }) => {
  it.skipIf(skip)('announces joins, updates and leaves to the rest of the session, in the event envelope', async () => {
    const [one, two] = await nodes();
    const tenantId = `t-${unique()}`;
    const alice = await connect(one, tenantId, 'alice', { transport });
    expect((await join(alice, 's1', { meta: { name: 'Alice' } })).members.map((m) => m.memberId)).toEqual(['alice']);

    const bob = await connect(two, tenantId, 'bob', { agentId: 'b1', flavor: 'json', transport });
    const bobJoin = await join(bob, 's1', { status: 'thinking', activity: 'planning' });
    expect(bobJoin.members.map((m) => m.memberId)).toEqual(['alice', 'bob/b1']);
    await until('alice to see bob join', () => alice.seen.length === 1);
    const [joined] = alice.seen;
    expect(joined?.type).toBe('presence.joined');
    expect(joined?.envelope).toMatchObject({
      seq: null,
      tenantId,
      type: 'presence.joined',
      actor: { userId: 'bob', agentId: 'b1' },
      data: { sessionId: 's1', member: { memberId: 'bob/b1', status: 'thinking', activity: 'planning', connections: 1 } },
    });
    expect(typeof joined?.envelope.id).toBe('string');

    // The same agent again, through the other node: one member, two connections.
    const bobAgain = await connect(one, tenantId, 'bob', { agentId: 'b1', transport });
    await join(bobAgain, 's1');
    await until('the second connection', () => alice.seen.length === 2 && bob.seen.length === 1);
    expect(brief(alice)[1]).toBe('presence.updated bob/b1 2');

    expect(await ok(bob, 'presence.update', { sessionId: 's1', status: 'tool-calling', activity: 'search' })).toMatchObject({
      member: { status: 'tool-calling', connections: 2 },
    });
    await until('the status change', () => alice.seen.length === 3);
    expect(alice.seen[2]?.envelope.data.member).toMatchObject({ status: 'tool-calling', activity: 'search' });

    bobAgain.socket.disconnect();
    await until('the dropped connection', () => alice.seen.length === 4);
    expect(brief(alice)[3]).toBe('presence.updated bob/b1 1');

    expect(await ok(bob, 'session.leave', { sessionId: 's1' })).toEqual({ left: true });
    await until('bob to leave', () => alice.seen.length === 5);
    expect(alice.seen[4]).toMatchObject({ type: 'presence.left', envelope: { data: { member: { memberId: 'bob/b1', connections: 0 } } } });
    expect(await ok(bob, 'session.leave', { sessionId: 's1' })).toEqual({ left: false });

    // Nobody hears their own changes as events (the acks carry them), nor anything after
    // leaving; bob's first connection does hear about his second one.
    await sleep(200);
    expect(brief(alice)).toHaveLength(5);
    expect(about(bob, 'bob/b1')).toEqual(['presence.updated bob/b1 2', 'presence.updated bob/b1 1']);
    expect(about(bobAgain, 'bob/b1')).toEqual(['presence.updated bob/b1 2']);
  });

  it.skipIf(skip)('answers bad requests with clear errors', async () => {
    const [one] = await nodes();
    const client = await connect(one, `t-${unique()}`, 'carl', { transport });
    expect(await call(client, 'presence.update', { sessionId: 's1', status: 'away' })).toMatchObject({
      ok: false,
      error: { code: 'INVALID_ARGUMENT', message: 'join the session first' },
    });
    expect(await call(client, 'session.join', { sessionId: 's1', status: 'offline' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await call(client, 'session.join', { sessionId: 't:other:session:s1' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await call(client, 'session.join', {})).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
  });

  it.skipIf(skip)('keeps tenants apart: the same session id in another tenant is another session', async () => {
    const [one, two] = await nodes();
    const alice = await connect(one, `t-${unique()}`, 'alice', { transport });
    await join(alice, 's1');
    const mallory = await connect(two, `t-${unique()}`, 'mallory', { transport });
    expect((await join(mallory, 's1')).members.map((m) => m.memberId)).toEqual(['mallory']);
    await ok(mallory, 'presence.update', { sessionId: 's1', status: 'busy' });
    await sleep(300);
    expect(alice.seen).toEqual([]);
    expect(mallory.seen).toEqual([]);
  });
});

describe.skipIf(!redisUrl)('presence when a gateway node goes away (cluster)', () => {
  it("announces a killed node's members as left on the other nodes, once", async () => {
    const namespace = `test-${unique()}`;
    const survivor = await startNode(clusterRegistry(namespace), true);
    const other = await startNode(clusterRegistry(namespace), true);
    const doomed = await startNode(clusterRegistry(namespace), true);
    const tenantId = `t-${unique()}`;
    const alice = await connect(survivor, tenantId, 'alice', { transport: 'polling' });
    const olga = await connect(other, tenantId, 'olga', { transport: 'polling' });
    await join(alice, 's1');
    await join(olga, 's1');
    await join(await connect(doomed, tenantId, 'dave', { agentId: 'd', transport: 'polling' }), 's1');
    await until('dave to be seen', () => about(alice, 'dave/d').length === 1 && about(olga, 'dave/d').length === 1);

    await doomed.kill();
    await until('dave to be announced left', () => about(alice, 'dave/d').length === 2 && about(olga, 'dave/d').length === 2, DEPARTURE_WAIT_MS);
    // Both surviving nodes sweep; a few more rounds must not announce it again.
    await sleep(600);
    expect(about(alice, 'dave/d')).toEqual(['presence.joined dave/d 1', 'presence.left dave/d 0']);
    expect(about(olga, 'dave/d')).toEqual(['presence.joined dave/d 1', 'presence.left dave/d 0']);
  });

  it("on drain removes this node's members at once, without waiting for their expiry", async () => {
    const namespace = `test-${unique()}`;
    const staying = await startNode(clusterRegistry(namespace), true);
    // An expiry of a minute: a departure within seconds can only come from the drain.
    const draining = await startNode(clusterRegistry(namespace, 60_000), true);
    const tenantId = `t-${unique()}`;
    const alice = await connect(staying, tenantId, 'alice', { transport: 'polling' });
    await join(alice, 's1');
    await join(await connect(draining, tenantId, 'erin', { transport: 'polling' }), 's1');
    await until('erin to be seen', () => about(alice, 'erin').length === 1);
    await draining.close();
    await until('erin to be announced left', () => about(alice, 'erin').length === 2, 5_000);
    expect(about(alice, 'erin')).toEqual(['presence.joined erin 1', 'presence.left erin 0']);
  });
});
