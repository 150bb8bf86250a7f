import type { Socket } from 'socket.io';
import type { z } from 'zod';
import type { TenantContext } from '../../src/tenancy/index.js';

/** Which socket.io endpoint a connection came through; each has its own encoding. */
export type Flavor = 'msgpack' | 'json';

/**
 * One authenticated socket, as extensions see it. Room names are the logical ones of
 * ARCHITECTURE.md (`t:{tenant}:…`); the connection maps them to its endpoint's own rooms.
 */
export interface Connection {
  readonly id: string;
  readonly tenant: TenantContext;
  readonly flavor: Flavor;
  readonly socket: Socket;
  /**
   * Registers a client event: the payload is validated with `schema`, the call is rate limited,
   * `fn`'s result is acked as `{ok: true, data}` and anything it throws as `{ok: false, error}`.
   * A client that sends no ack callback still gets its errors: they are emitted as `error`.
   */
  handle<S extends z.ZodTypeAny, R>(event: string, schema: S, fn: (input: z.infer<S>) => Promise<R>): void;
  join(room: string): Promise<void>;
  leave(room: string): Promise<void>;
  /** Sends to this connection only. */
  emit(event: string, payload: unknown): void;
}

/** Sends to logical rooms on every node and both endpoints. */
export interface Broadcaster {
  toRooms(rooms: readonly string[], event: string, payload: unknown, opts?: { exceptConnectionId?: string }): void;
}

/**
 * A capability added around the realtime core (Hocuspocus-style): presence, memory streams and
 * documents are each one extension with its own handlers and lifecycle.
 */
export interface RealtimeExtension {
  readonly name: string;
  onConnection(conn: Connection): void;
  onDisconnect?(conn: Connection, reason: string): Promise<void> | void;
  /** Called on SIGTERM before sockets close: release what this node holds. */
  drain?(): Promise<void>;
  close?(): Promise<void>;
}

/** Logical room names. Every one starts with the tenant. */
export const Rooms = {
  session: (tenantId: string, sessionId: string) => `t:${tenantId}:session:${sessionId}`,
  layer: (tenantId: string, layer: string, scopeId: string) => `t:${tenantId}:layer:${layer}:${scopeId}`,
  /** Every scope of a layer. `*` cannot occur in ids, so it never collides with a scope. */
  layerAll: (tenantId: string, layer: string) => `t:${tenantId}:layer:${layer}:*`,
  doc: (tenantId: string, docId: string) => `t:${tenantId}:doc:${docId}`,
  /** Tenant-wide streams that belong to no scope: worker results (`graph`) and job failures (`jobs`). */
  topic: (tenantId: string, topic: string) => `t:${tenantId}:topic:${topic}`,
};
