import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import { pack, unpack } from 'msgpackr';
import { Server, type Socket } from 'socket.io';
import type uWS from 'uWebSockets.js';
import type { RealtimeConfig } from '../../src/config.js';
import type { Logger } from '../../src/obs/index.js';
import {
  AeternaError,
  CLOSE_REASONS,
  SERVER_EVENTS,
  SOCKET_PATHS,
  msgpackParser,
  toWireError,
  type CloseReason,
} from '../../src/protocol/index.js';
import type { TenantContext, TokenVerifier } from '../../src/tenancy/index.js';
import { InflightCounter, SocketConnection, endpointRoom } from './connection.js';
import type { Broadcaster, Flavor, RealtimeExtension } from './types.js';

const SWEEP_MS = 250;
const SLOW_STRIKES = 3;

export interface RealtimeOptions {
  app: uWS.TemplatedApp;
  tokens: TokenVerifier;
  config: RealtimeConfig;
  log: Logger;
  /** Cluster mode: the adapter's publish and subscribe connections. */
  redis?: { pub: Redis; sub: Redis };
}

export interface Realtime {
  readonly broadcaster: Broadcaster;
  /** Adds a capability; call before the app listens. */
  use(extension: RealtimeExtension): void;
  connectionCount(): number;
  /** Asks every client of this node to re-check its stream position against the event log. */
  checkStreams(reason: string): void;
  /** Tells every client to reconnect elsewhere, lets extensions release, waits for acks, closes. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

interface SocketData {
  tenant: TenantContext;
  expiresAt: number | undefined;
}

function handshakeToken(socket: Socket): string | undefined {
  const auth = socket.handshake.auth as Record<string, unknown> | undefined;
  if (typeof auth?.['token'] === 'string') return auth['token'];
  const header = socket.handshake.headers['authorization'];
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (match?.[1]) return match[1];
  // Some clients (python-socketio's auth aside) can only put it in the query string.
  const query = socket.handshake.query['token'];
  return typeof query === 'string' ? query : undefined;
}

/** socket.io reports a middleware error's `message` and `data` to the client as connect_error. */
function connectError(err: unknown): Error {
  const wire = toWireError(err);
  return Object.assign(new Error(wire.message), { data: wire });
}

/**
 * Two socket.io servers on the uWS app: msgpack at /socket.io and socket.io's JSON at
 * /socket.io-json, fed by the same broadcaster, so every client language gets the same events.
 *
 * Why the JSON endpoint's rooms carry a suffix: socket.io's uWS integration publishes a room's
 * broadcast to the uWS topic `{namespace}\x1f{room}` for every socket subscribed to it. Both
 * servers share the app's topic space, so without distinct names a msgpack frame would be
 * published to JSON sockets in the same room and vice versa.
 */
export function createRealtime(opts: RealtimeOptions): Realtime {
  const { config, log } = opts;
  const extensions: RealtimeExtension[] = [];
  const inflight = new InflightCounter();
  const perTenant = new Map<string, number>();
  const connections = new Map<string, { conn: SocketConnection; expiry?: NodeJS.Timeout }>();
  let draining = false;

  const servers = (['msgpack', 'json'] as const).map((flavor) => {
    const io = new Server({
      path: SOCKET_PATHS[flavor],
      ...(flavor === 'msgpack' ? { parser: msgpackParser } : {}),
      serveClient: false,
      maxHttpBufferSize: config.maxMessageBytes,
      pingInterval: config.pingIntervalMs,
      pingTimeout: config.pingTimeoutMs,
      transports: ['polling', 'websocket'],
      cors: { origin: true, credentials: true },
    });
    if (opts.redis) {
      const key = `aeterna#${flavor}`;
      io.adapter(
        config.redisSharded
          ? createShardedAdapter(opts.redis.pub, opts.redis.sub, { channelPrefix: key })
          : createAdapter(opts.redis.pub, opts.redis.sub, { key, parser: { encode: pack, decode: unpack } }),
      );
    }
    // uWS skips a subscriber past maxBackpressure silently; set it above our own limit so the
    // backpressure sweep below always closes a slow consumer first.
    io.attachApp(opts.app, { maxBackpressure: config.maxBufferedBytes * 4, idleTimeout: 0 } as Record<string, unknown>);
    io.use((socket, next) => void authenticate(socket, next));
    io.on('connection', (socket) => onConnection(socket, flavor));
    return { flavor, io };
  });

  async function authenticate(socket: Socket, next: (err?: Error) => void): Promise<void> {
    try {
      if (draining) throw new AeternaError('UNAVAILABLE', 'this node is shutting down; reconnect');
      const token = handshakeToken(socket);
      if (!token) throw new AeternaError('UNAUTHENTICATED', 'missing token: pass auth.token in the handshake');
      const { context, expiresAt } = await opts.tokens.verifyWithExpiry(token);
      const count = perTenant.get(context.tenantId) ?? 0;
      if (count >= config.tenantMaxConnections) {
        throw new AeternaError('RATE_LIMITED', `tenant connection limit (${config.tenantMaxConnections} per node) reached`, {
          reason: CLOSE_REASONS.tenantConnectionLimit.code,
        });
      }
      (socket.data as SocketData) = { tenant: context, expiresAt };
      next();
    } catch (err) {
      next(connectError(err));
    }
  }

  function onConnection(socket: Socket, flavor: Flavor): void {
    const { tenant, expiresAt } = socket.data as SocketData;
    perTenant.set(tenant.tenantId, (perTenant.get(tenant.tenantId) ?? 0) + 1);
    const conn = new SocketConnection(socket, tenant, flavor, config.rateLimit, inflight, log);
    const entry: { conn: SocketConnection; expiry?: NodeJS.Timeout } = { conn };
    if (expiresAt !== undefined) {
      // setTimeout's limit is ~24.8 days; a longer-lived token is re-checked when the timer fires.
      entry.expiry = setTimeout(() => closeWith(socket, CLOSE_REASONS.tokenExpired), Math.min(Math.max(0, expiresAt - Date.now()), 2 ** 31 - 1));
    }
    connections.set(socket.id, entry);
    for (const ext of extensions) ext.onConnection(conn);
    socket.on('disconnect', (reason) => {
      if (entry.expiry) clearTimeout(entry.expiry);
      connections.delete(socket.id);
      const left = (perTenant.get(tenant.tenantId) ?? 1) - 1;
      if (left <= 0) perTenant.delete(tenant.tenantId);
      else perTenant.set(tenant.tenantId, left);
      for (const ext of extensions) {
        Promise.resolve(ext.onDisconnect?.(conn, reason)).catch((err: unknown) => log.error({ err, extension: ext.name }, 'onDisconnect failed'));
      }
    });
  }

  /** Says why before closing, so the client knows whether to come back. */
  function closeWith(socket: Socket, reason: CloseReason): void {
    socket.emit(SERVER_EVENTS.serverClose, reason);
    socket.disconnect(true);
  }

  // A socket whose unsent backlog stays over the limit would hold memory without bound: close it.
  // One large message can sit in the buffer for a moment even on a fast link, so only a backlog
  // seen on SLOW_STRIKES consecutive sweeps counts.
  const strikes = new Map<string, number>();
  const sweep = setInterval(() => {
    for (const { conn } of connections.values()) {
      if (bufferedBytes(conn.socket) <= config.maxBufferedBytes) {
        strikes.delete(conn.id);
        continue;
      }
      const count = (strikes.get(conn.id) ?? 0) + 1;
      strikes.set(conn.id, count);
      if (count >= SLOW_STRIKES) {
        strikes.delete(conn.id);
        log.warn({ connection: conn.id, tenant: conn.tenant.tenantId }, 'closing slow consumer');
        closeWith(conn.socket, CLOSE_REASONS.slowConsumer);
      }
    }
  }, SWEEP_MS);
  sweep.unref();

  /**
   * Per socket, not io.emit(): a namespace-wide broadcast is published to the uWS topic of the
   * namespace, which the other endpoint's sockets share, and they would get a frame they cannot parse.
   */
  function emitToEveryLocalSocket(event: string, payload: unknown): void {
    for (const { conn } of connections.values()) conn.emit(event, payload);
  }

  const broadcaster: Broadcaster = {
    toRooms(rooms, event, payload, options) {
      for (const { flavor, io } of servers) {
        let target = io.to(rooms.map((r) => endpointRoom(r, flavor)));
        if (options?.exceptConnectionId) target = target.except(options.exceptConnectionId);
        target.emit(event, payload);
      }
    },
  };

  return {
    broadcaster,
    use(extension) {
      extensions.push(extension);
    },
    connectionCount: () => connections.size,
    checkStreams(reason) {
      emitToEveryLocalSocket(SERVER_EVENTS.streamCheck, { reason });
    },
    async drain() {
      draining = true;
      emitToEveryLocalSocket(SERVER_EVENTS.serverShutdown, { ...CLOSE_REASONS.serverShutdown });
      await Promise.allSettled(extensions.map((ext) => ext.drain?.()));
      await inflight.settle(config.drainMs);
      for (const { io } of servers) io.local.disconnectSockets(true);
    },
    async close() {
      clearInterval(sweep);
      for (const { expiry } of connections.values()) if (expiry) clearTimeout(expiry);
      await Promise.allSettled(extensions.map((ext) => ext.close?.()));
      await Promise.allSettled(servers.map(({ io }) => new Promise<void>((resolve) => void io.close(() => resolve()))));
    },
  };
}

/** Bytes queued for a socket and not yet sent, for both transports. */
function bufferedBytes(socket: Socket): number {
  const transport = socket.conn.transport as unknown as { name: string; socket?: { getBufferedAmount?: () => number } };
  if (transport.name === 'websocket') return transport.socket?.getBufferedAmount?.() ?? 0;
  // Long-polling keeps packets in engine.io's writeBuffer until the next poll.
  const writeBuffer = (socket.conn as unknown as { writeBuffer?: { data?: unknown }[] }).writeBuffer ?? [];
  let total = 0;
  for (const packet of writeBuffer) {
    const data = packet.data;
    total += typeof data === 'string' ? data.length : data instanceof Uint8Array ? data.byteLength : 64;
  }
  return total;
}
