import type { Socket } from 'socket.io';
import type { z } from 'zod';
import { AeternaError, SERVER_EVENTS, isAeternaError, parseInput, toWireError, type Ack } from '../../src/protocol/index.js';
import type { Logger } from '../../src/obs/index.js';
import type { TenantContext } from '../../src/tenancy/index.js';
import { TokenBucket } from './rate-limit.js';
import type { Connection, Flavor } from './types.js';

/** The JSON endpoint's rooms carry a suffix: both endpoints share uWS's topic space (see server.ts). */
export function endpointRoom(room: string, flavor: Flavor): string {
  return flavor === 'msgpack' ? room : `${room}~json`;
}

/** Counts acks still owed, so a draining node can wait for them. */
export class InflightCounter {
  count = 0;
  private waiters: (() => void)[] = [];

  enter(): void {
    this.count += 1;
  }

  leave(): void {
    this.count -= 1;
    if (this.count === 0) for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when nothing is in flight or after `ms`, whichever comes first. */
  settle(ms: number): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

export class SocketConnection implements Connection {
  readonly id: string;
  private readonly bucket: TokenBucket;

  constructor(
    readonly socket: Socket,
    readonly tenant: TenantContext,
    readonly flavor: Flavor,
    rateLimit: { perSec: number; burst: number },
    private readonly inflight: InflightCounter,
    private readonly log: Logger,
  ) {
    this.id = socket.id;
    this.bucket = new TokenBucket(rateLimit.perSec, rateLimit.burst);
  }

  handle<S extends z.ZodTypeAny, R>(event: string, schema: S, fn: (input: z.infer<S>) => Promise<R>): void {
    this.socket.on(event, (...args: unknown[]) => {
      const last = args[args.length - 1];
      const ack = typeof last === 'function' ? (last as (reply: Ack<R>) => void) : undefined;
      // emit('x', cb) carries no payload: the only argument is the ack.
      const payload = ack && args.length === 1 ? undefined : args[0];
      this.inflight.enter();
      this.run(event, schema, fn, payload)
        .then((reply) => {
          if (ack) ack(reply);
          // Without an ack callback the client still learns of its error instead of silence.
          else if (!reply.ok) this.socket.emit(SERVER_EVENTS.error, { event, ...reply.error });
        })
        .finally(() => this.inflight.leave());
    });
  }

  private async run<S extends z.ZodTypeAny, R>(event: string, schema: S, fn: (input: z.infer<S>) => Promise<R>, payload: unknown): Promise<Ack<R>> {
    try {
      if (!this.bucket.take()) throw new AeternaError('RATE_LIMITED', 'too many requests on this connection; slow down', { event });
      const input = parseInput(schema, payload ?? {}, `${event} payload`) as z.infer<S>;
      return { ok: true, data: await fn(input) };
    } catch (err) {
      if (!isAeternaError(err)) this.log.error({ err, event, connection: this.id }, 'socket handler failed');
      return { ok: false, error: toWireError(err) };
    }
  }

  async join(room: string): Promise<void> {
    await this.socket.join(endpointRoom(room, this.flavor));
  }

  async leave(room: string): Promise<void> {
    await this.socket.leave(endpointRoom(room, this.flavor));
  }

  emit(event: string, payload: unknown): void {
    this.socket.emit(event, payload);
  }
}
