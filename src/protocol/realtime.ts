import { z } from 'zod';
import type { WireError } from './errors.js';
import { LAYERS, scopeFieldsSchema, type EventEnvelope } from './memory.js';

/**
 * The socket protocol: what clients send (each with an ack) and what the server pushes. Both
 * socket.io endpoints (msgpack and JSON) speak exactly these events.
 */
export const SOCKET_PATHS = {
  /** socket.io with the msgpackr parser: the TypeScript client. */
  msgpack: '/socket.io',
  /** socket.io's default JSON parser: browsers without the parser, python-socketio, other languages. */
  json: '/socket.io-json',
} as const;

/** Client → server events; every one takes an ack callback. */
export const CLIENT_EVENTS = {
  sessionJoin: 'session.join',
  sessionLeave: 'session.leave',
  presenceUpdate: 'presence.update',
  subscribe: 'subscribe',
  unsubscribe: 'unsubscribe',
  eventsRead: 'events.read',
  memoryAdd: 'memory.add',
  memoryGet: 'memory.get',
  memoryList: 'memory.list',
  memorySearch: 'memory.search',
  memoryUpdate: 'memory.update',
  memoryDelete: 'memory.delete',
  memoryFeedback: 'memory.feedback',
  docOpen: 'doc.open',
  docSync: 'doc.sync',
  docUpdate: 'doc.update',
  docAwareness: 'doc.awareness',
  docClose: 'doc.close',
  graphNode: 'graph.node',
  graphNeighbors: 'graph.neighbors',
  graphPath: 'graph.path',
  graphRelated: 'graph.related',
  graphSearch: 'graph.search',
  graphUpsertNode: 'graph.upsertNode',
  graphUpsertEdge: 'graph.upsertEdge',
  /** Admin: write a snapshot of the tenant's graph now. */
  graphSnapshot: 'graph.snapshot',
  /** Note-taking: record one tool call (or `{events: [...]}`) of a session. */
  trajectoryCapture: 'trajectory.capture',
  /** Note-taking: the session is over; its trajectory is distilled into a note. */
  sessionEnd: 'session.end',
  hindsightReport: 'hindsight.report',
  hindsightQuery: 'hindsight.query',
  hindsightResolve: 'hindsight.resolve',
  /** Context Architect: pack the memories relevant to a query into a token budget. */
  contextAssemble: 'context.assemble',
  /** A memory's three summary levels. */
  memorySummaries: 'memory.summaries',
  /** Admin: the tenant's token budgets (limits, usage, resets). */
  budgetGet: 'budget.get',
  /** Admin: set or clear the tenant's budget overrides. */
  budgetSet: 'budget.set',
  /** Admin: token usage plus the embedding cache's hit/miss counters. */
  usageGet: 'usage.get',
  /** Meta-Agent: start a build → test → improve run; progress streams on the `meta` topic. */
  metaRun: 'meta.run',
  /** Meta-Agent: a run's state and iterations. */
  metaGet: 'meta.get',
  /** Meta-Agent: the tenant's recent runs, `{status?, limit?}`. */
  metaList: 'meta.list',
  /** Meta-Agent: the caller's verdict on a candidate sent as `meta.test`. */
  metaTestResult: 'meta.testResult',
  metaCancel: 'meta.cancel',
} as const;

/** Server → client events besides the memory event types of EVENT_TYPES. */
export const SERVER_EVENTS = {
  presenceJoined: 'presence.joined',
  presenceLeft: 'presence.left',
  presenceUpdated: 'presence.updated',
  docSync: 'doc.sync',
  docUpdate: 'doc.update',
  docAwareness: 'doc.awareness',
  resyncRequired: 'resync.required',
  /** Sent before a node drains: reconnect (to another node) and resume from your seq. */
  serverShutdown: 'server.shutdown',
  /** Redis came back after an outage: live delivery may have dropped events, resume from your seq. */
  streamCheck: 'stream.check',
  /** Sent just before the server closes this connection: `{code, retry}` from CLOSE_REASONS. */
  serverClose: 'server.close',
  /** An error for a call made without an ack callback: `{event, code, message, details?}`. */
  error: 'aeterna.error',
} as const;

/** Every ack: a result or a wire error, never both. */
export type Ack<T> = { ok: true; data: T } | { ok: false; error: WireError };

/** Presence statuses; `offline` is never set by a client, it is what `left` means. */
export const PRESENCE_STATUSES = ['online', 'away', 'busy', 'thinking', 'tool-calling'] as const;
export type PresenceStatus = (typeof PRESENCE_STATUSES)[number];

const ID_RULE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const id = z.string().regex(ID_RULE, 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$');
const META_MAX_BYTES = 4 * 1024;
const smallObject = z
  .record(z.unknown())
  .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= META_MAX_BYTES, { message: `must serialise to at most ${META_MAX_BYTES} bytes` });

export const sessionJoinSchema = z
  .object({
    sessionId: id,
    status: z.enum(PRESENCE_STATUSES).default('online'),
    activity: z.string().max(200).optional(),
    meta: smallObject.optional(),
  })
  .strict();
export type SessionJoinInput = z.infer<typeof sessionJoinSchema>;

export const sessionLeaveSchema = z.object({ sessionId: id }).strict();

export const presenceUpdateSchema = z
  .object({
    sessionId: id,
    status: z.enum(PRESENCE_STATUSES),
    activity: z.string().max(200).optional(),
    meta: smallObject.optional(),
  })
  .strict();
export type PresenceUpdateInput = z.infer<typeof presenceUpdateSchema>;

/** One member of a session as every node sees it. */
export interface PresenceMember {
  /** userId, plus `/agentId` for agents: one agent with two connections is one member. */
  memberId: string;
  userId: string;
  agentId?: string;
  status: PresenceStatus;
  activity?: string;
  meta?: Record<string, unknown>;
  /** How many connections this member holds in the session, across nodes. */
  connections: number;
  joinedAt: string;
  updatedAt: string;
}

/** Tenant-wide event streams a client can subscribe to, beside its layers. */
export const TOPICS = ['graph', 'jobs', 'budget', 'meta'] as const;
export type Topic = (typeof TOPICS)[number];

export const subscribeSchema = z
  .object({
    layers: z.array(z.enum(LAYERS)).min(1).max(LAYERS.length).optional(),
    /** Scope ids narrowing layers, as in REST (`projectId`, `teamId`, …). */
    scopes: scopeFieldsSchema.strict().optional(),
    /** Tenant-wide topics: `graph` (graph.changed), `jobs` (job.failed), `budget` (budget.*), `meta` (meta.*). */
    topics: z.array(z.enum(TOPICS)).min(1).max(TOPICS.length).optional(),
    /** Explicit room names (`t:{tenant}:layer:{layer}:{scope}`, `t:{tenant}:session:{id}`, `t:{tenant}:doc:{id}`, `t:{tenant}:topic:{topic}`). */
    rooms: z.array(z.string().max(300)).max(100).optional(),
    /** The last seq this client saw: the gap after it is replayed before live events. */
    since: z.number().int().min(0).optional(),
    /** The epoch `since` belongs to; a different current epoch means history was lost. */
    epoch: z.string().max(100).optional(),
  })
  .strict()
  .refine((s) => s.layers !== undefined || s.rooms !== undefined || s.topics !== undefined, { message: 'give layers, topics or rooms' });
export type SubscribeInput = z.infer<typeof subscribeSchema>;

export interface SubscribeResult {
  rooms: string[];
  /** The stream position the replay reached; live events follow it. */
  head: number;
  epoch: string | null;
  /** True when every event after `since` matching the subscription is in `events`. */
  recovered: boolean;
  /** The replayed gap, in seq order (empty without `since`). */
  events: EventEnvelope[];
}

export interface ResyncRequired {
  reason: 'epoch_changed' | 'gap_too_large';
  epoch: string | null;
  head: number;
  /** What the client should reload from REST or `memory.list` before going live again. */
  reload: string[];
}

export const docIdSchema = id;
export const docOpenSchema = z.object({ docId: id }).strict();
/** Yjs messages travel as bytes: Uint8Array/Buffer on msgpack, base64 strings on JSON. */
export const docMessageSchema = z
  .object({
    docId: id,
    /** A Yjs update (doc.update), y-protocols sync message (doc.sync) or awareness update (doc.awareness). */
    data: z.union([z.instanceof(Uint8Array), z.string().max(8 * 1024 * 1024)]),
  })
  .strict();
export type DocMessageInput = z.infer<typeof docMessageSchema>;

/** Why the server closed a connection, and whether the client should come back. */
export const CLOSE_REASONS = {
  /** Reconnect and resume. */
  serverShutdown: { code: 'server_shutdown', retry: true },
  slowConsumer: { code: 'slow_consumer', retry: true },
  idle: { code: 'idle_timeout', retry: true },
  /** Do not retry without a new token / different request. */
  tokenExpired: { code: 'token_expired', retry: false },
  unauthenticated: { code: 'unauthenticated', retry: false },
  forbidden: { code: 'forbidden', retry: false },
  tenantConnectionLimit: { code: 'tenant_connection_limit', retry: false },
} as const;
export type CloseReason = (typeof CLOSE_REASONS)[keyof typeof CLOSE_REASONS];
