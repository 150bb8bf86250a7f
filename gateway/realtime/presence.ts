import {
  AeternaError,
  CLIENT_EVENTS,
  presenceUpdateSchema,
  sessionJoinSchema,
  sessionLeaveSchema,
  type PresenceMember,
  type SessionJoinInput,
} from '../../src/protocol/index.js';
import {
  PRESENCE_EVENT_TYPES,
  defaultPresenceLog,
  presenceEnvelope,
  type PresenceChange,
  type PresenceConnection,
  type PresenceLog,
  type PresenceRegistry,
} from '../../src/presence/index.js';
import { Rooms, type Broadcaster, type Connection, type RealtimeExtension } from './types.js';

/** What one socket holds: the sessions it joined, and whether it is gone (a join may still be in flight). */
interface SocketPresence {
  sessions: Set<string>;
  closed: boolean;
}

export interface PresenceExtensionOptions {
  log?: PresenceLog;
}

/**
 * Sessions and presence over the socket: `session.join`, `session.leave`, `presence.update`,
 * and the `presence.joined|updated|left` events to the session's room on every node. The
 * registry decides what changed; this only maps sockets to registry calls and changes to rooms.
 *
 * Rooms are named by the caller's own tenant (from its token), so a session id of another
 * tenant names a different session: there is nothing to authorise beyond the id rule.
 */
export function createPresenceExtension(registry: PresenceRegistry, broadcaster: Broadcaster, opts: PresenceExtensionOptions = {}): RealtimeExtension {
  const log = opts.log ?? defaultPresenceLog;
  const sockets = new Map<string, SocketPresence>();
  let draining = false;

  function announce(change: PresenceChange | undefined, origin?: Connection): void {
    if (!change) return;
    broadcaster.toRooms(
      [Rooms.session(change.tenantId, change.sessionId)],
      PRESENCE_EVENT_TYPES[change.kind],
      presenceEnvelope(change, origin?.tenant.traceId ?? null),
      // The caller learns its own change from the ack.
      origin ? { exceptConnectionId: origin.id } : undefined,
    );
  }

  // Departures of dead nodes' members, and this node's connections restored after a partition.
  const unsubscribe = registry.onChange((change) => announce(change));

  function presenceOf(conn: Connection, sessionId: string): PresenceConnection {
    const { tenantId, userId, agentId } = conn.tenant;
    return agentId === undefined ? { tenantId, sessionId, connectionId: conn.id, userId } : { tenantId, sessionId, connectionId: conn.id, userId, agentId };
  }

  function assertAccepting(): void {
    if (draining) throw new AeternaError('UNAVAILABLE', 'this node is shutting down; reconnect and join again');
  }

  async function join(conn: Connection, state: SocketPresence, input: SessionJoinInput): Promise<{ members: PresenceMember[] }> {
    assertAccepting();
    const room = Rooms.session(conn.tenant.tenantId, input.sessionId);
    // Room first, then the member list: a member joining in between is in the list or reaches
    // us live (or both, which clients treat as an upsert), never neither.
    await conn.join(room);
    if (state.closed) throw new AeternaError('UNAVAILABLE', 'connection closed');
    const rejoin = state.sessions.has(input.sessionId);
    state.sessions.add(input.sessionId);
    try {
      const { status, activity, meta } = input;
      const me = presenceOf(conn, input.sessionId);
      const result = await registry.join(me, { status, activity, meta });
      announce(result.change, conn);
      // The socket went away while the join was in flight; its disconnect may have found
      // nothing to leave yet. Nothing must stay behind for a socket that no longer exists.
      if (state.closed) announce(await registry.leave(me));
      return { members: result.members };
    } catch (err) {
      if (!rejoin) {
        state.sessions.delete(input.sessionId);
        await conn.leave(room).catch(() => undefined);
      }
      throw err;
    }
  }

  async function leave(conn: Connection, state: SocketPresence, sessionId: string): Promise<{ left: boolean }> {
    if (!state.sessions.delete(sessionId)) return { left: false };
    try {
      announce(await registry.leave(presenceOf(conn, sessionId)), conn);
    } finally {
      // Even when Redis is away: the registry has forgotten the connection, so it expires and
      // another node announces it; the socket must stop receiving the session meanwhile.
      await conn.leave(Rooms.session(conn.tenant.tenantId, sessionId));
    }
    return { left: true };
  }

  return {
    name: 'presence',

    onConnection(conn) {
      const state: SocketPresence = { sessions: new Set(), closed: false };
      sockets.set(conn.id, state);
      conn.handle(CLIENT_EVENTS.sessionJoin, sessionJoinSchema, (input) => join(conn, state, input));
      conn.handle(CLIENT_EVENTS.sessionLeave, sessionLeaveSchema, ({ sessionId }) => leave(conn, state, sessionId));
      conn.handle(CLIENT_EVENTS.presenceUpdate, presenceUpdateSchema, async ({ sessionId, status, activity, meta }) => {
        assertAccepting();
        const notJoined = () => new AeternaError('INVALID_ARGUMENT', 'join the session first', { sessionId });
        if (!state.sessions.has(sessionId)) throw notJoined();
        const result = await registry.update(presenceOf(conn, sessionId), { status, activity, meta });
        if (!result) throw notJoined();
        announce(result.change, conn);
        return { member: result.member };
      });
    },

    async onDisconnect(conn) {
      const state = sockets.get(conn.id);
      if (!state) return;
      state.closed = true;
      sockets.delete(conn.id);
      const results = await Promise.allSettled([...state.sessions].map(async (sessionId) => announce(await registry.leave(presenceOf(conn, sessionId)))));
      for (const result of results) {
        // The registry has forgotten these connections either way; they expire and get announced.
        if (result.status === 'rejected') log('presence: leaving a session on disconnect failed', result.reason);
      }
    },

    async drain() {
      draining = true;
      for (const change of await registry.removeOwn()) announce(change);
    },

    async close() {
      unsubscribe();
      await registry.close();
    },
  };
}
