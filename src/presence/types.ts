import type { PresenceMember, PresenceStatus } from '../protocol/index.js';

/** One socket in one session, as the gateway knows it from the verified token. */
export interface PresenceConnection {
  tenantId: string;
  sessionId: string;
  /** The socket's id; unique across nodes (socket.io ids are random). */
  connectionId: string;
  userId: string;
  agentId?: string;
}

/** The connection of an earlier `join`: its member identity is fixed then, so later calls name only the connection. */
export type PresenceConnectionRef = Pick<PresenceConnection, 'tenantId' | 'sessionId' | 'connectionId'>;

/**
 * What a connection says about itself; a member shows the state its most recently changed
 * connection set. Omitting `activity` clears it, omitting `meta` keeps the previous meta.
 */
export interface PresenceState {
  status: PresenceStatus;
  activity?: string;
  meta?: Record<string, unknown>;
}

export type PresenceChangeKind = 'joined' | 'updated' | 'left';

/**
 * What other members of the session should be told. `left` carries the member as it was last
 * seen, with `connections: 0`; `updated` also covers a connection count change.
 */
export interface PresenceChange {
  kind: PresenceChangeKind;
  tenantId: string;
  sessionId: string;
  member: PresenceMember;
}

export interface PresenceJoinResult {
  /** The caller's member after the join, aggregated over all its connections. */
  member: PresenceMember;
  /** Everyone in the session, the caller included. */
  members: PresenceMember[];
  /** `joined` for the member's first connection, `updated` when it already had one, none when nothing visible changed. */
  change: PresenceChange | undefined;
}

export interface PresenceUpdateResult {
  member: PresenceMember;
  /** None when the new state equals the old one: repeating a status announces nothing. */
  change: PresenceChange | undefined;
}

export type PresenceListener = (change: PresenceChange) => void;

/**
 * Who is in which session, shared by every node of a deployment. One narrow interface, one
 * implementation per backend (in-process maps for embedded mode, Redis for cluster mode), so the
 * gateway never knows which one it runs on.
 *
 * Every change is delivered exactly once in the whole deployment: either as the result of the
 * call that caused it, or — for changes a node discovers rather than causes (another node's
 * connections expiring, its own connections restored after a Redis partition) — to the
 * `onChange` listeners of the one node that discovered it.
 */
export interface PresenceRegistry {
  readonly nodeId: string;
  /** Starts the heartbeat and the sweeper. Idempotent. */
  start(): Promise<void>;
  /** Adds the connection to the session, or replaces its state when it had already joined. */
  join(conn: PresenceConnection, state: PresenceState): Promise<PresenceJoinResult>;
  /** Undefined when this connection has not joined the session (on this node). */
  update(conn: PresenceConnectionRef, state: PresenceState): Promise<PresenceUpdateResult | undefined>;
  /** `left` when it was the member's last connection, `updated` otherwise; undefined when it was not in the session. */
  leave(conn: PresenceConnectionRef): Promise<PresenceChange | undefined>;
  /**
   * Everyone in the session. Expired connections are purged (and announced) first, except
   * shortly after Redis trouble, when an expiry may only mean a heartbeat could not land.
   */
  members(tenantId: string, sessionId: string): Promise<PresenceMember[]>;
  /** Subscribes to discovered changes; returns the unsubscribe function. */
  onChange(listener: PresenceListener): () => void;
  /** For SIGTERM: removes every connection this node holds at once and returns what that changed. */
  removeOwn(): Promise<PresenceChange[]>;
  /**
   * Stops the timers and releases the backend. Does not remove this node's connections: call
   * `removeOwn()` first on a graceful shutdown. Without it they expire and other nodes announce
   * them as left, exactly as after a kill -9 (the tests simulate a dead node this way). Idempotent.
   */
  close(): Promise<void>;
}
