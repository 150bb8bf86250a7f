/**
 * What the fan-out benchmark's three kinds of process share: the driver (fanout.ts), the server
 * children (fanout-server.ts) and the subscriber workers (fanout-clients.ts). Typed request/reply
 * over Node's IPC channel, the open-loop pacer, the synthetic envelope and the latency histogram.
 */
import type { ChildProcess } from 'node:child_process';
import { Rooms } from '../gateway/realtime/types.js';
import { EVENT_TYPES, type EventEnvelope, type Memory } from '../src/protocol/index.js';
import { memoryText } from './corpus.js';

// ---------------------------------------------------------------------------------------------
// The scenario every process agrees on

export const BENCH_TENANT = 'fanout';
export const BENCH_SESSION = 'bench';
/** What subscribers listen for: the relay emits each event under its type. */
export const BENCH_EVENT = EVENT_TYPES.memoryAdded;
/** The room a `subscribe {layers: ['session'], scopes: {sessionId}}` joins. */
export const BENCH_ROOM = Rooms.layer(BENCH_TENANT, 'session', BENCH_SESSION);
/**
 * The rooms the relay delivers a session memory to (memory-stream.ts, roomsOfEvent): its exact
 * scope and the layer's catch-all, which the benchmark's subscribers are not in.
 */
export const BENCH_ROOMS_AS_RELAYED = [BENCH_ROOM, Rooms.layerAll(BENCH_TENANT, 'session')] as const;

/** Where a round's id travels inside a memory, so late or early events are never counted in the wrong round. */
interface RoundTag {
  fanoutRound: number;
  i: number;
}

/** The content a write (or a synthetic event) carries: corpus text made unique, so the dedup path never merges two. */
export function benchContent(random: () => number, round: number, i: number): string {
  return `${memoryText(random)} (fanout round ${round} #${i})`;
}

/** The metadata the REST writer sends; the synthetic envelope carries the same. */
export const roundTag = (round: number, i: number): RoundTag => ({ fanoutRound: round, i });

/** The round a received envelope belongs to, or undefined for anything else. */
export function roundOf(envelope: unknown): number | undefined {
  const memory = (envelope as { data?: { memory?: { metadata?: Partial<RoundTag> } } } | null)?.data?.memory;
  const round = memory?.metadata?.fanoutRound;
  return typeof round === 'number' ? round : undefined;
}

/**
 * An envelope shaped and sized like the relay's `memory.added` (same fields, corpus content), for
 * the scenarios that leave the database out. `at` is the time the event was due, not when the
 * emitter got round to it: a late event loop then shows up as latency.
 */
export function syntheticEnvelope(seq: number, round: number, i: number, dueMs: number, content: string): EventEnvelope<{ memory: Memory }> {
  const at = new Date(Math.floor(dueMs)).toISOString();
  const actor = { userId: 'writer' };
  const id = `m_fanout_${round}_${i}`;
  return {
    seq,
    id: `e_fanout_${round}_${i}`,
    tenantId: BENCH_TENANT,
    type: BENCH_EVENT,
    at,
    actor,
    data: {
      memory: {
        id,
        tenantId: BENCH_TENANT,
        layer: 'session',
        scopeId: BENCH_SESSION,
        content,
        metadata: { ...roundTag(round, i) },
        tags: ['fanout'],
        importance: 0.5,
        contentHash: id.padEnd(64, '0'),
        version: 1,
        accessCount: 0,
        lastAccessedAt: null,
        createdBy: actor,
        createdAt: at,
        updatedAt: at,
      },
    },
    traceId: null,
  };
}

// ---------------------------------------------------------------------------------------------
// Pacing

export interface PaceResult {
  fired: number;
  /** The most any event fired after it was due: the pacer's own lag (an overloaded event loop). */
  maxLateMs: number;
}

/**
 * Calls `fire` `rate` times a second for `seconds`, open loop: a timer that wakes late fires
 * every event that fell due meanwhile, each with the time it was due, instead of quietly offering
 * less load (coordinated omission).
 */
export function paced(rate: number, seconds: number, fire: (i: number, dueMs: number) => void): Promise<PaceResult> {
  const total = Math.max(1, Math.round(rate * seconds));
  const interval = 1000 / rate;
  const start = Date.now();
  let i = 0;
  let maxLateMs = 0;
  return new Promise((resolve) => {
    const tick = () => {
      const now = Date.now();
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval;
        maxLateMs = Math.max(maxLateMs, now - due);
        fire(i, due);
        i += 1;
      }
      if (i >= total) resolve({ fired: total, maxLateMs });
      else setTimeout(tick, Math.max(0, start + i * interval - Date.now()));
    };
    tick();
  });
}

// ---------------------------------------------------------------------------------------------
// Latency

/**
 * Whole-millisecond buckets: `at` is an ISO string with millisecond resolution, so nothing finer
 * can be measured. Sent between processes as [ms, count] pairs of the non-empty buckets.
 */
export class LatencyHistogram {
  static readonly MAX_MS = 60_000;
  private readonly counts = new Uint32Array(LatencyHistogram.MAX_MS + 1);
  total = 0;
  /** Receipts stamped before their commit time: only clock trouble (or rounding) produces them. */
  negative = 0;

  record(ms: number): void {
    if (ms < 0) this.negative += 1;
    const bucket = Math.min(LatencyHistogram.MAX_MS, Math.max(0, Math.round(ms)));
    this.counts[bucket] = (this.counts[bucket] ?? 0) + 1;
    this.total += 1;
  }

  /** The smallest latency that `q` of the samples do not exceed; NaN when empty. */
  percentile(q: number): number {
    if (this.total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let ms = 0; ms < this.counts.length; ms++) {
      seen += this.counts[ms] ?? 0;
      if (seen >= rank) return ms;
    }
    return LatencyHistogram.MAX_MS;
  }

  toSparse(): Array<[number, number]> {
    const pairs: Array<[number, number]> = [];
    this.counts.forEach((count, ms) => {
      if (count > 0) pairs.push([ms, count]);
    });
    return pairs;
  }

  add(pairs: ReadonlyArray<readonly [number, number]>, negative = 0): this {
    for (const [ms, count] of pairs) {
      const bucket = Math.min(LatencyHistogram.MAX_MS, ms);
      this.counts[bucket] = (this.counts[bucket] ?? 0) + count;
      this.total += count;
    }
    this.negative += negative;
    return this;
  }
}

// ---------------------------------------------------------------------------------------------
// Typed request/reply over the IPC channel

/** op name → request and reply types, one map per kind of child. */
export type OpMap = Record<string, { req: unknown; res: unknown }>;

type Message =
  | { rpc: 'call'; id: number; op: string; req: unknown }
  | { rpc: 'reply'; id: number; ok: true; res: unknown }
  | { rpc: 'reply'; id: number; ok: false; error: string }
  | { rpc: 'event'; event: string; data: unknown };

function isMessage(value: unknown): value is Message {
  const rpc = (value as { rpc?: unknown } | null)?.rpc;
  return rpc === 'call' || rpc === 'reply' || rpc === 'event';
}

export type Handlers<Ops extends OpMap> = { [K in keyof Ops]: (req: Ops[K]['req']) => Promise<Ops[K]['res']> };

/**
 * The child's side: answers the parent's calls, and exits when the parent goes away, however it
 * went (a driver killed by a hard timeout must not leave sockets or ports behind).
 */
export function serveParent<Ops extends OpMap>(handlers: Handlers<Ops>): { notify(event: string, data: unknown): void } {
  const send = (message: Message) => {
    if (process.connected) process.send?.(message);
  };
  if (!process.send) throw new Error('this process is a fan-out benchmark child: start it from loadtest/fanout.ts');
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.rpc !== 'call') return;
    const handler = (handlers as Record<string, ((req: unknown) => Promise<unknown>) | undefined>)[message.op];
    const run = handler ? handler(message.req) : Promise.reject(new Error(`unknown op ${message.op}`));
    run.then(
      (res) => send({ rpc: 'reply', id: message.id, ok: true, res }),
      (err: unknown) => send({ rpc: 'reply', id: message.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  return { notify: (event, data) => send({ rpc: 'event', event, data }) };
}

export interface ChildRpc<Ops extends OpMap> {
  call<K extends keyof Ops & string>(op: K, req: Ops[K]['req'], timeoutMs?: number): Promise<Ops[K]['res']>;
}

/** The parent's side. Every pending call fails, naming the child, if it exits. */
export function rpcTo<Ops extends OpMap>(child: ChildProcess, name: string, onEvent: (event: string, data: unknown) => void): ChildRpc<Ops> {
  let nextId = 1;
  const pending = new Map<number, { resolve: (res: unknown) => void; reject: (err: Error) => void }>();
  child.on('message', (message: unknown) => {
    if (!isMessage(message)) return;
    if (message.rpc === 'event') onEvent(message.event, message.data);
    if (message.rpc !== 'reply') return;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.ok) waiter?.resolve(message.res);
    else waiter?.reject(new Error(`${name}: ${message.error}`));
  });
  child.once('exit', (code, signal) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`${name} exited (code ${String(code)}, signal ${String(signal)})`));
    pending.clear();
  });
  return {
    call(op, req, timeoutMs = 60_000) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name}: ${op} got no answer within ${timeoutMs / 1000}s`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (res) => {
            clearTimeout(timer);
            resolve(res as Ops[typeof op]['res']);
          },
          reject: (err) => {
            clearTimeout(timer);
            reject(err);
          },
        });
        child.send({ rpc: 'call', id, op, req } satisfies Message);
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The ops of each kind of child

export type ServerKind = 'uws' | 'node' | 'gateway';

export interface ServerStats {
  pid: number;
  connections: number;
  rss: number;
  heapUsed: number;
  /** Cumulative process CPU, microseconds. */
  cpuUs: number;
  /** Cumulative event loop idle and active time (performance.eventLoopUtilization), ms. */
  loopIdleMs: number;
  loopActiveMs: number;
}

export interface EmitRequest {
  round: number;
  rate: number;
  seconds: number;
  /**
   * How the transport servers address the relay's two rooms: `each`, one broadcast per room, as the
   * relay's sink does (a single-room broadcast is socket.io's uWS fast path); `together`, one
   * broadcast to both, as it did before commit 68c19a7. The gateway always uses the relay's sink.
   */
  rooms: 'each' | 'together';
}

export type ServerOps = {
  /** `gc`: collect garbage first (the child runs with --expose-gc), for memory readings that mean something. */
  stats: { req: { gc: boolean }; res: ServerStats };
  /** Broadcasts synthetic envelopes, paced; resolves when the last one has been handed to socket.io. */
  emit: { req: EmitRequest; res: PaceResult };
};

export interface ServerReady {
  kind: ServerKind;
  port: number;
  pid: number;
  /** What the child is, for the report: socket.io, engine.io and uWS versions, database kind. */
  detail: Record<string, string>;
}

export interface ConnectRequest {
  /** Groups sockets (a server, a node) so their numbers can be told apart. */
  label: string;
  url: string;
  count: number;
  /** Sockets connecting at once. */
  batch: number;
  token?: string;
  /** Gateway: the subscribe payload; the transport bench servers join every socket themselves. */
  subscribe?: { layers: ['session']; scopes: { sessionId: string } };
}

/** What one worker saw of one round for one label. */
export interface RoundSample {
  received: number;
  /** Wall-clock ms of the first and last receipt. */
  first: number;
  last: number;
  latency: Array<[number, number]>;
  negative: number;
}

export interface WorkerHealth {
  connected: Record<string, number>;
  /** Disconnect reasons since start, per label: any is a warning. */
  disconnects: Record<string, Record<string, number>>;
  /** Events with no round tag, or of a round already collected. */
  stray: number;
  rss: number;
  /** Cumulative process CPU, microseconds: what decoding the deliveries costs the subscribers. */
  cpuUs: number;
}

export type ClientOps = {
  connect: { req: ConnectRequest; res: { connected: number; seconds: number } };
  /** Receipts so far for a round, all labels: the driver polls this until a round has drained. */
  count: { req: { round: number }; res: { received: number } };
  /** A round's samples per label; the round is then forgotten. */
  collect: { req: { round: number }; res: Record<string, RoundSample> };
  health: { req: Record<string, never>; res: WorkerHealth };
  close: { req: Record<string, never>; res: { closed: number } };
};

/** Progress events from a worker while it connects. */
export interface ConnectProgress {
  label: string;
  connected: number;
}
