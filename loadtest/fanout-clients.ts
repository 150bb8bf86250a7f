/**
 * A subscriber worker of the fan-out benchmark (started by loadtest/fanout.ts over IPC; not a
 * test). It holds its share of the subscribers as raw socket.io-client sockets (msgpack parser,
 * WebSocket only: far lighter per socket than AeternaClient) and, per round and label, counts
 * what arrives and how long after its `at` stamp.
 *
 * Subscribers live outside the server processes so their CPU is not billed to the server; on a
 * small machine they still compete with it for cores (the report says so).
 */
import { io as connect, type Socket } from 'socket.io-client';
import { SOCKET_PATHS, msgpackParser, type Ack, type SubscribeResult } from '../src/protocol/index.js';
import {
  BENCH_EVENT,
  LatencyHistogram,
  roundOf,
  serveParent,
  type ClientOps,
  type ConnectProgress,
  type ConnectRequest,
  type RoundSample,
} from './fanout-shared.js';

const CONNECT_TIMEOUT_MS = 60_000;

interface Tally {
  received: number;
  first: number;
  last: number;
  latency: LatencyHistogram;
}

const sockets = new Map<string, Socket[]>();
const disconnects = new Map<string, Map<string, number>>();
/** round → label → tally. */
const rounds = new Map<number, Map<string, Tally>>();
const collected = new Set<number>();
let stray = 0;

function record(label: string, envelope: unknown): void {
  const now = Date.now();
  const round = roundOf(envelope);
  if (round === undefined || collected.has(round)) {
    stray += 1;
    return;
  }
  let byLabel = rounds.get(round);
  if (!byLabel) rounds.set(round, (byLabel = new Map()));
  let tally = byLabel.get(label);
  if (!tally) byLabel.set(label, (tally = { received: 0, first: now, last: now, latency: new LatencyHistogram() }));
  tally.received += 1;
  tally.last = now;
  const at = (envelope as { at?: unknown }).at;
  if (typeof at === 'string') tally.latency.record(now - Date.parse(at));
}

function openOne(req: ConnectRequest): Promise<Socket> {
  const socket = connect(req.url, {
    path: SOCKET_PATHS.msgpack,
    parser: msgpackParser,
    transports: ['websocket'],
    // A dropped subscriber must show up as a disconnect in the report, not quietly come back.
    reconnection: false,
    forceNew: true,
    timeout: CONNECT_TIMEOUT_MS,
    ...(req.token ? { auth: { token: req.token } } : {}),
  });
  socket.on(BENCH_EVENT, (envelope: unknown) => record(req.label, envelope));
  socket.on('disconnect', (reason) => {
    const reasons = disconnects.get(req.label) ?? new Map<string, number>();
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    disconnects.set(req.label, reasons);
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err: Error) => {
      socket.close();
      reject(err);
    });
  });
}

async function subscribe(socket: Socket, payload: NonNullable<ConnectRequest['subscribe']>): Promise<void> {
  const ack = (await socket.timeout(CONNECT_TIMEOUT_MS).emitWithAck('subscribe', payload)) as Ack<SubscribeResult>;
  if (!ack.ok) throw new Error(`subscribe refused: ${ack.error.code} ${ack.error.message}`);
}

const { notify } = serveParent<ClientOps>({
  async connect(req) {
    const started = performance.now();
    const mine = sockets.get(req.label) ?? [];
    sockets.set(req.label, mine);
    for (let done = 0; done < req.count; ) {
      const size = Math.min(req.batch, req.count - done);
      const batch = await Promise.all(
        Array.from({ length: size }, async () => {
          const socket = await openOne(req);
          mine.push(socket);
          if (req.subscribe) await subscribe(socket, req.subscribe);
          return socket;
        }),
      );
      done += batch.length;
      notify('progress', { label: req.label, connected: done } satisfies ConnectProgress);
    }
    return { connected: req.count, seconds: (performance.now() - started) / 1000 };
  },
  async count({ round }) {
    let received = 0;
    for (const tally of rounds.get(round)?.values() ?? []) received += tally.received;
    return { received };
  },
  async collect({ round }) {
    const samples: Record<string, RoundSample> = {};
    for (const [label, tally] of rounds.get(round) ?? []) {
      samples[label] = {
        received: tally.received,
        first: tally.first,
        last: tally.last,
        latency: tally.latency.toSparse(),
        negative: tally.latency.negative,
      };
    }
    rounds.delete(round);
    // Anything of this round arriving later is counted as stray, not silently added to nothing.
    collected.add(round);
    return samples;
  },
  async health() {
    const connected: Record<string, number> = {};
    for (const [label, list] of sockets) connected[label] = list.filter((s) => s.connected).length;
    const reasons: Record<string, Record<string, number>> = {};
    for (const [label, map] of disconnects) reasons[label] = Object.fromEntries(map);
    const cpu = process.cpuUsage();
    return { connected, disconnects: reasons, stray, rss: process.memoryUsage().rss, cpuUs: cpu.user + cpu.system };
  },
  async close() {
    let closed = 0;
    for (const list of sockets.values()) {
      for (const socket of list) {
        // Ours, not a failure: forget the listener first so it is not counted as a disconnect.
        socket.off('disconnect');
        socket.disconnect();
        closed += 1;
      }
    }
    sockets.clear();
    return { closed };
  },
});

process.on('SIGTERM', () => process.exit(0));
