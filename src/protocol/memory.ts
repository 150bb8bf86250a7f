import { z } from 'zod';

/** Narrowest first: when two layers hold the same thing, the earlier one wins. */
export const LAYERS = ['agent', 'user', 'session', 'project', 'team', 'org', 'company'] as const;
export type Layer = (typeof LAYERS)[number];

/** The request field that names each layer's scope. */
export const SCOPE_FIELD = {
  agent: 'agentId',
  user: 'userId',
  session: 'sessionId',
  project: 'projectId',
  team: 'teamId',
  org: 'orgId',
  company: 'companyId',
} as const satisfies Record<Layer, string>;
export type ScopeField = (typeof SCOPE_FIELD)[Layer];

/** Storage tiers, hottest first: hot and warm live in the table, cold in Parquet behind a stub. */
export const TIERS = ['hot', 'warm', 'cold'] as const;
export type Tier = (typeof TIERS)[number];

export const FEEDBACK_TYPES = ['helpful', 'irrelevant', 'outdated', 'inaccurate', 'duplicate'] as const;
export type FeedbackType = (typeof FEEDBACK_TYPES)[number];

const ID_RULE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const id = z.string().regex(ID_RULE, 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$');
const tag = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[^\p{Cc}\s,]+$/u, 'must be 1-64 characters without whitespace, commas or control characters');
const tags = z.array(tag).max(32);
const layer = z.enum(LAYERS);
const METADATA_MAX_BYTES = 16 * 1024;
const metadata = z
  .record(z.unknown())
  .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= METADATA_MAX_BYTES, {
    message: `must serialise to at most ${METADATA_MAX_BYTES} bytes`,
  })
  .refine((m) => !JSON.stringify(m).includes('\\u0000'), { message: 'must not contain NUL characters' });
const importance = z.number().min(0).max(1);
// PostgreSQL text and jsonb cannot hold NUL; refuse it here with a clear error instead of a 500.
const content = z
  .string()
  .min(1, 'must not be empty')
  .refine((s) => !s.includes('\u0000'), { message: 'must not contain NUL characters' });

export const memoryIdSchema = z.string().uuid('must be a UUID');

export const scopeFieldsSchema = z.object({
  agentId: id.optional(),
  userId: id.optional(),
  sessionId: id.optional(),
  projectId: id.optional(),
  teamId: id.optional(),
  orgId: id.optional(),
  companyId: id.optional(),
});
export type ScopeFields = z.infer<typeof scopeFieldsSchema>;

// .strict(): a misspelt field ("projectID") is an error, not a silently ignored key.
export const addMemorySchema = scopeFieldsSchema
  .extend({
    layer,
    content,
    metadata: metadata.optional(),
    tags: tags.optional(),
    importance: importance.optional(),
  })
  .strict();
export type AddMemoryInput = z.infer<typeof addMemorySchema>;

export const updateMemorySchema = z
  .object({
    version: z.number().int().min(1),
    content: content.optional(),
    metadata: metadata.optional(),
    tags: tags.optional(),
    importance: importance.optional(),
  })
  .strict()
  .refine((u) => u.content !== undefined || u.metadata !== undefined || u.tags !== undefined || u.importance !== undefined, {
    message: 'nothing to update: give content, metadata, tags or importance',
  });
export type UpdateMemoryInput = z.infer<typeof updateMemorySchema>;

export const feedbackSchema = z
  .object({
    type: z.enum(FEEDBACK_TYPES),
    /** Signed strength; defaults to +1 for helpful and -1 for the others. */
    score: z.number().min(-1).max(1).optional(),
    comment: z.string().max(2000).optional(),
  })
  .strict();
export type FeedbackInput = z.infer<typeof feedbackSchema>;

/** Query-string numbers arrive as text; coerce, then range-check. */
const limitParam = (max: number, fallback: number) => z.coerce.number().int().min(1).max(max).default(fallback);

export const listMemoriesSchema = scopeFieldsSchema
  .extend({
    layer: layer.optional(),
    tags: z
      .preprocess((v) => (typeof v === 'string' ? v.split(',').filter((t) => t !== '') : v), tags)
      .optional(),
    limit: limitParam(100, 20),
    cursor: z.string().max(200).optional(),
  })
  .strict();
export type ListMemoriesInput = z.infer<typeof listMemoriesSchema>;

export const searchMemoriesSchema = scopeFieldsSchema
  .extend({
    query: z.string().min(1, 'must not be empty').max(8192),
    layers: z.array(layer).min(1).max(LAYERS.length).optional(),
    tags: tags.optional(),
    limit: z.number().int().min(1).max(100).default(10),
    /** Minimum cosine similarity a result must reach. */
    threshold: z.number().min(0).max(1).default(0),
  })
  .strict();
export type SearchMemoriesInput = z.infer<typeof searchMemoriesSchema>;

export const readEventsSchema = z
  .object({
    since: z.coerce.number().int().min(0).default(0),
    limit: limitParam(1000, 100),
  })
  .strict();
export type ReadEventsInput = z.infer<typeof readEventsSchema>;

export interface Actor {
  userId: string;
  agentId?: string;
}

/** A memory as clients see it (the embedding stays server-side). */
export interface Memory {
  id: string;
  tenantId: string;
  layer: Layer;
  scopeId: string;
  content: string;
  metadata: Record<string, unknown>;
  tags: string[];
  importance: number;
  contentHash: string;
  version: number;
  accessCount: number;
  lastAccessedAt: string | null;
  createdBy: Actor;
  createdAt: string;
  updatedAt: string;
  /**
   * The storage tier this read was served from (src/memory/tiering.ts): a `cold` memory is a stub
   * whose `content` is a short preview and whose `metadata` is archived; a get restores it. Absent
   * on memories inside events written before tiering existed.
   */
  tier?: Tier;
}

/** Every server-to-client event, on every transport (ARCHITECTURE.md). */
export interface EventEnvelope<D = unknown> {
  seq: number;
  id: string;
  tenantId: string;
  type: string;
  at: string;
  actor: Actor;
  data: D;
  traceId: string | null;
}

/**
 * The layer and scope an event belongs to: the memory's for memory events (`data.memory`), else
 * the event's own `data.layer` / `data.scopeId`. Undefined when it names no layer.
 */
export function scopeOfEventData(data: unknown): { layer: string; scopeId: string | undefined } | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const d = data as { memory?: { layer?: unknown; scopeId?: unknown } | null; layer?: unknown; scopeId?: unknown };
  const layer = d.memory?.layer ?? d.layer;
  const scopeId = d.memory?.scopeId ?? d.scopeId;
  if (typeof layer !== 'string') return undefined;
  return { layer, scopeId: typeof scopeId === 'string' ? scopeId : undefined };
}

export const EVENT_TYPES = {
  memoryAdded: 'memory.added',
  memoryUpdated: 'memory.updated',
  memoryDeleted: 'memory.deleted',
  memoryFeedback: 'memory.feedback',
  /** A worker changed the knowledge graph (topic `graph`). */
  graphChanged: 'graph.changed',
  /** A job exhausted its retries and was dead-lettered (topic `jobs`). */
  jobFailed: 'job.failed',
  /** Note-taking: a session began capturing trajectories (or resumed after it ended); session layer. */
  sessionStarted: 'session.started',
  /** Note-taking: a session ended (session.end or the idle sweep); asks for `cca.distill`. */
  sessionEnded: 'session.ended',
  /** Note-taking: a session's distilled note was written (at the note memory's layer). */
  noteCreated: 'note.created',
  /** Hindsight: an error pattern with a working resolution was promoted to the team layer. */
  hindsightPattern: 'hindsight.pattern',
  /** A memory's summaries were (re)made for its current content: data {memoryId, layer, scopeId, contentHash, summarizer, levels}. */
  summaryReady: 'summary.ready',
  /** A tenant's token usage reached the warning fraction (80 %) of a limit: once per (kind, period). */
  budgetWarning: 'budget.warning',
  /** A tenant's token usage reached a limit (or a call was refused at it): once per (kind, period). */
  budgetExceeded: 'budget.exceeded',
  /** A memory moved between storage tiers: data {id, layer, scopeId, from, to}. */
  memoryTiered: 'memory.tiered',
  /** Meta-Agent (topic `meta`): a run was accepted; asks for the `cca.meta` job that runs it. */
  metaStarted: 'meta.started',
  /** Meta-Agent: an iteration's candidate (phase build/improve) or its test result (phase test). */
  metaIteration: 'meta.iteration',
  /** Meta-Agent: the caller is the test; answer with `meta.testResult`. */
  metaTest: 'meta.test',
  /** Meta-Agent: the run stopped (passed, or failed with an escalation report, or cancelled). */
  metaFinished: 'meta.finished',
} as const;
