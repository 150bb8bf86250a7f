import { z } from 'zod';
import type { Core } from '../../src/core.js';
import { EventLog, type EventSink } from '../../src/events/index.js';
import { resolveReadScopes } from '../../src/memory/index.js';
import {
  AeternaError,
  CLIENT_EVENTS,
  LAYERS,
  SERVER_EVENTS,
  TOPICS,
  scopeOfEventData,
  subscribeSchema,
  type EventEnvelope,
  type Layer,
  type ResyncRequired,
  type SubscribeInput,
  type SubscribeResult,
  type Topic,
} from '../../src/protocol/index.js';
import { hasPermission, isValidId, requirePermission, type Permission, type TenantContext } from '../../src/tenancy/index.js';
import { Rooms, type Broadcaster, type Connection, type RealtimeExtension } from './types.js';

/** Tenant-wide event types and the topic room each goes to. */
const TOPIC_OF_EVENT: Readonly<Record<string, Topic>> = {
  'graph.changed': 'graph',
  'job.failed': 'jobs',
  'budget.warning': 'budget',
  'budget.exceeded': 'budget',
  'meta.started': 'meta',
  'meta.iteration': 'meta',
  'meta.test': 'meta',
  'meta.finished': 'meta',
};

/** Reading a topic needs what reading its source needs: jobs are an admin's concern. */
const TOPIC_PERMISSION: Readonly<Record<Topic, Permission>> = { graph: 'memory:read', jobs: 'jobs:manage', budget: 'budget:manage', meta: 'memory:read' };

/**
 * The rooms an event is delivered to: a topic's room for tenant-wide events, else the memory's
 * exact scope and its layer's catch-all.
 */
export function roomsOfEvent(event: EventEnvelope): string[] {
  const topic = TOPIC_OF_EVENT[event.type];
  if (topic !== undefined) return [Rooms.topic(event.tenantId, topic)];
  const scope = scopeOfEventData(event.data);
  if (scope?.scopeId === undefined) return [];
  return [Rooms.layer(event.tenantId, scope.layer, scope.scopeId), Rooms.layerAll(event.tenantId, scope.layer)];
}

const ROOM_PATTERN = /^t:([^:]+):(layer|session|doc|topic):(.+)$/;

/**
 * Checks a client-named room: it must be one of the documented shapes, of the caller's own tenant,
 * and readable under its roles. Anything else is FORBIDDEN, whatever it was crafted to look like.
 */
export function authorizeRoom(ctx: TenantContext, room: string): string {
  const forbidden = () => new AeternaError('FORBIDDEN', `room ${JSON.stringify(room.slice(0, 200))} is not available`, { room: room.slice(0, 200) });
  const match = ROOM_PATTERN.exec(room);
  if (!match || match[1] !== ctx.tenantId) throw forbidden();
  const [, , kind, rest = ''] = match;
  if (kind === 'topic') {
    const topic = TOPICS.find((t) => t === rest);
    if (topic === undefined || !hasPermission(ctx, TOPIC_PERMISSION[topic])) throw forbidden();
    return room;
  }
  if (kind === 'session' || kind === 'doc') {
    if (!isValidId(rest)) throw forbidden();
    return room;
  }
  const sep = rest.indexOf(':');
  const layer = rest.slice(0, sep) as Layer;
  const scope = rest.slice(sep + 1);
  if (sep < 0 || !LAYERS.includes(layer) || !(scope === '*' || isValidId(scope))) throw forbidden();
  // The same rules as a layer subscription: the user layer narrows to the caller's own.
  const [allowed] = resolveReadScopes(ctx, [layer], scope === '*' ? {} : { [`${layer}Id`]: scope });
  const permitted = allowed && (allowed.scopeId === undefined ? scope === '*' : allowed.scopeId === scope);
  if (!permitted) throw forbidden();
  return room;
}

const idPayload = z.object({ id: z.string() }).passthrough();

interface StreamOptions {
  core: Core;
  broadcaster: Broadcaster;
  replayWindow: number;
}

/**
 * Memory over the socket: the memory.* operations with acks (same validation and errors as REST,
 * because both call MemoryService), subscriptions with gap-free resume, and the relay's sink that
 * turns committed events into room broadcasts.
 */
export function createMemoryStreamExtension(opts: StreamOptions): RealtimeExtension & { sink: EventSink } {
  const { core, broadcaster } = opts;
  const memory = core.memory;
  const subscriptions = new Map<string, Set<string>>();

  // One emit per room: socket.io's uWS integration publishes a single-room broadcast as one uWS
  // topic publish (in C++), but walks every socket in JS for a multi-room one. A connection is
  // never in two rooms that one event goes to (see `subscribe`), so this sends no duplicates.
  const sink: EventSink = {
    deliver(_tenantId, events) {
      for (const event of events) {
        for (const room of roomsOfEvent(event)) broadcaster.toRooms([room], event.type, event);
      }
    },
  };

  async function subscribe(conn: Connection, input: SubscribeInput): Promise<SubscribeResult> {
    const ctx = conn.tenant;
    requirePermission(ctx, 'memory:read');
    const rooms = new Set<string>();
    if (input.layers) {
      for (const s of resolveReadScopes(ctx, input.layers, input.scopes ?? {})) {
        rooms.add(s.scopeId === undefined ? Rooms.layerAll(ctx.tenantId, s.layer) : Rooms.layer(ctx.tenantId, s.layer, s.scopeId));
      }
    }
    for (const topic of input.topics ?? []) rooms.add(authorizeRoom(ctx, Rooms.topic(ctx.tenantId, topic)));
    for (const room of input.rooms ?? []) rooms.add(authorizeRoom(ctx, room));
    const mine = subscriptions.get(conn.id) ?? new Set<string>();
    for (const room of rooms) mine.add(room);
    // A layer's catch-all room already receives every scope's events: drop the scope rooms it
    // covers, so no event reaches this connection twice.
    for (const room of [...mine]) {
      if (!room.endsWith(':*') && mine.has(room.slice(0, room.lastIndexOf(':')) + ':*')) {
        mine.delete(room);
        await conn.leave(room);
      }
    }
    subscriptions.set(conn.id, mine);
    // Join before reading the log: an event committed after the read reaches us live, one
    // committed before it is in the replay, so nothing falls between the two.
    for (const room of mine) await conn.join(room);
    return replay(conn, [...rooms].filter((r) => mine.has(r)), mine, input);
  }

  async function replay(conn: Connection, rooms: string[], mine: Set<string>, input: SubscribeInput): Promise<SubscribeResult> {
    const tenantId = conn.tenant.tenantId;
    const head = await core.db.withTenant(tenantId, (sql) => EventLog.head(sql, tenantId));
    if (input.since === undefined) return { rooms, head: head.seq, epoch: head.epoch, recovered: true, events: [] };
    const resync = (reason: ResyncRequired['reason']): SubscribeResult => {
      const notice: ResyncRequired = { reason, epoch: head.epoch, head: head.seq, reload: ['memories'] };
      conn.emit(SERVER_EVENTS.resyncRequired, notice);
      return { rooms, head: head.seq, epoch: head.epoch, recovered: false, events: [] };
    };
    if (input.epoch !== undefined && head.epoch !== null && input.epoch !== head.epoch) return resync('epoch_changed');
    if (input.since > head.seq) return resync('epoch_changed');
    if (head.seq - input.since > opts.replayWindow) return resync('gap_too_large');
    const events: EventEnvelope[] = [];
    let since = input.since;
    while (since < head.seq) {
      const from = since;
      const page = await core.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, from, 1000));
      if (page.events.length === 0) break;
      for (const e of page.events) {
        if (e.seq > head.seq) break;
        if (roomsOfEvent(e).some((r) => mine.has(r))) events.push(e);
      }
      since = (page.events[page.events.length - 1] as EventEnvelope).seq;
    }
    return { rooms, head: head.seq, epoch: head.epoch, recovered: true, events };
  }

  return {
    name: 'memory-stream',
    sink,
    onConnection(conn) {
      const ctx = conn.tenant;
      conn.handle(CLIENT_EVENTS.subscribe, subscribeSchema, (input) => subscribe(conn, input));
      conn.handle(CLIENT_EVENTS.unsubscribe, z.object({ rooms: z.array(z.string()).max(100).optional() }).strict(), async (input) => {
        const mine = subscriptions.get(conn.id) ?? new Set<string>();
        const leaving = input.rooms ?? [...mine];
        for (const room of leaving) {
          if (!mine.delete(room)) continue;
          await conn.leave(room);
        }
        return { rooms: [...mine] };
      });
      conn.handle(CLIENT_EVENTS.eventsRead, z.unknown(), (input) => memory.events(ctx, input));
      conn.handle(CLIENT_EVENTS.memoryAdd, z.unknown(), (input) => memory.add(ctx, input));
      conn.handle(CLIENT_EVENTS.memoryGet, idPayload, async ({ id }) => ({ memory: await memory.get(ctx, id) }));
      conn.handle(CLIENT_EVENTS.memoryList, z.unknown(), (input) => memory.list(ctx, input));
      conn.handle(CLIENT_EVENTS.memorySearch, z.unknown(), (input) => core.search.search(ctx, input));
      conn.handle(CLIENT_EVENTS.memoryUpdate, idPayload, async ({ id, ...patch }) => ({ memory: await memory.update(ctx, id, patch) }));
      conn.handle(CLIENT_EVENTS.memoryDelete, idPayload, ({ id }) => memory.delete(ctx, id));
      conn.handle(CLIENT_EVENTS.memoryFeedback, idPayload, async ({ id, ...feedback }) => ({ memory: await memory.feedback(ctx, id, feedback) }));
    },
    onDisconnect(conn) {
      subscriptions.delete(conn.id);
    },
  };
}
