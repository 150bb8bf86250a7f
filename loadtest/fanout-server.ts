/**
 * A fan-out benchmark server (started by loadtest/fanout.ts over IPC; not a test). One of:
 *
 * - `uws`:  plain socket.io 4.8 with the project's msgpack parser, attached to a bare uWS app
 *           (`io.attachApp`) with the gateway's uWS options;
 * - `node`: the same socket.io server attached to `http.createServer()`: the baseline;
 * - `gateway`: the real gateway (`createGateway`), configured by the AETERNA_* environment.
 *
 * `uws` and `node` join every socket to the benchmark room on connection and hold no database:
 * they measure transport fan-out and nothing else. All three can broadcast synthetic envelopes at
 * a given rate (`emit`): the gateway through its own broadcaster, i.e. its broadcast path without
 * the database and the relay.
 */
import http from 'node:http';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { Server } from 'socket.io';
import uWS from 'uWebSockets.js';
import { createGateway, type Gateway } from '../gateway/app.js';
import { createMemoryStreamExtension } from '../gateway/realtime/memory-stream.js';
import { loadConfig } from '../src/config.js';
import { openCore, type Core } from '../src/core.js';
import { createLogger } from '../src/obs/index.js';
import { SOCKET_PATHS, msgpackParser } from '../src/protocol/index.js';
import { prng } from './corpus.js';
import {
  BENCH_EVENT,
  BENCH_ROOM,
  BENCH_ROOMS_AS_RELAYED,
  benchContent,
  paced,
  serveParent,
  syntheticEnvelope,
  type EmitRequest,
  type ServerKind,
  type ServerOps,
  type ServerReady,
} from './fanout-shared.js';
import { intSetting } from './settings.js';

interface Served {
  port: number;
  connections(): number;
  /** Sends one envelope to the benchmark's subscribers the way this server would. */
  broadcast(rooms: EmitRequest['rooms'], envelope: ReturnType<typeof syntheticEnvelope>): void;
  close(): Promise<void>;
  detail: Record<string, string>;
}

const require = createRequire(import.meta.url);
const versionOf = (pkg: string): string => (require(`${pkg}/package.json`) as { version: string }).version;

/**
 * socket.io as the gateway configures it (server.ts), minus auth and the JSON endpoint: same
 * parser, path, limits and heartbeats, taken from the gateway's own config defaults.
 */
function plainSocketIo(): Server {
  const realtime = loadConfig({}).realtime;
  const io = new Server({
    path: SOCKET_PATHS.msgpack,
    parser: msgpackParser,
    serveClient: false,
    maxHttpBufferSize: realtime.maxMessageBytes,
    pingInterval: realtime.pingIntervalMs,
    pingTimeout: realtime.pingTimeoutMs,
    transports: ['polling', 'websocket'],
  });
  io.on('connection', (socket) => void socket.join(BENCH_ROOM));
  return io;
}

function broadcastTo(io: Server, rooms: EmitRequest['rooms'], envelope: ReturnType<typeof syntheticEnvelope>): void {
  if (rooms === 'together') io.to([...BENCH_ROOMS_AS_RELAYED]).emit(BENCH_EVENT, envelope);
  else for (const room of BENCH_ROOMS_AS_RELAYED) io.to(room).emit(BENCH_EVENT, envelope);
}

async function serveUws(): Promise<Served> {
  // The package swaps in a slow JS fallback when the native addon fails to load; numbers from it
  // would be meaningless (the gateway refuses it for the same reason).
  if (typeof (uWS as unknown as Record<string, unknown>)['SSLApp'] !== 'function') throw new Error('uWebSockets.js native addon did not load');
  const io = plainSocketIo();
  const app = uWS.App();
  const gatewayDefaults = loadConfig({}).realtime;
  // The gateway's options (server.ts): without the same maxBackpressure, uWS would skip slow
  // receivers at a different point and the two would not compare.
  io.attachApp(app, { maxBackpressure: gatewayDefaults.maxBufferedBytes * 4, idleTimeout: 0 } as Record<string, unknown>);
  const port = await new Promise<number>((resolve, reject) => {
    app.listen('127.0.0.1', 0, (socket) => (socket ? resolve(uWS.us_socket_local_port(socket)) : reject(new Error('uWS could not listen'))));
  });
  return {
    port,
    connections: () => io.engine.clientsCount,
    broadcast: (rooms, envelope) => broadcastTo(io, rooms, envelope),
    async close() {
      io.local.disconnectSockets(true);
      // close() exists in this uWS build but is missing from its typings (as in gateway/app.ts).
      (app as unknown as { close(): void }).close();
    },
    detail: { transport: 'uWebSockets.js', uws: versionOf('uWebSockets.js') },
  };
}

async function serveNode(): Promise<Served> {
  const io = plainSocketIo();
  const server = http.createServer();
  io.attach(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
  return {
    port,
    connections: () => io.engine.clientsCount,
    broadcast: (rooms, envelope) => broadcastTo(io, rooms, envelope),
    async close() {
      io.local.disconnectSockets(true);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    detail: { transport: 'node:http + ws', ws: versionOf('ws') },
  };
}

async function serveGateway(): Promise<Served> {
  const config = loadConfig(process.env);
  // stdout is piped to the driver's stderr with a prefix; keep it to warnings.
  const log = createLogger(config.logLevel);
  const core: Core = await openCore(config, log);
  const gateway: Gateway = createGateway(core, log);
  const port = await gateway.listen('127.0.0.1', 0);
  // The relay's sink, built the way createGateway builds it on the gateway's own broadcaster (a
  // second instance, never registered as an extension: only deliver() is used), so a synthetic
  // event takes exactly the path a committed one takes once the relay has read it from the log.
  const { sink } = createMemoryStreamExtension({ core, broadcaster: gateway.realtime.broadcaster, replayWindow: config.realtime.replayWindow });
  return {
    port,
    connections: () => gateway.realtime.connectionCount(),
    broadcast: (_rooms, envelope) => sink.deliver(envelope.tenantId, [envelope]),
    async close() {
      await gateway.close(1000);
      await core.close();
    },
    detail: {
      transport: 'aeterna gateway (uWS)',
      database: config.database.kind,
      adapter: config.redisUrl ? 'redis' : 'in-memory',
      nodeId: config.realtime.nodeId,
    },
  };
}

async function main(): Promise<void> {
  const kind = process.argv[2] as ServerKind | undefined;
  if (kind !== 'uws' && kind !== 'node' && kind !== 'gateway') throw new Error(`usage: fanout-server.ts uws|node|gateway (got ${String(kind)})`);
  const maxSeconds = intSetting('FANOUT_SERVER_MAX_SECONDS', process.env['FANOUT_SERVER_MAX_SECONDS'], 1800);
  // Outlives a driver that died without killing us: never an orphan holding ports and sockets.
  setTimeout(() => {
    process.stderr.write(`fanout-server: ${maxSeconds}s lifetime exceeded, exiting\n`);
    process.exit(3);
  }, maxSeconds * 1000).unref();

  const served = kind === 'uws' ? await serveUws() : kind === 'node' ? await serveNode() : await serveGateway();
  const random = prng(process.pid);
  let seq = 0;

  const { notify } = serveParent<ServerOps>({
    async stats({ gc }) {
      if (gc) {
        if (!globalThis.gc) throw new Error('start the server with --expose-gc');
        // Twice: the first pass finalises what the second frees.
        globalThis.gc();
        globalThis.gc();
      }
      const memory = process.memoryUsage();
      const cpu = process.cpuUsage();
      const loop = performance.eventLoopUtilization();
      return {
        pid: process.pid,
        connections: served.connections(),
        rss: memory.rss,
        heapUsed: memory.heapUsed,
        cpuUs: cpu.user + cpu.system,
        loopIdleMs: loop.idle,
        loopActiveMs: loop.active,
      };
    },
    emit({ round, rate, seconds, rooms }) {
      // Content made ahead of time: building text is the writer's cost, not the broadcast's.
      const contents = Array.from({ length: Math.max(1, Math.round(rate * seconds)) }, (_, i) => benchContent(random, round, i));
      return paced(rate, seconds, (i, due) => {
        seq += 1;
        served.broadcast(rooms, syntheticEnvelope(seq, round, i, due, contents[i] ?? ''));
      });
    },
  });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), 5000).unref();
    await served.close().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  const ready: ServerReady = {
    kind,
    port: served.port,
    pid: process.pid,
    detail: { ...served.detail, node: process.versions.node, socketIo: versionOf('socket.io') },
  };
  notify('ready', ready);
}

main().catch((err: unknown) => {
  process.stderr.write(`fanout-server failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
