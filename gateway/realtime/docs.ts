import { AwarenessMerger, REMOVED_STATE, readAwarenessUpdate, type AwarenessEntry, type DocStore } from '../../src/docs/index.js';
import { AeternaError, CLIENT_EVENTS, SERVER_EVENTS, docMessageSchema, docOpenSchema } from '../../src/protocol/index.js';
import { actorOf, hasPermission, requirePermission } from '../../src/tenancy/index.js';
import { Rooms, type Broadcaster, type Connection, type RealtimeExtension } from './types.js';

export const DEFAULT_AWARENESS_WINDOW_MS = 50;
export const DEFAULT_MAX_AWARENESS_BYTES = 64 * 1024;
/** A page holds one awareness client per document; more than this is not worth tracking for cleanup. */
const MAX_TRACKED_CLIENTS = 64;

export interface DocsExtensionOptions {
  /** Awareness updates of one document arriving within this window go out as one merged update. */
  awarenessWindowMs?: number;
  /** A larger awareness update is refused with PAYLOAD_TOO_LARGE. */
  maxAwarenessBytes?: number;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The bytes of a doc message. Binary arrives as a Buffer on both endpoints (msgpack `bin`, or a
 * socket.io binary attachment on the JSON one); base64 text is accepted for JSON clients that
 * would rather not send attachments. Base64 is checked strictly because Node's decoder silently
 * skips characters it does not know, which would turn a typo into a different update.
 */
export function bytesOf(data: Uint8Array | string): Uint8Array {
  if (typeof data !== 'string') return data;
  if (!BASE64.test(data)) throw new AeternaError('INVALID_ARGUMENT', 'data must be bytes or a base64 string', { field: 'data' });
  return Buffer.from(data, 'base64');
}

/** A document one connection has open: the awareness clients it announced, with their last clock. */
type OpenDoc = Map<number, number>;

interface PendingAwareness {
  docId: string;
  merger: AwarenessMerger;
  timer: NodeJS.Timeout;
}

/**
 * Shared Yjs documents over the socket. The gateway relays and never holds a document: state is
 * read from the DocStore when asked for and every update is committed there before it is relayed,
 * so any node can serve any document and a late joiner on another node converges.
 *
 * Bytes go out as binary (Uint8Array) on both endpoints: msgpack carries them as `bin` and
 * socket.io's JSON parser as binary attachments, which every socket.io client decodes.
 *
 * Events (payloads `{docId, data}`; every one acks):
 * - `doc.open {docId}` → `{docId, state, writable}`: joins the document's room; `state` is the whole
 *   document as one Yjs update. The room is joined before the read, so an update committed in
 *   between arrives live too (Yjs ignores the duplicate).
 * - `doc.sync {docId, data: y-protocols sync message}` → `{docId, data: step 2 | null, step1 | null}`:
 *   a step 1 gets step 2 and the server's step 1; a step 2 or update is stored and relayed. Clients
 *   should send a step 1 after reconnecting or on `stream.check`: live relay is at-most-once.
 * - `doc.update {docId, data: Yjs update}` → `{docId, seq}` once committed; relayed to the room
 *   (all nodes) except the sender. Needs memory:write.
 * - `doc.awareness {docId, data: awareness update}` → `{docId}`; not stored. Merged per document for
 *   `awarenessWindowMs` and sent to the whole room as one update (senders included: applying
 *   your own entry again is a no-op).
 * - `doc.close {docId}` → `{docId, closed}`. Closing or disconnecting announces the connection's
 *   awareness clients as gone, so other editors drop its cursor at once instead of after 30 s.
 */
export function createDocsExtension(store: DocStore, broadcaster: Broadcaster, opts: DocsExtensionOptions = {}): RealtimeExtension {
  const windowMs = opts.awarenessWindowMs ?? DEFAULT_AWARENESS_WINDOW_MS;
  const maxAwarenessBytes = opts.maxAwarenessBytes ?? DEFAULT_MAX_AWARENESS_BYTES;
  const pending = new Map<string, PendingAwareness>();
  const connections = new Map<string, Map<string, OpenDoc>>();
  let closed = false;

  function flush(room: string): void {
    const batch = pending.get(room);
    if (!batch) return;
    pending.delete(room);
    clearTimeout(batch.timer);
    const data = batch.merger.take();
    if (data) broadcaster.toRooms([room], SERVER_EVENTS.docAwareness, { docId: batch.docId, data });
  }

  function queueAwareness(tenantId: string, docId: string, entries: readonly AwarenessEntry[]): void {
    if (entries.length === 0 || closed) return;
    const room = Rooms.doc(tenantId, docId);
    let batch = pending.get(room);
    if (!batch) {
      const timer = setTimeout(() => flush(room), windowMs);
      // A pending cursor move is no reason to keep a process alive.
      timer.unref();
      batch = { docId, merger: new AwarenessMerger(), timer };
      pending.set(room, batch);
    }
    batch.merger.add(entries);
  }

  function track(open: OpenDoc, entries: readonly AwarenessEntry[]): void {
    for (const { clientId, clock, state } of entries) {
      if (state === REMOVED_STATE) open.delete(clientId);
      else if (open.has(clientId) || open.size < MAX_TRACKED_CLIENTS) open.set(clientId, Math.max(clock, open.get(clientId) ?? 0));
    }
  }

  function announceDeparture(tenantId: string, docId: string, open: OpenDoc): void {
    queueAwareness(
      tenantId,
      docId,
      [...open].map(([clientId, clock]) => ({ clientId, clock: clock + 1, state: REMOVED_STATE })),
    );
  }

  return {
    name: 'docs',

    onConnection(conn: Connection) {
      const { tenant } = conn;
      const { tenantId } = tenant;
      const writable = hasPermission(tenant, 'memory:write');
      const actor = actorOf(tenant);
      const docs = new Map<string, OpenDoc>();
      connections.set(conn.id, docs);

      const requireOpen = (docId: string): OpenDoc => {
        const open = docs.get(docId);
        if (!open) throw new AeternaError('INVALID_ARGUMENT', `send doc.open for ${docId} first`, { docId, reason: 'not_open' });
        return open;
      };
      const relay = (docId: string, data: Uint8Array): void =>
        broadcaster.toRooms([Rooms.doc(tenantId, docId)], SERVER_EVENTS.docUpdate, { docId, data }, { exceptConnectionId: conn.id });

      conn.handle(CLIENT_EVENTS.docOpen, docOpenSchema, async ({ docId }) => {
        requirePermission(tenant, 'memory:read');
        const room = Rooms.doc(tenantId, docId);
        const reopened = docs.has(docId);
        await conn.join(room);
        try {
          const state = await store.load(tenantId, docId);
          if (!reopened) docs.set(docId, new Map());
          return { docId, state, writable };
        } catch (err) {
          if (!reopened) await conn.leave(room);
          throw err;
        }
      });

      conn.handle(CLIENT_EVENTS.docSync, docMessageSchema, async ({ docId, data }) => {
        requireOpen(docId);
        const result = await store.syncReply(tenantId, docId, bytesOf(data), actor, { readOnly: !writable });
        if (result.stored) relay(docId, result.stored.update);
        return { docId, data: result.reply, step1: result.step1 };
      });

      conn.handle(CLIENT_EVENTS.docUpdate, docMessageSchema, async ({ docId, data }) => {
        requirePermission(tenant, 'memory:write');
        requireOpen(docId);
        const update = bytesOf(data);
        const { seq } = await store.append(tenantId, docId, update, actor);
        if (seq !== null) relay(docId, update);
        return { docId, seq };
      });

      conn.handle(CLIENT_EVENTS.docAwareness, docMessageSchema, async ({ docId, data }) => {
        const open = requireOpen(docId);
        const update = bytesOf(data);
        if (update.byteLength > maxAwarenessBytes) {
          throw new AeternaError('PAYLOAD_TOO_LARGE', `an awareness update may be at most ${maxAwarenessBytes} bytes`, {
            limit: maxAwarenessBytes,
            size: update.byteLength,
          });
        }
        const entries = readAwarenessUpdate(update);
        track(open, entries);
        queueAwareness(tenantId, docId, entries);
        return { docId };
      });

      conn.handle(CLIENT_EVENTS.docClose, docOpenSchema, async ({ docId }) => {
        const open = docs.get(docId);
        if (!open) return { docId, closed: false };
        docs.delete(docId);
        announceDeparture(tenantId, docId, open);
        await conn.leave(Rooms.doc(tenantId, docId));
        return { docId, closed: true };
      });
    },

    // Nothing is persisted per connection; only the awareness of its clients has to be retracted.
    onDisconnect(conn: Connection) {
      const docs = connections.get(conn.id);
      connections.delete(conn.id);
      for (const [docId, open] of docs ?? []) announceDeparture(conn.tenant.tenantId, docId, open);
    },

    async drain() {
      for (const room of [...pending.keys()]) flush(room);
    },

    async close() {
      closed = true;
      for (const batch of pending.values()) clearTimeout(batch.timer);
      pending.clear();
      connections.clear();
    },
  };
}
