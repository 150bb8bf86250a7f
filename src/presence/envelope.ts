import { randomUUID } from 'node:crypto';
import { SERVER_EVENTS, type EventEnvelope, type PresenceMember } from '../protocol/index.js';
import type { PresenceChange, PresenceChangeKind } from './types.js';

export const PRESENCE_EVENT_TYPES: Record<PresenceChangeKind, string> = {
  joined: SERVER_EVENTS.presenceJoined,
  updated: SERVER_EVENTS.presenceUpdated,
  left: SERVER_EVENTS.presenceLeft,
};

export interface PresenceEventData {
  sessionId: string;
  member: PresenceMember;
}

/**
 * Presence events are ephemeral: they are not in the replayable event log, so they carry no
 * stream position (`seq: null`) and a client must not advance its resume cursor on them.
 */
export type PresenceEnvelope = Omit<EventEnvelope<PresenceEventData>, 'seq'> & { seq: null };

export function presenceEnvelope(change: PresenceChange, traceId: string | null = null): PresenceEnvelope {
  const { member } = change;
  return {
    seq: null,
    id: randomUUID(),
    tenantId: change.tenantId,
    type: PRESENCE_EVENT_TYPES[change.kind],
    at: new Date().toISOString(),
    actor: member.agentId === undefined ? { userId: member.userId } : { userId: member.userId, agentId: member.agentId },
    data: { sessionId: change.sessionId, member },
    traceId,
  };
}
