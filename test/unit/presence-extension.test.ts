import type { Socket } from 'socket.io';
import type { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { createPresenceExtension } from '../../gateway/realtime/presence.js';
import type { Broadcaster, Connection, RealtimeExtension } from '../../gateway/realtime/types.js';
import {
  MemoryPresenceRegistry,
  type PresenceChange,
  type PresenceConnection,
  type PresenceEnvelope,
  type PresenceJoinResult,
  type PresenceListener,
  type PresenceState,
} from '../../src/presence/index.js';
import { AeternaError, parseInput, toWireError, type Ack } from '../../src/protocol/index.js';
import type { TenantContext } from '../../src/tenancy/index.js';

/*
 * The extension's own decisions, with the socket layer faked: which room, what is announced to
 * whom, and what happens when a socket, the registry or the node goes away mid-call. The real
 * socket.io path is covered by test/integration/presence-gateway.test.ts.
 */

class FakeConnection implements Connection {
  readonly flavor = 'msgpack' as const;
  readonly socket = {} as Socket;
  readonly rooms = new Set<string>();
  private readonly handlers = new Map<string, (payload: unknown) => Promise<unknown>>();

  constructor(
    readonly id: string,
    readonly tenant: TenantContext,
  ) {}

  handle<S extends z.ZodTypeAny, R>(event: string, schema: S, fn: (input: z.infer<S>) => Promise<R>): void {
    this.handlers.set(event, (payload) => fn(parseInput(schema, payload, event)));
  }

  async join(room: string): Promise<void> {
    this.rooms.add(room);
  }

  async leave(room: string): Promise<void> {
    this.rooms.delete(room);
  }

  emit(): void {}

  /** What the client's ack callback would receive. */
  async call<T>(event: string, payload: unknown): Promise<Ack<T>> {
    const handler = this.handlers.get(event);
    if (!handler) throw new Error(`no handler for ${event}`);
    try {
      return { ok: true, data: (await handler(payload)) as T };
    } catch (err) {
      return { ok: false, error: toWireError(err) };
    }
  }
}

interface Sent {
  rooms: readonly string[];
  event: string;
  envelope: PresenceEnvelope;
  except?: string;
}

class RecordingBroadcaster implements Broadcaster {
  readonly sent: Sent[] = [];
  toRooms(rooms: readonly string[], event: string, payload: unknown, opts?: { exceptConnectionId?: string }): void {
    this.sent.push({ rooms, event, envelope: payload as PresenceEnvelope, ...(opts?.exceptConnectionId ? { except: opts.exceptConnectionId } : {}) });
  }
  brief(): string[] {
    return this.sent.map((s) => `${s.event} ${s.envelope.data.member.memberId} ${s.envelope.data.member.connections}${s.except ? ` except ${s.except}` : ''}`);
  }
}

/** The in-process registry, with hooks to hold a join, fail one, or report a discovered change. */
class ScriptedRegistry extends MemoryPresenceRegistry {
  hold: Promise<void> | undefined;
  failJoins = false;
  private listener: PresenceListener | undefined;

  override async join(conn: PresenceConnection, state: PresenceState): Promise<PresenceJoinResult> {
    if (this.failJoins) throw new AeternaError('UNAVAILABLE', 'presence is unavailable');
    await this.hold;
    return super.join(conn, state);
  }

  override onChange(listener: PresenceListener): () => void {
    this.listener = listener;
    return () => (this.listener = undefined);
  }

  discover(change: PresenceChange): void {
    this.listener?.(change);
  }
}

function setup() {
  const registry = new ScriptedRegistry();
  const broadcaster = new RecordingBroadcaster();
  const extension: RealtimeExtension = createPresenceExtension(registry, broadcaster, { log: () => undefined });
  let n = 0;
  const connect = (userId: string, agentId?: string, tenantId = 'acme') => {
    const tenant: TenantContext = agentId === undefined ? { tenantId, userId, roles: ['developer'] } : { tenantId, userId, agentId, roles: ['developer'] };
    const conn = new FakeConnection(`-sock${++n}`, tenant);
    extension.onConnection(conn);
    return conn;
  };
  return { registry, broadcaster, extension, connect };
}

describe('presence extension', () => {
  it("joins the caller's own tenant's session room and tells everyone else", async () => {
    const { broadcaster, connect } = setup();
    const ada = connect('ada', 'a1');
    const ack = await ada.call<{ members: { memberId: string }[] }>('session.join', { sessionId: 's1', status: 'busy' });
    expect(ack).toMatchObject({ ok: true, data: { members: [{ memberId: 'ada/a1', status: 'busy' }] } });
    expect([...ada.rooms]).toEqual(['t:acme:session:s1']);
    expect(broadcaster.sent).toHaveLength(1);
    expect(broadcaster.sent[0]).toMatchObject({
      rooms: ['t:acme:session:s1'],
      event: 'presence.joined',
      except: ada.id,
      envelope: { seq: null, tenantId: 'acme', type: 'presence.joined', actor: { userId: 'ada', agentId: 'a1' }, data: { sessionId: 's1' } },
    });
  });

  it('leaves every joined session on disconnect, announcing each', async () => {
    const { broadcaster, extension, connect } = setup();
    const ada = connect('ada');
    await ada.call('session.join', { sessionId: 's1' });
    await ada.call('session.join', { sessionId: 's2' });
    await extension.onDisconnect?.(ada, 'transport close');
    expect(broadcaster.brief().slice(2).sort()).toEqual(['presence.left ada 0', 'presence.left ada 0']);
    expect(broadcaster.sent.slice(2).map((s) => s.rooms[0]).sort()).toEqual(['t:acme:session:s1', 't:acme:session:s2']);
  });

  it('leaves nothing behind for a socket that disconnects while its join is in flight', async () => {
    const { registry, broadcaster, extension, connect } = setup();
    let release = () => {};
    registry.hold = new Promise<void>((resolve) => (release = resolve));
    const ada = connect('ada');
    const joining = ada.call('session.join', { sessionId: 's1' });
    await new Promise((r) => setTimeout(r, 10));
    await extension.onDisconnect?.(ada, 'transport close');
    release();
    await joining;
    expect(await registry.members('acme', 's1')).toEqual([]);
    expect(broadcaster.brief()).toEqual([`presence.joined ada 1 except ${ada.id}`, 'presence.left ada 0']);
  });

  it('keeps a socket out of the room when the registry refuses the join', async () => {
    const { registry, connect } = setup();
    registry.failJoins = true;
    const ada = connect('ada');
    expect(await ada.call('session.join', { sessionId: 's1' })).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE' } });
    expect(ada.rooms.size).toBe(0);
    expect(await ada.call('presence.update', { sessionId: 's1', status: 'away' })).toMatchObject({
      ok: false,
      error: { code: 'INVALID_ARGUMENT', message: 'join the session first' },
    });
  });

  it('announces an update to the others and acks the member to the caller', async () => {
    const { broadcaster, connect } = setup();
    const ada = connect('ada');
    await ada.call('session.join', { sessionId: 's1' });
    expect(await ada.call('presence.update', { sessionId: 's1', status: 'thinking', activity: 'planning' })).toMatchObject({
      ok: true,
      data: { member: { memberId: 'ada', status: 'thinking', activity: 'planning' } },
    });
    // The same status again is not news.
    await ada.call('presence.update', { sessionId: 's1', status: 'thinking', activity: 'planning' });
    expect(broadcaster.brief()).toEqual([`presence.joined ada 1 except ${ada.id}`, `presence.updated ada 1 except ${ada.id}`]);
  });

  it('broadcasts the changes the registry discovers (a dead node’s members) to their session', () => {
    const { registry, broadcaster } = setup();
    const member = { memberId: 'bob', userId: 'bob', status: 'online' as const, connections: 0, joinedAt: 'x', updatedAt: 'y' };
    registry.discover({ kind: 'left', tenantId: 'acme', sessionId: 's9', member });
    expect(broadcaster.sent).toEqual([
      expect.objectContaining({ rooms: ['t:acme:session:s9'], event: 'presence.left', envelope: expect.objectContaining({ traceId: null, actor: { userId: 'bob' } }) }),
    ]);
  });

  it("on drain announces this node's members as left at once and refuses new joins", async () => {
    const { registry, broadcaster, extension, connect } = setup();
    const ada = connect('ada');
    await ada.call('session.join', { sessionId: 's1' });
    await extension.drain?.();
    expect(broadcaster.brief()).toEqual([`presence.joined ada 1 except ${ada.id}`, 'presence.left ada 0']);
    expect(await registry.members('acme', 's1')).toEqual([]);
    expect(await connect('bob').call('session.join', { sessionId: 's1' })).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE' } });
    // The disconnect that follows a drain has nothing left to announce.
    await extension.onDisconnect?.(ada, 'server shutting down');
    expect(broadcaster.sent).toHaveLength(2);
  });

  it('leaving a session it is not in is a no-op, not an error', async () => {
    const { broadcaster, connect } = setup();
    expect(await connect('ada').call('session.leave', { sessionId: 's1' })).toEqual({ ok: true, data: { left: false } });
    expect(broadcaster.sent).toEqual([]);
  });
});
