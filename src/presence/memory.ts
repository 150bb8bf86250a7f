import type { PresenceMember } from '../protocol/index.js';
import { assertId } from '../tenancy/index.js';
import {
  assertSameMember,
  buildEntry,
  changeOf,
  checkConnection,
  checkRef,
  checkState,
  connectionOf,
  groupByMember,
  membersOf,
  putOutcome,
  type ConnectionEntry,
} from './members.js';
import type {
  PresenceChange,
  PresenceConnection,
  PresenceConnectionRef,
  PresenceJoinResult,
  PresenceListener,
  PresenceRegistry,
  PresenceState,
  PresenceUpdateResult,
} from './types.js';

interface Session {
  tenantId: string;
  sessionId: string;
  /** connectionId → record */
  entries: Map<string, ConnectionEntry>;
}

/** Tenant and session ids cannot contain ':', so the pair maps to one key unambiguously. */
function sessionKey(tenantId: string, sessionId: string): string {
  return `${tenantId}:${sessionId}`;
}

function entriesOf(session: Session, memberId: string): ConnectionEntry[] {
  return [...session.entries.values()].filter((e) => e.memberId === memberId);
}

/**
 * Embedded mode: one process holds every socket, so its maps are the whole truth. Nothing can
 * expire (a disconnect always reaches `leave`), which is why there are no timers and listeners
 * never fire; `onChange` exists so the gateway is wired the same way in both modes.
 */
export class MemoryPresenceRegistry implements PresenceRegistry {
  readonly nodeId: string;
  private readonly sessions = new Map<string, Session>();
  private readonly now: () => Date;

  constructor(opts: { nodeId?: string; now?: () => Date } = {}) {
    this.nodeId = assertId('nodeId', opts.nodeId ?? 'embedded');
    this.now = opts.now ?? (() => new Date());
  }

  async start(): Promise<void> {}

  async join(conn: PresenceConnection, state: PresenceState): Promise<PresenceJoinResult> {
    const c = checkConnection(conn);
    const s = checkState(state);
    const key = sessionKey(c.tenantId, c.sessionId);
    let session = this.sessions.get(key);
    if (!session) {
      session = { tenantId: c.tenantId, sessionId: c.sessionId, entries: new Map() };
      this.sessions.set(key, session);
    }
    const previous = session.entries.get(c.connectionId);
    assertSameMember(previous, c);
    const result = this.put(session, buildEntry(c, s, this.nodeId, previous, this.now()));
    return { ...result, members: membersOf(session.entries.values()) };
  }

  async update(ref: PresenceConnectionRef, state: PresenceState): Promise<PresenceUpdateResult | undefined> {
    const r = checkRef(ref);
    const s = checkState(state);
    const session = this.sessions.get(sessionKey(r.tenantId, r.sessionId));
    const previous = session?.entries.get(r.connectionId);
    if (!session || !previous) return undefined;
    return this.put(session, buildEntry(connectionOf(r, previous), s, this.nodeId, previous, this.now()));
  }

  async leave(ref: PresenceConnectionRef): Promise<PresenceChange | undefined> {
    const r = checkRef(ref);
    const key = sessionKey(r.tenantId, r.sessionId);
    const session = this.sessions.get(key);
    const entry = session?.entries.get(r.connectionId);
    if (!session || !entry) return undefined;
    const before = entriesOf(session, entry.memberId);
    session.entries.delete(r.connectionId);
    if (session.entries.size === 0) this.sessions.delete(key);
    return changeOf(r.tenantId, r.sessionId, before, entriesOf(session, entry.memberId), this.now());
  }

  async members(tenantId: string, sessionId: string): Promise<PresenceMember[]> {
    const session = this.sessions.get(sessionKey(assertId('tenantId', tenantId), assertId('sessionId', sessionId)));
    return session ? membersOf(session.entries.values()) : [];
  }

  onChange(_listener: PresenceListener): () => void {
    return () => undefined;
  }

  async removeOwn(): Promise<PresenceChange[]> {
    const now = this.now();
    const changes: PresenceChange[] = [];
    for (const session of this.sessions.values()) {
      for (const before of groupByMember(session.entries.values()).values()) {
        const change = changeOf(session.tenantId, session.sessionId, before, [], now);
        if (change) changes.push(change);
      }
    }
    this.sessions.clear();
    return changes;
  }

  async close(): Promise<void> {
    this.sessions.clear();
  }

  private put(session: Session, entry: ConnectionEntry): PresenceUpdateResult {
    const before = entriesOf(session, entry.memberId);
    session.entries.set(entry.connectionId, entry);
    return putOutcome(session, before, entriesOf(session, entry.memberId));
  }
}
