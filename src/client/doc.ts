import { fromBase64 } from 'lib0/buffer';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness';
import { readSyncMessage, writeSyncStep1 } from 'y-protocols/sync';
import * as Y from 'yjs';
import { AeternaError, CLIENT_EVENTS } from '../protocol/index.js';
import { isTransient } from './ack.js';

/** The transaction origin of everything applied from the server; local edits have any other. */
export const REMOTE_ORIGIN: unique symbol = Symbol('aeterna.remote');

/** What `doc.open` acks. Bytes are Uint8Array on msgpack and base64 strings on JSON. */
export interface DocOpenReply {
  docId: string;
  /** The whole document as one Yjs update. */
  state: Uint8Array | string;
  writable: boolean;
  /** Optional: the other editors' awareness states, so a late joiner sees their cursors at once. */
  awareness?: Uint8Array | string;
}

/** What `doc.sync` acks: the server's step 2 for our step 1, and its own step 1 (or nulls). */
interface DocSyncReply {
  data: Uint8Array | string | null;
  step1: Uint8Array | string | null;
}

/** What a shared doc needs from the client that owns the socket. */
export interface DocLink {
  call<T>(event: string, payload: unknown): Promise<T>;
  isConnected(): boolean;
  /** Uint8Array as is for msgpack, base64 for the JSON endpoint. */
  wireBytes(bytes: Uint8Array): Uint8Array | string;
  retryDelayMs(attempt: number): number;
  report(err: AeternaError): void;
  released(doc: SharedDoc): void;
}

/** Bytes from the wire: Buffer/Uint8Array (msgpack), ArrayBuffer (browser binary), base64 (JSON). */
export function bytesFromWire(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === 'string') return fromBase64(value);
  throw new AeternaError('INVALID_ARGUMENT', `${what}: expected bytes or base64`);
}

/**
 * A Yjs document kept in sync with the server's copy. Local updates are sent as `doc.update`
 * and kept until acked, so edits made while disconnected (or lost with a dropped connection)
 * reach the server after the next `doc.open`; Yjs applies repeats idempotently.
 */
export class SharedDoc {
  readonly doc = new Y.Doc();
  /** Cursor, selection, user name…: `awareness.setLocalState({...})`; others' in `awareness.getStates()`. */
  readonly awareness = new Awareness(this.doc);
  writable = false;
  private opened = false;
  private closed = false;
  private unacked: Uint8Array[] = [];
  private sending = false;
  private retries = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly docId: string,
    private readonly link: DocLink,
  ) {
    this.doc.on('update', this.onLocalUpdate);
    this.awareness.on('update', this.onAwarenessChange);
  }

  /** Opens (or re-opens after a reconnect) the document on the current connection. */
  async open(): Promise<void> {
    this.opened = false;
    const reply = await this.link.call<DocOpenReply>(CLIENT_EVENTS.docOpen, { docId: this.docId });
    if (this.closed) return;
    Y.applyUpdate(this.doc, bytesFromWire(reply.state, 'doc.open state'), REMOTE_ORIGIN);
    if (reply.awareness) applyAwarenessUpdate(this.awareness, bytesFromWire(reply.awareness, 'doc.open awareness'), REMOTE_ORIGIN);
    this.writable = reply.writable;
    this.opened = true;
    this.flush();
    if (this.awareness.getLocalState() !== null) this.sendAwareness([this.doc.clientID]);
  }

  reopen(): void {
    this.open().catch((err: unknown) => this.link.report(asError(err, `doc.open ${this.docId}`)));
  }

  onDisconnect(): void {
    this.opened = false;
  }

  applyRemoteUpdate(data: unknown): void {
    this.guard('doc.update', () => Y.applyUpdate(this.doc, bytesFromWire(data, 'doc.update'), REMOTE_ORIGIN));
  }

  applyRemoteAwareness(data: unknown): void {
    this.guard('doc.awareness', () => applyAwarenessUpdate(this.awareness, bytesFromWire(data, 'doc.awareness'), REMOTE_ORIGIN));
  }

  /** A y-protocols sync message pushed by the server: a step 1 is answered with our step 2. */
  applyRemoteSync(data: unknown): void {
    this.guard('doc.sync', () => this.answerSync(bytesFromWire(data, 'doc.sync')));
  }

  /**
   * Exchanges state vectors with the server (y-protocols step 1/step 2 over `doc.sync`): each side
   * gets what it lacks. For after `stream.check`, when relayed updates may have been dropped.
   */
  resync(): void {
    if (!this.opened) return;
    const step1 = encoding.createEncoder();
    writeSyncStep1(step1, this.doc);
    this.link.call<DocSyncReply>(CLIENT_EVENTS.docSync, { docId: this.docId, data: this.link.wireBytes(encoding.toUint8Array(step1)) }).then(
      (reply) =>
        this.guard('doc.sync', () => {
          if (reply.data) this.answerSync(bytesFromWire(reply.data, 'doc.sync step 2'));
          if (reply.step1 && this.writable) this.answerSync(bytesFromWire(reply.step1, 'doc.sync step 1'));
        }),
      (err: unknown) => this.link.report(asError(err, `doc.sync ${this.docId}`)),
    );
  }

  private answerSync(message: Uint8Array): void {
    const reply = encoding.createEncoder();
    readSyncMessage(decoding.createDecoder(message), reply, this.doc, REMOTE_ORIGIN);
    if (encoding.length(reply) > 0) this.send(CLIENT_EVENTS.docSync, encoding.toUint8Array(reply));
  }

  /** Says goodbye to the other editors and stops syncing; the Y.Doc stays readable. */
  async close(): Promise<void> {
    if (this.closed) return;
    const wasOpen = this.opened && this.link.isConnected();
    this.release({ farewell: true });
    if (wasOpen) await this.link.call(CLIENT_EVENTS.docClose, { docId: this.docId });
  }

  /**
   * Stops syncing without `doc.close` (the client is going away). With `farewell`, first tells
   * the other editors this client left, instead of letting its awareness state time out (30 s).
   */
  release(opts: { farewell?: boolean } = {}): void {
    if (this.closed) return;
    if (opts.farewell && this.opened) removeAwarenessStates(this.awareness, [this.doc.clientID], 'close');
    this.closed = true;
    this.opened = false;
    clearTimeout(this.retryTimer);
    this.doc.off('update', this.onLocalUpdate);
    this.awareness.off('update', this.onAwarenessChange);
    // Awareness runs a timer until destroyed.
    this.awareness.destroy();
    this.link.released(this);
  }

  private readonly onLocalUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === REMOTE_ORIGIN || this.closed) return;
    this.unacked.push(update);
    this.flush();
  };

  private readonly onAwarenessChange = (
    changes: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    if (origin === REMOTE_ORIGIN || !this.opened) return;
    this.sendAwareness([...changes.added, ...changes.updated, ...changes.removed]);
  };

  /** One update in flight at a time; what accumulates meanwhile goes as one merged update. */
  private flush(): void {
    if (!this.opened || this.sending || this.unacked.length === 0) return;
    clearTimeout(this.retryTimer);
    if (!this.writable) {
      this.unacked = [];
      this.link.report(new AeternaError('FORBIDDEN', `doc ${this.docId} is read-only here: local changes are not sent`, { docId: this.docId }));
      return;
    }
    const batch = this.unacked;
    this.unacked = [];
    const update = batch.length === 1 ? (batch[0] as Uint8Array) : Y.mergeUpdates(batch);
    this.sending = true;
    this.link.call(CLIENT_EVENTS.docUpdate, { docId: this.docId, data: this.link.wireBytes(update) }).then(
      () => {
        this.sending = false;
        this.retries = 0;
        this.flush();
      },
      (err: unknown) => {
        this.sending = false;
        const error = asError(err, `doc.update ${this.docId}`);
        if (!isTransient(error)) {
          this.link.report(error);
          this.flush();
          return;
        }
        // Keep it for the retry or the next doc.open; a repeat is harmless to Yjs.
        this.unacked.unshift(update);
        if (this.link.isConnected()) this.retryTimer = setTimeout(() => this.flush(), this.link.retryDelayMs(this.retries++));
      },
    );
  }

  private sendAwareness(clients: number[]): void {
    this.send(CLIENT_EVENTS.docAwareness, encodeAwarenessUpdate(this.awareness, clients));
  }

  private send(event: string, bytes: Uint8Array): void {
    this.link.call(event, { docId: this.docId, data: this.link.wireBytes(bytes) }).catch((err: unknown) => {
      const error = asError(err, `${event} ${this.docId}`);
      // Awareness and sync replies are re-sent on the next open; only lasting refusals matter.
      if (!isTransient(error)) this.link.report(error);
    });
  }

  private guard(what: string, apply: () => void): void {
    if (this.closed) return;
    try {
      apply();
    } catch (err) {
      this.link.report(asError(err, `${what} ${this.docId}`, 'INVALID_ARGUMENT'));
    }
  }
}

function asError(err: unknown, what: string, code: 'UNAVAILABLE' | 'INVALID_ARGUMENT' = 'UNAVAILABLE'): AeternaError {
  return err instanceof AeternaError ? err : new AeternaError(code, `${what}: ${err instanceof Error ? err.message : String(err)}`);
}
