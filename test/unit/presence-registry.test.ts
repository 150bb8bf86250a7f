import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { PRESENCE_STATUSES, isAeternaError, presenceUpdateSchema, sessionJoinSchema } from '../../src/protocol/index.js';
import {
  MemoryPresenceRegistry,
  RedisPresenceRegistry,
  presenceEnvelope,
  type PresenceConnection,
  type PresenceRegistry,
} from '../../src/presence/index.js';
import { requireService } from '../support/index.js';

/*
 * The behaviour every PresenceRegistry must share, run against the in-process registry always
 * and against Redis when a test Redis is available. What only the Redis registry does (several
 * nodes, expiry, sweeping) is in test/integration/presence-redis.test.ts.
 */

const redisUrl = requireService('redis');
const unique = () => randomBytes(5).toString('hex');

const backends: { name: string; skip: boolean; create: () => PresenceRegistry }[] = [
  { name: 'memory', skip: false, create: () => new MemoryPresenceRegistry() },
  {
    name: 'redis',
    skip: !redisUrl,
    create: () => new RedisPresenceRegistry({ url: redisUrl ?? '', nodeId: `node-${unique()}`, namespace: `test-${unique()}`, log: () => undefined }),
  },
];

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail('expected a rejection'),
    (err: unknown) => err,
  );
}

describe.each(backends)('PresenceRegistry contract ($name)', ({ skip, create }) => {
  const open: PresenceRegistry[] = [];
  afterEach(async () => {
    // removeOwn first, so a shared Redis keeps no entries of this run.
    await Promise.all(open.splice(0).map(async (r) => {
      await r.removeOwn().catch(() => undefined);
      await r.close();
    }));
  });

  function setup() {
    const registry = create();
    open.push(registry);
    const tenantId = `t-${unique()}`;
    const conn = (connectionId: string, userId: string, agentId?: string, sessionId = 's1'): PresenceConnection =>
      agentId === undefined ? { tenantId, sessionId, connectionId, userId } : { tenantId, sessionId, connectionId, userId, agentId };
    return { registry, tenantId, conn };
  }

  it.skipIf(skip)('a first join is announced as joined and lists the joiner', async () => {
    const { registry, tenantId, conn } = setup();
    const result = await registry.join(conn('c1', 'alice', 'planner'), { status: 'online', activity: 'reading', meta: { color: 'red' } });
    expect(result.change?.kind).toBe('joined');
    expect(result.member).toMatchObject({ memberId: 'alice/planner', userId: 'alice', agentId: 'planner', status: 'online', activity: 'reading', meta: { color: 'red' }, connections: 1 });
    expect(result.members).toEqual([result.member]);
    expect(await registry.members(tenantId, 's1')).toEqual([result.member]);
  });

  it.skipIf(skip)('one agent with two connections is one member with connections: 2', async () => {
    const { registry, tenantId, conn } = setup();
    await registry.join(conn('c1', 'alice', 'planner'), { status: 'online' });
    const second = await registry.join(conn('c2', 'alice', 'planner'), { status: 'busy' });
    expect(second.change?.kind).toBe('updated');
    expect(second.member).toMatchObject({ memberId: 'alice/planner', connections: 2, status: 'busy' });
    const members = await registry.members(tenantId, 's1');
    expect(members).toHaveLength(1);
    expect(members[0]?.connections).toBe(2);
  });

  it.skipIf(skip)('the same user as itself and as each agent are different members', async () => {
    const { registry, tenantId, conn } = setup();
    await registry.join(conn('c1', 'alice'), { status: 'online' });
    await registry.join(conn('c2', 'alice', 'planner'), { status: 'online' });
    await registry.join(conn('c3', 'alice', 'coder'), { status: 'online' });
    const ids = (await registry.members(tenantId, 's1')).map((m) => m.memberId).sort();
    expect(ids).toEqual(['alice', 'alice/coder', 'alice/planner']);
  });

  it.skipIf(skip)('leaving one of two connections keeps the member; leaving the last is `left`', async () => {
    const { registry, tenantId, conn } = setup();
    await registry.join(conn('c1', 'bob', 'a1'), { status: 'online' });
    await registry.join(conn('c2', 'bob', 'a1'), { status: 'online' });

    const first = await registry.leave(conn('c1', 'bob', 'a1'));
    expect(first?.kind).toBe('updated');
    expect(first?.member.connections).toBe(1);
    expect(await registry.members(tenantId, 's1')).toHaveLength(1);

    const last = await registry.leave(conn('c2', 'bob', 'a1'));
    expect(last?.kind).toBe('left');
    expect(last?.member).toMatchObject({ memberId: 'bob/a1', connections: 0 });
    expect(await registry.members(tenantId, 's1')).toEqual([]);
  });

  it.skipIf(skip)('leave and update of a connection that never joined change nothing', async () => {
    const { registry, conn } = setup();
    expect(await registry.leave(conn('nobody', 'carol'))).toBeUndefined();
    expect(await registry.update(conn('nobody', 'carol'), { status: 'away' })).toBeUndefined();
    await registry.join(conn('c1', 'carol'), { status: 'online' });
    await registry.leave(conn('c1', 'carol'));
    expect(await registry.leave(conn('c1', 'carol'))).toBeUndefined();
  });

  it.skipIf(skip)('update changes the state; repeating it announces nothing', async () => {
    const { registry, tenantId, conn } = setup();
    await registry.join(conn('c1', 'dave', 'a'), { status: 'online', meta: { name: 'Dave' } });
    const updated = await registry.update(conn('c1', 'dave', 'a'), { status: 'tool-calling', activity: 'grep' });
    expect(updated?.change?.kind).toBe('updated');
    // meta omitted keeps the old one; activity describes the status.
    expect(updated?.member).toMatchObject({ status: 'tool-calling', activity: 'grep', meta: { name: 'Dave' } });
    const again = await registry.update(conn('c1', 'dave', 'a'), { status: 'tool-calling', activity: 'grep' });
    expect(again?.change).toBeUndefined();
    const cleared = await registry.update(conn('c1', 'dave', 'a'), { status: 'thinking' });
    expect(cleared?.member.activity).toBeUndefined();
    expect((await registry.members(tenantId, 's1'))[0]).toMatchObject({ status: 'thinking', connections: 1 });
  });

  it.skipIf(skip)("a member shows its most recently changed connection's state, and falls back when that one leaves", async () => {
    const { registry, conn } = setup();
    await registry.join(conn('c1', 'erin', 'a'), { status: 'away' });
    await new Promise((r) => setTimeout(r, 5));
    await registry.join(conn('c2', 'erin', 'a'), { status: 'online' });
    await new Promise((r) => setTimeout(r, 5));
    const busy = await registry.update(conn('c1', 'erin', 'a'), { status: 'busy' });
    expect(busy?.member.status).toBe('busy');
    const fallback = await registry.leave(conn('c1', 'erin', 'a'));
    expect(fallback).toMatchObject({ kind: 'updated', member: { status: 'online', connections: 1 } });
  });

  it.skipIf(skip)('the same session id in two tenants is two sessions', async () => {
    const { registry, conn } = setup();
    const otherTenant = `t-${unique()}`;
    await registry.join(conn('c1', 'frank'), { status: 'online' });
    const other = await registry.join({ tenantId: otherTenant, sessionId: 's1', connectionId: 'c9', userId: 'mallory' }, { status: 'online' });
    expect(other.change?.kind).toBe('joined');
    expect(other.members.map((m) => m.memberId)).toEqual(['mallory']);
    expect(await registry.leave({ tenantId: otherTenant, sessionId: 's1', connectionId: 'c1' })).toBeUndefined();
    expect((await registry.members(conn('x', 'y').tenantId, 's1')).map((m) => m.memberId)).toEqual(['frank']);
  });

  it.skipIf(skip)('rejects bad ids, unknown statuses and oversized meta before storing anything', async () => {
    const { registry, tenantId, conn } = setup();
    const bad = [
      registry.join({ ...conn('c1', 'u'), tenantId: 'a:b' }, { status: 'online' }),
      registry.join({ ...conn('c1', 'u'), sessionId: '../x' }, { status: 'online' }),
      registry.join(conn('c1', 'u', 'has space'), { status: 'online' }),
      registry.join(conn('has space', 'u'), { status: 'online' }),
      registry.join(conn('c1', 'u'), { status: 'offline' as 'online' }),
      registry.join(conn('c1', 'u'), { status: 'online', meta: { blob: 'x'.repeat(5000) } }),
    ];
    for (const attempt of bad) {
      const err = await rejection(attempt);
      expect(isAeternaError(err) && err.code).toBe('INVALID_ARGUMENT');
    }
    expect(await registry.members(tenantId, 's1')).toEqual([]);
    // socket.io ids may start with '-' or '_'.
    expect((await registry.join(conn('-xY_9', 'u'), { status: 'online' })).change?.kind).toBe('joined');
  });

  it.skipIf(skip)('a connection cannot change member by joining again as someone else', async () => {
    const { registry, conn } = setup();
    await registry.join(conn('c1', 'gina'), { status: 'online' });
    const err = await rejection(registry.join(conn('c1', 'mallory'), { status: 'online' }));
    expect(isAeternaError(err) && err.code).toBe('INVALID_ARGUMENT');
  });

  it.skipIf(skip)('joining again with the same connection replaces its state', async () => {
    const { registry, conn } = setup();
    await registry.join(conn('c1', 'hank'), { status: 'online' });
    const again = await registry.join(conn('c1', 'hank'), { status: 'away' });
    expect(again.change).toMatchObject({ kind: 'updated', member: { status: 'away', connections: 1 } });
    expect((await registry.join(conn('c1', 'hank'), { status: 'away' })).change).toBeUndefined();
  });

  it.skipIf(skip)("removeOwn removes every connection of this node and reports who left", async () => {
    const { registry, tenantId, conn } = setup();
    await registry.join(conn('c1', 'ivy', 'a'), { status: 'online' });
    await registry.join(conn('c2', 'ivy', 'a'), { status: 'online' });
    await registry.join(conn('c3', 'jon', undefined, 's2'), { status: 'busy' });
    const changes = await registry.removeOwn();
    expect(changes.map((c) => [c.kind, c.sessionId, c.member.memberId, c.member.connections]).sort()).toEqual([
      ['left', 's1', 'ivy/a', 0],
      ['left', 's2', 'jon', 0],
    ]);
    expect(await registry.members(tenantId, 's1')).toEqual([]);
    expect(await registry.members(tenantId, 's2')).toEqual([]);
    expect(await registry.removeOwn()).toEqual([]);
  });

  it.skipIf(skip)('a closed registry refuses calls instead of hanging', async () => {
    const { registry, conn } = setup();
    await registry.close();
    await registry.close();
    if (registry instanceof MemoryPresenceRegistry) return; // nothing to release, nothing to refuse
    const err = await rejection(registry.join(conn('c1', 'kim'), { status: 'online' }));
    expect(isAeternaError(err) && err.code).toBe('UNAVAILABLE');
  });
});

describe('presence payload schemas', () => {
  it('accept every documented status and default a join to online', () => {
    expect(PRESENCE_STATUSES).toEqual(expect.arrayContaining(['online', 'away', 'busy', 'thinking', 'tool-calling']));
    expect(sessionJoinSchema.parse({ sessionId: 's1' }).status).toBe('online');
    for (const status of PRESENCE_STATUSES) expect(presenceUpdateSchema.parse({ sessionId: 's1', status }).status).toBe(status);
  });

  it('refuse offline (that is what left means), unknown fields and foreign-looking session ids', () => {
    expect(presenceUpdateSchema.safeParse({ sessionId: 's1', status: 'offline' }).success).toBe(false);
    expect(presenceUpdateSchema.safeParse({ sessionId: 's1' }).success).toBe(false);
    expect(sessionJoinSchema.safeParse({ sessionId: 's1', tenantId: 'other' }).success).toBe(false);
    expect(sessionJoinSchema.safeParse({ sessionId: 't:other:session:s1' }).success).toBe(false);
  });
});

describe('presenceEnvelope', () => {
  it('wraps a change in the event envelope with no stream position', () => {
    const member = { memberId: 'u/a', userId: 'u', agentId: 'a', status: 'online' as const, connections: 1, joinedAt: 'x', updatedAt: 'x' };
    const envelope = presenceEnvelope({ kind: 'left', tenantId: 't1', sessionId: 's1', member }, 'trace-1');
    expect(envelope).toMatchObject({ seq: null, tenantId: 't1', type: 'presence.left', actor: { userId: 'u', agentId: 'a' }, data: { sessionId: 's1', member }, traceId: 'trace-1' });
    expect(envelope.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(presenceEnvelope({ kind: 'joined', tenantId: 't1', sessionId: 's1', member }).id).not.toBe(envelope.id);
  });
});
