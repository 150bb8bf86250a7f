import { toBase64 } from 'lib0/buffer';
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import type { AddResult, DeleteResult, EventPage, ListResult, SearchHit } from '../memory/index.js';
import type { PresenceEnvelope } from '../presence/index.js';
import {
  AeternaError,
  CLIENT_EVENTS,
  CLOSE_REASONS,
  EVENT_TYPES,
  SERVER_EVENTS,
  SOCKET_PATHS,
  msgpackParser,
  type AddMemoryInput,
  type FeedbackInput,
  type ListMemoriesInput,
  type Memory,
  type PresenceMember,
  type PresenceStatus,
  type SearchMemoriesInput,
  type UpdateMemoryInput,
} from '../protocol/index.js';
import { errorFromWire, isRecord, unwrapAck } from './ack.js';
import { SharedDoc, type DocLink } from './doc.js';
import { TypedEmitter } from './emitter.js';
import { MemoryStream, type StreamEventHandler, type StreamLink, type SubscribeOptions, type Subscription } from './stream.js';

export type TransportMode = 'websocket' | 'polling' | 'auto';
export type ParserMode = 'msgpack' | 'json';

export interface AeternaClientOptions {
  /** The gateway's base URL, e.g. `http://localhost:8080`. */
  url: string;
  /** A JWT, or a function asked for one on every (re)connect so a refreshed token is used. */
  token: string | (() => string | Promise<string>);
  /**
   * `auto` (default) tries a WebSocket first and falls back to long-polling; it needs no sticky
   * sessions unless the fallback is taken. `websocket` and `polling` use only that transport.
   */
  transport?: TransportMode;
  /** `msgpack` (default) or socket.io's JSON parser, each on its own endpoint (SOCKET_PATHS). */
  parser?: ParserMode;
  /** How long a call waits for its ack. Default 10 s. */
  callTimeoutMs?: number;
  /** How long a connection attempt may take. Default 20 s. */
  connectTimeoutMs?: number;
  /** Reconnection backoff: first delay, doubled per attempt up to the max, ±50 % jitter. */
  reconnectDelayMs?: number;
  reconnectDelayMaxMs?: number;
  /** Passed to socket.io-client (extra headers, TLS options…); the options above take precedence. */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
}

export interface SessionJoinOptions {
  status?: PresenceStatus;
  activity?: string;
  meta?: Record<string, unknown>;
}

export type SearchQuery = Omit<SearchMemoriesInput, 'limit' | 'threshold'> & { limit?: number; threshold?: number };
export type ListQuery = Partial<ListMemoriesInput>;

export interface ClientEvents {
  /** Presence envelopes carry `seq: null`: they are not part of the replayable stream. */
  'presence.joined': (event: PresenceEnvelope) => void;
  'presence.left': (event: PresenceEnvelope) => void;
  'presence.updated': (event: PresenceEnvelope) => void;
  /** The member list after each (re)join of a session: events missed while away are in it. */
  'presence.members': (sessionId: string, members: PresenceMember[]) => void;
  /** After every (re)connect; subscriptions, sessions and documents are being restored. */
  connected: (info: { reconnect: boolean }) => void;
  /** socket.io's reason, e.g. `transport close`, `io server disconnect`. The client reconnects unless closed. */
  disconnected: (reason: string) => void;
  /** Something that has no caller to reject: a failed restore, an error the server pushed. */
  error: (err: AeternaError) => void;
  /** The client stopped for good: `close()`, or the server refused it (bad token, limit…). */
  closed: (err?: AeternaError) => void;
}

/** The server's notice before it disconnects a socket: `{code, retry}` (CLOSE_REASONS). */
const SERVER_CLOSE_EVENT = 'server.close';
/** Errors of client events sent without an ack callback. */
const SERVER_ERROR_EVENT = 'aeterna.error';
const PRESENCE_EVENTS = [SERVER_EVENTS.presenceJoined, SERVER_EVENTS.presenceLeft, SERVER_EVENTS.presenceUpdated] as const;
/** Codes a connect_error can carry that a retry with the same token cannot fix. */
const FATAL_CONNECT_CODES: ReadonlySet<string> = new Set(['UNAUTHENTICATED', 'FORBIDDEN', 'INVALID_ARGUMENT']);
const NO_RETRY_REASONS: ReadonlySet<string> = new Set(
  Object.values(CLOSE_REASONS)
    .filter((r) => !r.retry)
    .map((r) => r.code),
);

/**
 * A connection to an Aeterna gateway: memory calls with acks, presence, a gap-free memory event
 * stream that resumes after reconnects, and shared Yjs documents. One process may hold several.
 */
export class AeternaClient extends TypedEmitter<ClientEvents> {
  /** The socket.io-client socket underneath, for events this client does not wrap. */
  readonly socket: Socket;
  private readonly callTimeoutMs: number;
  private readonly reconnectDelayMs: number;
  private readonly reconnectDelayMaxMs: number;
  private readonly binaryAsBase64: boolean;
  private readonly refreshableToken: boolean;
  private stream: { stream: MemoryStream; detach: () => void } | undefined;
  private readonly docs = new Map<string, SharedDoc>();
  private readonly sessions = new Map<string, SessionJoinOptions & { sessionId: string }>();
  private everConnected = false;
  private closed = false;
  /** The server's last word before it disconnects us: whether to come back. */
  private serverSaysRetry: { retry: boolean; code?: string } = { retry: true };
  private reconnectAttempts = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private firstConnect: { resolve: () => void; reject: (err: AeternaError) => void } | undefined;

  private constructor(options: AeternaClientOptions) {
    super();
    const transport = options.transport ?? 'auto';
    const parser = options.parser ?? 'msgpack';
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 500;
    this.reconnectDelayMaxMs = options.reconnectDelayMaxMs ?? 5_000;
    this.binaryAsBase64 = parser === 'json';
    const token = options.token;
    this.refreshableToken = typeof token === 'function';
    this.socket = io(options.url, {
      ...options.socketOptions,
      path: SOCKET_PATHS[parser],
      ...(parser === 'msgpack' ? { parser: msgpackParser } : {}),
      transports: transport === 'websocket' ? ['websocket'] : transport === 'polling' ? ['polling'] : ['websocket', 'polling'],
      tryAllTransports: transport === 'auto',
      auth: (cb: (data: object) => void) => {
        Promise.resolve()
          .then(() => (typeof token === 'function' ? token() : token))
          .then(
            (value) => cb({ token: value }),
            (err: unknown) => {
              this.emit('error', new AeternaError('UNAUTHENTICATED', `token provider failed: ${String(err)}`));
              cb({});
            },
          );
      },
      autoConnect: false,
      // Each client its own connection: closing one must not close another to the same URL.
      forceNew: true,
      reconnection: true,
      reconnectionAttempts: Infinity,
      reconnectionDelay: this.reconnectDelayMs,
      reconnectionDelayMax: this.reconnectDelayMaxMs,
      randomizationFactor: 0.5,
      timeout: options.connectTimeoutMs ?? 20_000,
    });
    this.wire();
  }

  /** Connects and authenticates; rejects with the server's `{code, message}` (e.g. UNAUTHENTICATED). */
  static connect(options: AeternaClientOptions): Promise<AeternaClient> {
    const client = new AeternaClient(options);
    return new Promise<AeternaClient>((resolve, reject) => {
      client.firstConnect = { resolve: () => resolve(client), reject };
      client.socket.connect();
    });
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** The socket.io connection id (changes on every reconnect). */
  get id(): string | undefined {
    return this.socket.id;
  }

  /**
   * Sends a client event and waits for its ack: resolves with `data`, or rejects with an
   * AeternaError (`code`, `details`) from the server, or UNAVAILABLE on timeout or disconnect.
   */
  async call<T>(event: string, payload?: unknown, opts?: { timeoutMs?: number }): Promise<T> {
    if (this.closed) throw new AeternaError('UNAVAILABLE', `${event}: the client is closed`);
    const timeoutMs = opts?.timeoutMs ?? this.callTimeoutMs;
    let reply: unknown;
    try {
      reply = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch (err) {
      // socket.io-client rejects on timeout and when the connection drops before the ack.
      throw new AeternaError('UNAVAILABLE', `${event}: ${err instanceof Error ? err.message : String(err)}`, { event, timeoutMs });
    }
    return unwrapAck<T>(event, reply);
  }

  // ---- memories (the REST API over the socket) ----

  add(input: AddMemoryInput): Promise<AddResult> {
    return this.call(CLIENT_EVENTS.memoryAdd, input);
  }

  async get(id: string): Promise<Memory> {
    return (await this.call<{ memory: Memory }>(CLIENT_EVENTS.memoryGet, { id })).memory;
  }

  list(query: ListQuery = {}): Promise<ListResult> {
    return this.call(CLIENT_EVENTS.memoryList, query);
  }

  search(query: SearchQuery): Promise<{ results: SearchHit[]; model: string }> {
    return this.call(CLIENT_EVENTS.memorySearch, query);
  }

  async update(id: string, patch: UpdateMemoryInput): Promise<Memory> {
    return (await this.call<{ memory: Memory }>(CLIENT_EVENTS.memoryUpdate, { id, ...patch })).memory;
  }

  delete(id: string): Promise<DeleteResult> {
    return this.call(CLIENT_EVENTS.memoryDelete, { id });
  }

  async feedback(id: string, feedback: FeedbackInput): Promise<Memory> {
    return (await this.call<{ memory: Memory }>(CLIENT_EVENTS.memoryFeedback, { id, ...feedback })).memory;
  }

  /** A page of the tenant's event log after `since`. */
  readEvents(since = 0, limit = 100): Promise<EventPage> {
    return this.call(CLIENT_EVENTS.eventsRead, { since, limit });
  }

  // ---- sessions and presence ----

  /** Joins a session (re-joined automatically after a reconnect) and returns its members. */
  async joinSession(sessionId: string, opts: SessionJoinOptions = {}): Promise<PresenceMember[]> {
    const entry = { sessionId, ...opts };
    const members = membersOf(await this.call(CLIENT_EVENTS.sessionJoin, entry));
    this.sessions.set(sessionId, entry);
    return members;
  }

  async leaveSession(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
    await this.call(CLIENT_EVENTS.sessionLeave, { sessionId });
  }

  async setPresence(sessionId: string, status: PresenceStatus, activity?: string): Promise<void> {
    await this.call(CLIENT_EVENTS.presenceUpdate, { sessionId, status, activity });
    const entry = this.sessions.get(sessionId);
    if (entry) this.sessions.set(sessionId, { ...entry, status, activity });
  }

  // ---- the memory event stream ----

  /**
   * Delivers the memory events of `options`' layers and rooms to `onEvent`, each seq exactly
   * once and in order, across reconnects (the server replays the gap from its event log). One
   * subscription per client: its position is that of the connection.
   */
  async subscribe(options: SubscribeOptions, onEvent: StreamEventHandler): Promise<Subscription> {
    if (this.stream) throw new AeternaError('INVALID_ARGUMENT', 'this client already has a subscription: unsubscribe it first or open another client');
    const onError = options.onError ?? ((err: AeternaError) => this.emit('error', err));
    const stream = new MemoryStream(this.streamLink, { ...options, onError }, onEvent);
    const listeners = (options.eventTypes ?? Object.values(EVENT_TYPES)).map((type) => {
      const listener = (event: unknown) => stream.onLive(event);
      this.socket.on(type, listener);
      return () => this.socket.off(type, listener);
    });
    this.stream = { stream, detach: () => listeners.forEach((off) => off()) };
    await stream.start();
    return stream;
  }

  // ---- shared documents ----

  /** Opens a shared Yjs document (the same handle if already open). */
  async openDoc(docId: string): Promise<SharedDoc> {
    const existing = this.docs.get(docId);
    if (existing) return existing;
    const handle = new SharedDoc(docId, this.docLink);
    this.docs.set(docId, handle);
    try {
      await handle.open();
    } catch (err) {
      handle.release();
      throw err;
    }
    return handle;
  }

  /** Disconnects for good; the server leaves our sessions and documents with the socket. */
  close(): void {
    // Before `closed` is set, so the farewell awareness update still goes out.
    for (const doc of [...this.docs.values()]) doc.release({ farewell: true });
    this.shutdown();
  }

  // ---- internals ----

  private retryDelayMs(attempt: number): number {
    const base = Math.min(this.reconnectDelayMaxMs, this.reconnectDelayMs * 2 ** Math.min(attempt, 16));
    return Math.round(base * (0.5 + Math.random()));
  }

  private readonly streamLink: StreamLink = {
    call: (event, payload) => this.call(event, payload),
    isConnected: () => this.socket.connected,
    retryDelayMs: (attempt) => this.retryDelayMs(attempt),
    released: (stream) => {
      if (this.stream?.stream !== stream) return;
      this.stream.detach();
      this.stream = undefined;
    },
  };

  private readonly docLink: DocLink = {
    call: (event, payload) => this.call(event, payload),
    isConnected: () => this.socket.connected,
    wireBytes: (bytes) => (this.binaryAsBase64 ? toBase64(bytes) : bytes),
    retryDelayMs: (attempt) => this.retryDelayMs(attempt),
    report: (err) => this.emit('error', err),
    released: (doc) => {
      if (this.docs.get(doc.docId) === doc) this.docs.delete(doc.docId);
    },
  };

  private wire(): void {
    const socket = this.socket;
    socket.on('connect', () => this.onConnect());
    socket.on('disconnect', (reason) => this.onDisconnect(reason));
    socket.on('connect_error', (err) => this.onConnectError(err));
    socket.on(SERVER_EVENTS.resyncRequired, (notice: unknown) => this.stream?.stream.onResync(notice));
    // Live delivery may have dropped events or doc updates (Redis outage): re-check both.
    socket.on(SERVER_EVENTS.streamCheck, () => {
      this.stream?.stream.resume();
      for (const doc of this.docs.values()) doc.resync();
    });
    // The node is draining and will close the socket; we come back (to another node) and resume.
    socket.on(SERVER_EVENTS.serverShutdown, (notice: unknown) => this.noteServerClose(notice));
    socket.on(SERVER_CLOSE_EVENT, (notice: unknown) => this.noteServerClose(notice));
    socket.on(SERVER_ERROR_EVENT, (wire: unknown) => this.emit('error', errorFromWire(wire, 'server error')));
    for (const name of PRESENCE_EVENTS) {
      socket.on(name, (event: PresenceEnvelope) => this.emit(name, event));
    }
    const route = (apply: (doc: SharedDoc, data: unknown) => void) => (message: unknown) => {
      if (!isRecord(message) || typeof message['docId'] !== 'string') return;
      const doc = this.docs.get(message['docId']);
      if (doc) apply(doc, message['data']);
    };
    socket.on(SERVER_EVENTS.docUpdate, route((doc, data) => doc.applyRemoteUpdate(data)));
    socket.on(SERVER_EVENTS.docAwareness, route((doc, data) => doc.applyRemoteAwareness(data)));
    socket.on(SERVER_EVENTS.docSync, route((doc, data) => doc.applyRemoteSync(data)));
  }

  private onConnect(): void {
    const reconnect = this.everConnected;
    this.everConnected = true;
    this.reconnectAttempts = 0;
    this.serverSaysRetry = { retry: true };
    if (reconnect) this.restore();
    this.emit('connected', { reconnect });
    this.firstConnect?.resolve();
    this.firstConnect = undefined;
  }

  /** A new connection knows nothing of the old one: subscribe, join and open again. */
  private restore(): void {
    this.stream?.stream.resume();
    for (const entry of this.sessions.values()) {
      this.call(CLIENT_EVENTS.sessionJoin, entry).then(membersOf).then(
        (members) => this.emit('presence.members', entry.sessionId, members),
        (err: unknown) => this.emit('error', err instanceof AeternaError ? err : new AeternaError('UNAVAILABLE', String(err))),
      );
    }
    for (const doc of this.docs.values()) doc.reopen();
  }

  private onDisconnect(reason: string): void {
    for (const doc of this.docs.values()) doc.onDisconnect();
    this.emit('disconnected', reason);
    if (this.closed || reason !== 'io server disconnect') return;
    // socket.io-client does not reconnect after a server-side disconnect; we do, unless told not to.
    const notice = this.serverSaysRetry;
    // An expired token is worth a retry when we can ask for a fresh one.
    if (notice.retry || (notice.code === CLOSE_REASONS.tokenExpired.code && this.refreshableToken)) this.scheduleReconnect();
    else this.shutdown(new AeternaError(notice.code === CLOSE_REASONS.tokenExpired.code ? 'UNAUTHENTICATED' : 'FORBIDDEN', `closed by the server: ${notice.code ?? 'no retry'}`, { reason: notice.code }));
  }

  private onConnectError(err: Error & { data?: unknown }): void {
    const error = err.data === undefined ? new AeternaError('UNAVAILABLE', `cannot connect: ${err.message}`) : errorFromWire(err.data, err.message);
    if (this.firstConnect) {
      const { reject } = this.firstConnect;
      this.firstConnect = undefined;
      this.shutdown();
      reject(error);
      return;
    }
    // Still active: a transport failure that socket.io-client's own backoff retries.
    if (this.socket.active || this.closed) return;
    const reason = error.details?.['reason'];
    if (FATAL_CONNECT_CODES.has(error.code) || (typeof reason === 'string' && NO_RETRY_REASONS.has(reason))) {
      this.shutdown(error);
      return;
    }
    // Refused for now (e.g. the node is draining): try again later, maybe on another node.
    this.scheduleReconnect();
  }

  private noteServerClose(notice: unknown): void {
    if (!isRecord(notice)) return;
    const code = typeof notice['code'] === 'string' ? notice['code'] : undefined;
    this.serverSaysRetry = { retry: notice['retry'] !== false, ...(code === undefined ? {} : { code }) };
  }

  private scheduleReconnect(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      if (!this.closed && !this.socket.connected) this.socket.connect();
    }, this.retryDelayMs(this.reconnectAttempts++));
  }

  private shutdown(err?: AeternaError): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.stream?.stream.stop();
    for (const doc of [...this.docs.values()]) doc.release();
    this.socket.disconnect();
    if (err) this.emit('error', err);
    this.emit('closed', err);
  }
}

/** `session.join` acks `{members}` (or the bare list). */
function membersOf(data: unknown): PresenceMember[] {
  if (Array.isArray(data)) return data as PresenceMember[];
  if (isRecord(data) && Array.isArray(data['members'])) return data['members'] as PresenceMember[];
  throw new AeternaError('INTERNAL', 'session.join: the reply has no member list');
}
