import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isAeternaError } from '../../src/protocol/index.js';
import { RedisPresenceRegistry, type PresenceChange, type RedisPresenceOptions } from '../../src/presence/index.js';
import { requireService } from '../support/index.js';

/*
 * Several RedisPresenceRegistry instances on one Redis stand for several gateway nodes. Each
 * test has its own tenant (so its own keys) and its own namespace (so its own sweep index: no
 * other test's sweeper can report its departures). A node "dies" by close() without
 * removeOwn(): its timers stop and its entries stay in Redis un-heartbeated, which is exactly
 * what a kill -9 leaves behind.
 */

const redisUrl = requireService('redis');
const unique = () => randomBytes(5).toString('hex');

const TTL_MS = 600;
const HEARTBEAT_MS = 200;
const SWEEP_MS = 100;
/** Generous: the sweep should report within ttl + sweep; CI machines stall. */
const DEPARTURE_WAIT_MS = 8_000;

interface TestNode {
  registry: RedisPresenceRegistry;
  changes: PresenceChange[];
  logged: string[];
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = DEPARTURE_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A registry with test timings that records what it announces and logs. */
function testNode(opts: Partial<RedisPresenceOptions> & { url: string; namespace: string }): TestNode {
  const logged: string[] = [];
  const registry = new RedisPresenceRegistry({
    nodeId: `node-${unique()}`,
    ttlMs: TTL_MS,
    heartbeatMs: HEARTBEAT_MS,
    sweepMs: SWEEP_MS,
    log: (message) => logged.push(message),
    ...opts,
  });
  const made: TestNode = { registry, changes: [], logged };
  registry.onChange((change) => made.changes.push(change));
  return made;
}

const summary = (changes: PresenceChange[]) => changes.map((c) => `${c.kind} ${c.member.memberId} ${c.member.connections}`).sort();

describe.skipIf(!redisUrl)('RedisPresenceRegistry across nodes', () => {
  const url = redisUrl ?? '';
  let raw: Redis;
  let nodes: TestNode[] = [];
  let namespace: string;
  let tenantId: string;

  beforeAll(() => {
    raw = new Redis(url);
  });
  afterAll(async () => {
    await raw.quit();
  });
  afterEach(async () => {
    await Promise.all(
      nodes.map(async ({ registry }) => {
        await registry.removeOwn().catch(() => undefined);
        await registry.close();
      }),
    );
    nodes = [];
    namespace = `test-${unique()}`;
    tenantId = `t-${unique()}`;
  });
  namespace = `test-${unique()}`;
  tenantId = `t-${unique()}`;

  async function node(opts: Partial<RedisPresenceOptions> & { start?: boolean } = {}): Promise<TestNode> {
    const { start = true, ...rest } = opts;
    const made = testNode({ url, namespace, ...rest });
    nodes.push(made);
    if (start) await made.registry.start();
    return made;
  }

  const conn = (connectionId: string, userId: string, agentId?: string, sessionId = 's1') =>
    agentId === undefined ? { tenantId, sessionId, connectionId, userId } : { tenantId, sessionId, connectionId, userId, agentId };

  it('a late joiner on another node gets the full member list', async () => {
    const a = await node();
    const b = await node();
    await a.registry.join(conn('c1', 'alice'), { status: 'online' });
    await a.registry.join(conn('c2', 'bob', 'coder'), { status: 'thinking', activity: 'planning' });
    const late = await b.registry.join(conn('c3', 'carol'), { status: 'busy' });
    expect(late.members.map((m) => m.memberId)).toEqual(['alice', 'bob/coder', 'carol']);
    expect(late.members[1]).toMatchObject({ status: 'thinking', activity: 'planning', connections: 1 });
    expect(await a.registry.members(tenantId, 's1')).toEqual(late.members);
  });

  it('one agent connected through two nodes is one member, and concurrent joins announce one `joined`', async () => {
    const a = await node();
    const b = await node();
    const results = await Promise.all([a.registry.join(conn('c1', 'dan', 'x'), { status: 'online' }), b.registry.join(conn('c2', 'dan', 'x'), { status: 'online' })]);
    expect(results.map((r) => r.change?.kind).sort()).toEqual(['joined', 'updated']);
    expect((await b.registry.members(tenantId, 's1'))[0]).toMatchObject({ memberId: 'dan/x', connections: 2 });
    expect(await a.registry.leave(conn('c1', 'dan', 'x'))).toMatchObject({ kind: 'updated', member: { connections: 1 } });
    expect(await b.registry.leave(conn('c2', 'dan', 'x'))).toMatchObject({ kind: 'left' });
  });

  it('heartbeats keep live members past the ttl', async () => {
    const a = await node();
    const b = await node();
    await a.registry.join(conn('c1', 'eve'), { status: 'online' });
    await sleep(TTL_MS * 3);
    expect((await b.registry.members(tenantId, 's1')).map((m) => m.memberId)).toEqual(['eve']);
    expect([...a.changes, ...b.changes]).toEqual([]);
  });

  it("a dead node's members are announced by exactly one surviving node, and shared members only lose a connection", async () => {
    const a = await node();
    const b = await node();
    const c = await node();
    await a.registry.join(conn('c1', 'finn'), { status: 'online' });
    await a.registry.join(conn('c2', 'gail', 'g'), { status: 'online' });
    await a.registry.join(conn('c3', 'gail', 'g'), { status: 'online' });
    await a.registry.join(conn('c4', 'hugo'), { status: 'online' });
    await b.registry.join(conn('c5', 'hugo'), { status: 'online' });
    await a.registry.join(conn('c6', 'finn', undefined, 's2'), { status: 'busy' });
    // One heartbeat gives all of A's connections in a session the same expiry. (A node killed
    // before that may have gail's two connections expire a few ms apart: `updated`, then `left`.)
    await sleep(HEARTBEAT_MS * 2);

    await a.registry.close(); // kill -9: no removeOwn
    const survivors = () => [...b.changes, ...c.changes];
    await waitFor('the departures', () => survivors().length >= 4);
    // Several more sweeps on both survivors: nothing may be reported twice.
    await sleep(SWEEP_MS * 6);
    expect(summary(survivors())).toEqual(['left finn 0', 'left finn 0', 'left gail/g 0', 'updated hugo 1']);
    expect(survivors().filter((ch) => ch.member.memberId === 'finn').map((ch) => ch.sessionId).sort()).toEqual(['s1', 's2']);
    expect(await b.registry.members(tenantId, 's1')).toEqual([expect.objectContaining({ memberId: 'hugo', connections: 1 })]);
    expect(await c.registry.members(tenantId, 's2')).toEqual([]);
  });

  it('members() purges what expired and announces it, even with no sweeper running', async () => {
    const a = await node();
    const reader = await node({ start: false });
    await a.registry.join(conn('c1', 'iris'), { status: 'online' });
    await a.registry.close();
    await sleep(TTL_MS + 100);
    expect(await reader.registry.members(tenantId, 's1')).toEqual([]);
    expect(await reader.registry.members(tenantId, 's1')).toEqual([]);
    expect(summary(reader.changes)).toEqual(['left iris 0']);
  });

  it('removeOwn removes at once; the other nodes see the result and report nothing later', async () => {
    const a = await node();
    const b = await node();
    await a.registry.join(conn('c1', 'jay'), { status: 'online' });
    await a.registry.join(conn('c2', 'kai'), { status: 'online' });
    await b.registry.join(conn('c3', 'kai'), { status: 'online' });
    expect(summary(await a.registry.removeOwn())).toEqual(['left jay 0', 'updated kai 1']);
    expect((await b.registry.members(tenantId, 's1')).map((m) => [m.memberId, m.connections])).toEqual([['kai', 1]]);
    await a.registry.close();
    await sleep(TTL_MS * 2);
    expect(b.changes).toEqual([]);
  });

  it('a connection purged while its node could not reach Redis comes back and is announced again', async () => {
    // A's heartbeat starts only after the purge, so it cannot refresh the entry first.
    const a = await node({ start: false });
    const b = await node();
    await a.registry.join(conn('c1', 'lena'), { status: 'away' });
    // As if A's heartbeats had not reached Redis for a ttl: the entry's expiry is in the past.
    await raw.zadd(`t:${tenantId}:presence:s1:exp`, 0, 'c1');
    expect(await b.registry.members(tenantId, 's1')).toEqual([]);
    expect(summary(b.changes)).toEqual(['left lena 0']);
    await a.registry.start();
    await waitFor('the restore', () => a.changes.length >= 1);
    await sleep(HEARTBEAT_MS * 3);
    expect(summary(a.changes)).toEqual(['joined lena 1']);
    expect(a.changes[0]?.member.status).toBe('away');
    expect(b.changes).toHaveLength(1);
    expect((await b.registry.members(tenantId, 's1')).map((m) => m.memberId)).toEqual(['lena']);
  });

  it('keeps tenants apart: keys start with the tenant, the same session id is two sessions', async () => {
    const a = await node();
    const b = await node();
    const other = `t-${unique()}`;
    await a.registry.join(conn('c1', 'mia'), { status: 'online' });
    const foreign = await b.registry.join({ tenantId: other, sessionId: 's1', connectionId: 'c2', userId: 'mallory' }, { status: 'online' });
    expect(foreign.members.map((m) => m.memberId)).toEqual(['mallory']);
    expect((await b.registry.members(tenantId, 's1')).map((m) => m.memberId)).toEqual(['mia']);
    const [, keys] = await raw.scan(0, 'MATCH', `t:${tenantId}:*`, 'COUNT', 10_000);
    expect(keys.sort()).toEqual([`t:${tenantId}:presence:s1:conns`, `t:${tenantId}:presence:s1:exp`, `t:${tenantId}:presence:s1:members`]);
    expect(await raw.zrange(`${namespace}:presence:sessions`, 0, -1)).toEqual(expect.arrayContaining([`${tenantId}:s1`, `${other}:s1`]));
    expect(await b.registry.leave({ tenantId, sessionId: 's1', connectionId: 'c2' })).toBeUndefined();
    await b.registry.leave({ tenantId: other, sessionId: 's1', connectionId: 'c2' });
  });

  it('leaves no keys behind once a session is empty', async () => {
    const a = await node();
    await a.registry.join(conn('c1', 'ned'), { status: 'online' });
    await a.registry.leave(conn('c1', 'ned'));
    expect(await raw.exists(`t:${tenantId}:presence:s1:conns`, `t:${tenantId}:presence:s1:exp`, `t:${tenantId}:presence:s1:members`)).toBe(0);
    expect(await raw.zscore(`${namespace}:presence:sessions`, `${tenantId}:s1`)).toBeNull();
  });

  it('with Redis unreachable, calls fail with UNAVAILABLE, timers log, and nothing crashes', async () => {
    const down = await node({ url: 'redis://127.0.0.1:1', redis: { connectTimeout: 300 } });
    const started = Date.now();
    for (const attempt of [down.registry.join(conn('c1', 'otto'), { status: 'online' }), down.registry.members(tenantId, 's1')]) {
      const err = await attempt.then(
        () => expect.fail('expected UNAVAILABLE'),
        (e: unknown) => e,
      );
      expect(isAeternaError(err) && err.code).toBe('UNAVAILABLE');
    }
    expect(Date.now() - started).toBeLessThan(10_000);
    // Nothing was joined, so these need no Redis at all.
    expect(await down.registry.update(conn('c1', 'otto'), { status: 'away' })).toBeUndefined();
    expect(await down.registry.leave(conn('c1', 'otto'))).toBeUndefined();
    // Let the heartbeat and the sweeper fail a few times: an unhandled rejection would fail this file.
    await sleep(SWEEP_MS * 5);
    expect(down.logged.length).toBeGreaterThan(0);
    expect(new Set(down.logged).size).toBe(down.logged.length);
  });
});

/*
 * Outages need a Redis of our own to stop, restart and pause: the shared one serves other
 * suites. Skipped (with the reason) where no redis-server binary is installed.
 */
const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;
if (redisUrl && !hasRedisServer) console.warn('[presence tests] no redis-server binary: the Redis outage tests are SKIPPED');

interface PrivateRedis {
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** `dir`: keep the data across restarts (append-only file there), as a persistent Redis does. */
async function privateRedis(dir?: string): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}`;
  const persistence = dir ? ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir] : ['--appendonly', 'no'];
  return {
    url,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence], { stdio: 'ignore' });
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      await waitFor('the private Redis', async () => {
        try {
          await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          return false;
        }
      });
      probe.disconnect();
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
    },
  };
}

describe.skipIf(!redisUrl || !hasRedisServer)('RedisPresenceRegistry through Redis outages', () => {
  let redis: PrivateRedis;
  let persistent: PrivateRedis;
  let dataDir: string;
  const registries: RedisPresenceRegistry[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-presence-redis-'));
    redis = await privateRedis();
    persistent = await privateRedis(dataDir);
    await Promise.all([redis.start(), persistent.start()]);
  });
  afterAll(async () => {
    await Promise.all(registries.map((r) => r.close()));
    await Promise.all([redis.stop(), persistent.stop()]);
    await rm(dataDir, { recursive: true, force: true });
  });

  async function outageNode(tenantId: string, namespace: string, opts: Partial<RedisPresenceOptions> = {}) {
    const made = testNode({ url: redis.url, namespace, ...opts });
    registries.push(made.registry);
    await made.registry.start();
    const conn = (connectionId: string, userId: string) => ({ tenantId, sessionId: 's1', connectionId, userId });
    return { ...made, conn };
  }

  it('a Redis stall longer than the ttl does not announce live members as left', async () => {
    const tenantId = `t-${unique()}`;
    const namespace = `test-${unique()}`;
    const a = await outageNode(tenantId, namespace);
    const b = await outageNode(tenantId, namespace);
    await a.registry.join(a.conn('c1', 'alice'), { status: 'online' });
    await b.registry.join(b.conn('c2', 'bob'), { status: 'online' });
    const admin = new Redis(redis.url);
    try {
      // Every client's commands wait (none fail) for longer than an entry lives.
      await admin.call('CLIENT', 'PAUSE', String(TTL_MS * 2), 'ALL');
      await sleep(TTL_MS * 2 + TTL_MS * 2);
      expect([...a.changes, ...b.changes]).toEqual([]);
      expect((await b.registry.members(tenantId, 's1')).map((m) => m.memberId)).toEqual(['alice', 'bob']);
    } finally {
      await admin.quit();
    }
  });

  it('a restart of a Redis that kept its data, after more than a ttl down, does not announce live members as left', async () => {
    const tenantId = `t-${unique()}`;
    const namespace = `test-${unique()}`;
    // A ttl above ioredis' longest reconnect delay (2 s), as in production, so both nodes are
    // back within it; stale expiries are then refreshed before anyone sweeps.
    const opts = { url: persistent.url, ttlMs: 3_000, heartbeatMs: 300 };
    const a = await outageNode(tenantId, namespace, opts);
    const b = await outageNode(tenantId, namespace, opts);
    await a.registry.join(a.conn('c1', 'alice'), { status: 'online' });
    await b.registry.join(b.conn('c2', 'bob'), { status: 'online' });
    await persistent.stop();
    await sleep(4_000);
    await persistent.start();
    await waitFor('both nodes to reconnect', async () => (await b.registry.members(tenantId, 's1').catch(() => [])).length === 2);
    await sleep(4_000);
    expect([...a.changes, ...b.changes]).toEqual([]);
    expect((await a.registry.members(tenantId, 's1')).map((m) => m.memberId)).toEqual(['alice', 'bob']);
  });

  it('while Redis is down calls fail with UNAVAILABLE; after a restart that lost everything, members come back', async () => {
    const tenantId = `t-${unique()}`;
    const namespace = `test-${unique()}`;
    const a = await outageNode(tenantId, namespace);
    const b = await outageNode(tenantId, namespace);
    await a.registry.join(a.conn('c1', 'alice'), { status: 'online' });
    await b.registry.join(b.conn('c2', 'bob'), { status: 'away' });

    await redis.stop();
    const err = await a.registry.join(a.conn('c3', 'carol'), { status: 'online' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isAeternaError(err) && err.code).toBe('UNAVAILABLE');
    await sleep(TTL_MS * 2);
    await redis.start();

    // No persistence: the restarted Redis is empty, and each node's heartbeat puts its own back.
    await waitFor('the members to be restored', async () => {
      const members = await b.registry.members(tenantId, 's1').catch(() => []);
      return members.length === 2;
    });
    await sleep(SWEEP_MS * 5);
    expect(summary(a.changes)).toEqual(['joined alice 1']);
    expect(summary(b.changes)).toEqual(['joined bob 1']);
    expect((await a.registry.members(tenantId, 's1')).map((m) => [m.memberId, m.status])).toEqual([
      ['alice', 'online'],
      ['bob', 'away'],
    ]);
    // The carol join that failed left nothing to heartbeat.
    expect((await a.registry.members(tenantId, 's1')).some((m) => m.memberId === 'carol')).toBe(false);
    expect(a.logged.some((line) => line.includes('failed'))).toBe(true);
    expect(a.logged.some((line) => line.includes('recovered'))).toBe(true);
  });
});
