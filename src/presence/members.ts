import { z } from 'zod';
import { AeternaError, PRESENCE_STATUSES, parseInput, presenceUpdateSchema, type PresenceMember } from '../protocol/index.js';
import { assertId } from '../tenancy/index.js';
import type { PresenceChange, PresenceConnection, PresenceConnectionRef, PresenceState } from './types.js';

/**
 * One connection's record, as stored by every backend. The member a client sees is an
 * aggregate of the records sharing a `memberId`.
 */
export interface ConnectionEntry {
  connectionId: string;
  memberId: string;
  userId: string;
  agentId?: string;
  status: PresenceState['status'];
  activity?: string;
  meta?: Record<string, unknown>;
  /** The node holding the socket: only that node heartbeats it. */
  nodeId: string;
  joinedAt: string;
  /** When the state last changed; decides which connection's state the member shows. */
  updatedAt: string;
}

/** Entries come back from a store other processes write to, so they are checked, not trusted. */
export const connectionEntrySchema: z.ZodType<ConnectionEntry> = z.object({
  connectionId: z.string(),
  memberId: z.string(),
  userId: z.string(),
  agentId: z.string().optional(),
  status: z.enum(PRESENCE_STATUSES),
  activity: z.string().optional(),
  meta: z.record(z.unknown()).optional(),
  nodeId: z.string(),
  joinedAt: z.string(),
  updatedAt: z.string(),
});

/**
 * socket.io ids are base64url and may start with `-` or `_`, which the general id rule forbids;
 * what matters here is that they cannot contain a space (the Redis member index separator) or a
 * colon (the key separator).
 */
export const CONNECTION_ID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

const presenceStateSchema = presenceUpdateSchema.omit({ sessionId: true });

/** `userId`, or `userId/agentId`: `/` cannot occur in ids, so the two forms never collide. */
export function memberIdOf(userId: string, agentId?: string): string {
  return agentId === undefined ? userId : `${userId}/${agentId}`;
}

export function checkRef(ref: PresenceConnectionRef): PresenceConnectionRef {
  if (typeof ref.connectionId !== 'string' || !CONNECTION_ID_PATTERN.test(ref.connectionId)) {
    throw new AeternaError('INVALID_ARGUMENT', `connectionId must match ${CONNECTION_ID_PATTERN.source}`, { field: 'connectionId' });
  }
  return { tenantId: assertId('tenantId', ref.tenantId), sessionId: assertId('sessionId', ref.sessionId), connectionId: ref.connectionId };
}

export function checkConnection(conn: PresenceConnection): PresenceConnection {
  const checked: PresenceConnection = { ...checkRef(conn), userId: assertId('userId', conn.userId) };
  if (conn.agentId !== undefined) checked.agentId = assertId('agentId', conn.agentId);
  return checked;
}

/** The same rules as the socket payloads, so a caller that skipped them cannot store anything else. */
export function checkState(state: PresenceState): PresenceState {
  return parseInput(presenceStateSchema, state, 'presence state');
}

function sameState(a: PresenceState, b: PresenceState): boolean {
  return a.status === b.status && a.activity === b.activity && (b.meta === undefined || JSON.stringify(a.meta) === JSON.stringify(b.meta));
}

/**
 * The connection's new record. `activity` describes the status, so a state without one clears
 * it; `meta` (display name, colour, …) rarely changes, so a state without one keeps the old.
 * `updatedAt` moves only when the state really changed.
 */
export function buildEntry(conn: PresenceConnection, state: PresenceState, nodeId: string, previous: ConnectionEntry | undefined, now: Date): ConnectionEntry {
  const at = now.toISOString();
  const entry: ConnectionEntry = {
    connectionId: conn.connectionId,
    memberId: memberIdOf(conn.userId, conn.agentId),
    userId: conn.userId,
    status: state.status,
    nodeId,
    joinedAt: previous?.joinedAt ?? at,
    updatedAt: previous && sameState(previous, state) ? previous.updatedAt : at,
  };
  if (conn.agentId !== undefined) entry.agentId = conn.agentId;
  if (state.activity !== undefined) entry.activity = state.activity;
  const meta = state.meta ?? previous?.meta;
  if (meta !== undefined) entry.meta = meta;
  return entry;
}

/** The identity recorded at join; a later call for the same connection id must not change it. */
export function connectionOf(ref: PresenceConnectionRef, entry: ConnectionEntry): PresenceConnection {
  return entry.agentId === undefined
    ? { ...ref, userId: entry.userId }
    : { ...ref, userId: entry.userId, agentId: entry.agentId };
}

export function assertSameMember(entry: ConnectionEntry | undefined, conn: PresenceConnection): void {
  if (entry && entry.memberId !== memberIdOf(conn.userId, conn.agentId)) {
    throw new AeternaError('INVALID_ARGUMENT', 'this connection already joined the session as another member', { connectionId: conn.connectionId });
  }
}

/** Newest state wins; ties go to the later connection id so every node picks the same one. */
function newer(a: ConnectionEntry, b: ConnectionEntry): ConnectionEntry {
  if (a.updatedAt !== b.updatedAt) return a.updatedAt > b.updatedAt ? a : b;
  return a.connectionId > b.connectionId ? a : b;
}

/** A member as clients see it, from its connections' records; undefined when there are none. */
export function memberOf(entries: readonly ConnectionEntry[]): PresenceMember | undefined {
  const [first, ...rest] = entries;
  if (!first) return undefined;
  const latest = rest.reduce(newer, first);
  const joinedAt = rest.reduce((min, e) => (e.joinedAt < min ? e.joinedAt : min), first.joinedAt);
  const member: PresenceMember = {
    memberId: latest.memberId,
    userId: latest.userId,
    status: latest.status,
    connections: entries.length,
    joinedAt,
    updatedAt: latest.updatedAt,
  };
  if (latest.agentId !== undefined) member.agentId = latest.agentId;
  if (latest.activity !== undefined) member.activity = latest.activity;
  if (latest.meta !== undefined) member.meta = latest.meta;
  return member;
}

/** memberId → that member's records (Map.groupBy arrives only in Node 21). */
export function groupByMember(entries: Iterable<ConnectionEntry>): Map<string, ConnectionEntry[]> {
  const byMember = new Map<string, ConnectionEntry[]>();
  for (const entry of entries) {
    const list = byMember.get(entry.memberId);
    if (list) list.push(entry);
    else byMember.set(entry.memberId, [entry]);
  }
  return byMember;
}

/** Every member of a session, oldest first, so all nodes list them in the same order. */
export function membersOf(entries: Iterable<ConnectionEntry>): PresenceMember[] {
  const members: PresenceMember[] = [];
  for (const list of groupByMember(entries).values()) {
    const member = memberOf(list);
    if (member) members.push(member);
  }
  return members.sort((a, b) => (a.joinedAt === b.joinedAt ? (a.memberId < b.memberId ? -1 : 1) : a.joinedAt < b.joinedAt ? -1 : 1));
}

/**
 * What one member's clients should hear after its connections went from `before` to `after`.
 * `before` includes expired records nobody has purged yet: until someone announces a member as
 * left, clients still show it, so a connection replacing an expired one is an update, not a join.
 */
export function changeOf(
  tenantId: string,
  sessionId: string,
  before: readonly ConnectionEntry[],
  after: readonly ConnectionEntry[],
  now: Date,
): PresenceChange | undefined {
  const was = memberOf(before);
  const is = memberOf(after);
  if (is) {
    if (!was) return { kind: 'joined', tenantId, sessionId, member: is };
    return JSON.stringify(was) === JSON.stringify(is) ? undefined : { kind: 'updated', tenantId, sessionId, member: is };
  }
  if (!was) return undefined;
  return { kind: 'left', tenantId, sessionId, member: { ...was, connections: 0, updatedAt: now.toISOString() } };
}

/** What a join or update tells its caller: its member after the put (it always has one), and the change. */
export function putOutcome(
  session: Pick<PresenceConnectionRef, 'tenantId' | 'sessionId'>,
  before: readonly ConnectionEntry[],
  after: readonly ConnectionEntry[],
): { member: PresenceMember; change: PresenceChange | undefined } {
  // A put leaves its member at least one connection, so `after` is never empty and the
  // departure time changeOf would stamp is never used.
  return { member: memberOf(after) as PresenceMember, change: changeOf(session.tenantId, session.sessionId, before, after, new Date()) };
}

/** Calls every listener; one that throws must not keep the others (or a sweep) from running. */
export function notify(listeners: Iterable<(change: PresenceChange) => void>, changes: readonly PresenceChange[], log: PresenceLog): void {
  for (const change of changes) {
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (err) {
        log('presence listener failed', err);
      }
    }
  }
}

/** Where background failures go: timers must never reject unhandled, and silence would hide an outage. */
export type PresenceLog = (message: string, err?: unknown) => void;

export const defaultPresenceLog: PresenceLog = (message, err) => {
  console.error(`[presence] ${message}`, err instanceof Error ? err.message : (err ?? ''));
};
