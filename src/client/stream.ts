import {
  AeternaError,
  CLIENT_EVENTS,
  type EventEnvelope,
  type Layer,
  type ResyncRequired,
  type ScopeFields,
  type SubscribeResult,
  type Topic,
} from '../protocol/index.js';
import { isRecord, isTransient } from './ack.js';

/** Where a consumer is in its tenant's stream; store it to resume a later process from it. */
export interface StreamPosition {
  seq: number;
  epoch: string | null;
}

export interface SubscribeOptions {
  layers?: Layer[];
  /** Scope ids narrowing `layers` (`projectId`, `teamId`, …), as in REST. */
  scopes?: ScopeFields;
  /** Tenant-wide topics: `graph` for graph.changed, `jobs` for job.failed (admins). */
  topics?: Topic[];
  /** Explicit room names (`t:{tenant}:layer:{layer}:{scope}`, …). */
  rooms?: string[];
  /** Start after this position (e.g. one saved by an earlier process) instead of at the head. */
  from?: StreamPosition;
  /**
   * The stream's history was lost or the gap is larger than the server replays: reload what
   * `notice.reload` names (e.g. with `list`); the stream continues from `notice.head`.
   */
  onResync?: (notice: ResyncRequired) => void;
  /** Socket event names that carry stream envelopes; default: the memory events of EVENT_TYPES. */
  eventTypes?: readonly string[];
  /** Errors the stream cannot return to a caller: a failed re-subscribe, a throwing handler. */
  onError?: (err: AeternaError) => void;
}

export type StreamEventHandler = (event: EventEnvelope) => void | Promise<void>;

export interface Subscription {
  /** The logical rooms the server put this connection in. */
  readonly rooms: readonly string[];
  /** The last position delivered (or skipped to by a resync); null before the first ack. */
  position(): StreamPosition | null;
  unsubscribe(): Promise<void>;
}

/** What a stream needs from the client that owns the socket. */
export interface StreamLink {
  call<T>(event: string, payload: unknown): Promise<T>;
  isConnected(): boolean;
  retryDelayMs(attempt: number): number;
  /** Called once when the stream stops for good, so the client can forget it. */
  released(stream: MemoryStream): void;
}

const bySeq = (a: EventEnvelope, b: EventEnvelope) => a.seq - b.seq;

function isEnvelope(value: unknown): value is EventEnvelope {
  return isRecord(value) && Number.isSafeInteger(value['seq']) && (value['seq'] as number) >= 0 && typeof value['type'] === 'string';
}

/**
 * One subscription's exactly-once, in-order delivery over an at-most-once live path.
 *
 * Every `subscribe` request (first, after a reconnect, after `stream.check`) opens a generation.
 * Until its ack arrives, live events are held back: the ack's replay (everything after `since`
 * up to `head`) goes first, then the held events, each seq at most once. A stale ack (from a
 * request a newer one superseded) is ignored.
 */
export class MemoryStream implements Subscription {
  rooms: readonly string[] = [];
  private last: number | null;
  private epoch: string | null;
  private generation = 0;
  private pending = false;
  private held: EventEnvelope[] = [];
  /** The generation whose resync.required arrived before its ack. */
  private resyncSeenIn = -1;
  /** We told the consumer about a resync the server had not (yet) announced; skip its notice. */
  private skipNextResync = false;
  private retries = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    private readonly link: StreamLink,
    private readonly options: SubscribeOptions,
    private readonly onEvent: StreamEventHandler,
  ) {
    this.last = options.from?.seq ?? null;
    this.epoch = options.from?.epoch ?? null;
  }

  position(): StreamPosition | null {
    return this.last === null ? null : { seq: this.last, epoch: this.epoch };
  }

  /** The first subscribe: its failure is the caller's, and stops the stream. */
  async start(): Promise<void> {
    try {
      await this.request();
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Re-subscribes from the current position (reconnect, `stream.check`); failures are retried or reported. */
  resume(): void {
    if (this.stopped) return;
    const generation = this.generation + 1;
    this.request().catch((err: unknown) => {
      if (this.stopped || generation !== this.generation) return;
      const error = err instanceof AeternaError ? err : new AeternaError('UNAVAILABLE', String(err));
      if (!isTransient(error)) {
        this.report(error);
        this.stop();
        return;
      }
      // Disconnected: the next connect resumes anyway.
      if (!this.link.isConnected()) return;
      this.retryTimer = setTimeout(() => this.resume(), this.link.retryDelayMs(this.retries++));
    });
  }

  onLive(value: unknown): void {
    if (this.stopped) return;
    if (!isEnvelope(value)) {
      this.report(new AeternaError('INVALID_ARGUMENT', 'ignored a live event without a numeric seq'));
      return;
    }
    if (this.pending) this.held.push(value);
    else this.deliver(value);
  }

  onResync(value: unknown): void {
    if (this.stopped || !isRecord(value)) return;
    const notice = value as unknown as ResyncRequired;
    if (this.pending) {
      // Answers the request in flight: its ack (recovered: false) is no news to the consumer.
      this.resyncSeenIn = this.generation;
    } else if (this.skipNextResync) {
      this.skipNextResync = false;
      return;
    }
    // Moved now, not at the ack: if the ack is lost with the connection, the next resume must
    // not ask for the lost history again.
    this.last = notice.head;
    this.epoch = notice.epoch;
    this.notifyResync(notice);
  }

  async unsubscribe(): Promise<void> {
    if (this.stopped) return;
    const rooms = [...this.rooms];
    this.stop();
    if (this.link.isConnected() && rooms.length > 0) await this.link.call(CLIENT_EVENTS.unsubscribe, { rooms });
  }

  /** Stops delivering without telling the server (the client is closing or the stream failed). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.pending = false;
    this.held = [];
    clearTimeout(this.retryTimer);
    this.link.released(this);
  }

  private async request(): Promise<void> {
    clearTimeout(this.retryTimer);
    const generation = ++this.generation;
    this.pending = true;
    // Everything held so far was committed before this request reaches the server: with a
    // position it is in the replay; without one, the stream starts after it.
    this.held = [];
    this.skipNextResync = false;
    const since = this.last ?? undefined;
    const epoch = this.epoch ?? undefined;
    const { layers, scopes, topics, rooms } = this.options;
    const result = await this.link.call<SubscribeResult>(CLIENT_EVENTS.subscribe, { layers, scopes, topics, rooms, since, epoch });
    if (this.stopped || generation !== this.generation) return;
    this.retries = 0;
    this.applyAck(result, generation, since, epoch);
  }

  private applyAck(result: SubscribeResult, generation: number, since: number | undefined, epoch: string | undefined): void {
    this.rooms = result.rooms;
    if (result.recovered) {
      for (const event of [...result.events].sort(bySeq)) this.deliver(event);
      this.last = Math.max(this.last ?? result.head, result.head);
    } else {
      if (since !== undefined && this.resyncSeenIn !== generation) {
        this.skipNextResync = true;
        const reason = epoch !== undefined && epoch !== result.epoch ? 'epoch_changed' : 'gap_too_large';
        this.notifyResync({ reason, epoch: result.epoch, head: result.head, reload: ['memories'] });
      }
      // A new epoch may number from lower seqs: the position is set, not raised.
      this.last = result.head;
    }
    this.epoch = result.epoch;
    this.pending = false;
    const held = this.held.sort(bySeq);
    this.held = [];
    for (const event of held) this.deliver(event);
  }

  private deliver(event: EventEnvelope): void {
    if (this.stopped || (this.last !== null && event.seq <= this.last)) return;
    this.last = event.seq;
    this.skipNextResync = false;
    try {
      const done = this.onEvent(event);
      if (done) done.catch((err: unknown) => this.reportHandlerError(err, event));
    } catch (err) {
      this.reportHandlerError(err, event);
    }
  }

  private notifyResync(notice: ResyncRequired): void {
    try {
      this.options.onResync?.(notice);
    } catch (err) {
      this.report(new AeternaError('INTERNAL', `onResync threw: ${String(err)}`));
    }
  }

  private reportHandlerError(err: unknown, event: EventEnvelope): void {
    this.report(new AeternaError('INTERNAL', `event handler threw on seq ${event.seq}: ${String(err)}`, { seq: event.seq }));
  }

  private report(err: AeternaError): void {
    this.options.onError?.(err);
  }
}
