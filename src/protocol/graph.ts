import { z } from 'zod';

/**
 * The knowledge graph's wire shapes: input schemas every transport validates with, and what the
 * graph API answers. Store methods parse their raw input with these themselves.
 */

// The shared id rule (ARCHITECTURE.md); graph node and edge ids follow it too.
const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$');
/** Kinds and relations are short words that also read well in a room or metric name. */
const word = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, 'must be 1-64 of A-Z a-z 0-9 _ . : - (starting with a letter or digit)');
const NO_NUL = { message: 'must not contain NUL characters' };
// jsonb and DuckDB text cannot hold NUL: refuse it here instead of failing half-way through a write.
const label = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(1000)
  .refine((s) => !s.includes('\u0000'), NO_NUL);
/** Any ISO 8601 time with an offset, normalised to UTC so every process compares the same text. */
const instant = z
  .string()
  .datetime({ offset: true, message: 'must be an ISO 8601 time with an offset, e.g. 2025-01-31T12:00:00Z' })
  .transform((s) => new Date(s).toISOString());

function serialisable(value: Record<string, unknown>): boolean {
  try {
    const text = JSON.stringify(value);
    return !text.includes('\\u0000');
  } catch {
    return false;
  }
}
/** Size is checked by the store against its configured limit (PAYLOAD_TOO_LARGE), not here. */
const properties = z.record(z.unknown()).refine(serialisable, { message: 'must be JSON without NUL characters' });
const weight = z.number().finite().min(0).max(1_000_000);

export const GRAPH_DIRECTIONS = ['out', 'in', 'both'] as const;
export type GraphDirection = (typeof GRAPH_DIRECTIONS)[number];

/** Bounds the API promises; queries outside them are INVALID_ARGUMENT. */
export const GRAPH_LIMITS = {
  maxDepth: 5,
  maxRelatedHops: 3,
  maxNeighbors: 1000,
  maxResults: 100,
  maxRelations: 32,
  maxOpsPerWrite: 10_000,
  maxQueryChars: 256,
} as const;

/** Query strings carry numbers as text. */
const intIn = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback);
const relationFilter = z
  .union([word, z.array(word).min(1).max(GRAPH_LIMITS.maxRelations)])
  .transform((r) => (typeof r === 'string' ? [r] : [...new Set(r)]));
const flag = z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());

export const graphNodeIdSchema = id;

export const graphNodeSchema = z.object({ id, asOf: instant.optional() }).strict();
export type GraphNodeQuery = z.infer<typeof graphNodeSchema>;

export const graphNeighborsSchema = z
  .object({
    id,
    direction: z.enum(GRAPH_DIRECTIONS).default('both'),
    depth: intIn(1, GRAPH_LIMITS.maxDepth, 1),
    relation: relationFilter.optional(),
    limit: intIn(1, GRAPH_LIMITS.maxNeighbors, 100),
    asOf: instant.optional(),
  })
  .strict();
export type GraphNeighborsQuery = z.infer<typeof graphNeighborsSchema>;

export const graphPathSchema = z
  .object({
    from: id,
    to: id,
    maxDepth: intIn(1, GRAPH_LIMITS.maxDepth, GRAPH_LIMITS.maxDepth),
    direction: z.enum(GRAPH_DIRECTIONS).default('out'),
    relation: relationFilter.optional(),
    asOf: instant.optional(),
  })
  .strict();
export type GraphPathQuery = z.infer<typeof graphPathSchema>;

export const graphRelatedSchema = z
  .object({
    id,
    hops: intIn(1, GRAPH_LIMITS.maxRelatedHops, 2),
    limit: intIn(1, GRAPH_LIMITS.maxResults, 20),
    asOf: instant.optional(),
  })
  .strict();
export type GraphRelatedQuery = z.infer<typeof graphRelatedSchema>;

export const graphSearchSchema = z
  .object({
    q: z
      .string()
      .trim()
      .min(1, 'must not be empty')
      .max(GRAPH_LIMITS.maxQueryChars)
      .refine((s) => !s.includes('\u0000'), NO_NUL),
    limit: intIn(1, GRAPH_LIMITS.maxResults, 20),
    kind: word.optional(),
    semantic: flag.default(false),
    asOf: instant.optional(),
  })
  .strict();
export type GraphSearchQuery = z.infer<typeof graphSearchSchema>;

const memoryRef = id;
const validity = {
  /** Default: kept when the element already exists and is live, else the batch's commit time. */
  validFrom: instant.optional(),
  /** null (the default): valid until invalidated. */
  validTo: instant.nullable().optional(),
};

const validityOrdered = (v: { validFrom?: string; validTo?: string | null }) =>
  v.validFrom === undefined || v.validTo === undefined || v.validTo === null || v.validTo > v.validFrom;
const VALIDITY_ORDER = { message: 'validTo must be after validFrom', path: ['validTo'] };

/** Upsert a node; `id` defaults to nodeIdFor(kind, label), the id extraction gives the same entity. */
export const graphUpsertNodeSchema = z
  .object({
    id: id.optional(),
    label,
    kind: word,
    properties: properties.optional(),
    /** The memory this fact came from; a memory's deletion cascades to what it alone supports. */
    sourceMemoryId: memoryRef.nullable().optional(),
    ...validity,
  })
  .strict()
  .refine(validityOrdered, VALIDITY_ORDER);
export type GraphUpsertNodeInput = z.infer<typeof graphUpsertNodeSchema>;

/** Upsert an edge; both ends must exist and be live. `id` defaults to edgeIdFor(source, relation, target). */
export const graphUpsertEdgeSchema = z
  .object({
    id: id.optional(),
    source: id,
    target: id,
    relation: word,
    weight: weight.optional(),
    properties: properties.optional(),
    sourceMemoryId: memoryRef.nullable().optional(),
    ...validity,
  })
  .strict()
  .refine(validityOrdered, VALIDITY_ORDER);
export type GraphUpsertEdgeInput = z.infer<typeof graphUpsertEdgeSchema>;

/**
 * One operation as a caller writes it: like a logged GraphOp, but times, ids, weights and
 * properties may be left out; the store fills them in before the batch is logged, so the log
 * itself is fully explicit.
 */
export const graphOpDraftSchema = z.discriminatedUnion('op', [
  z
    .object({
      op: z.literal('node.upsert'),
      id: id.optional(),
      label,
      kind: word,
      properties: properties.optional(),
      sourceMemoryId: memoryRef.nullable().optional(),
      ...validity,
    })
    .strict(),
  z
    .object({
      op: z.literal('edge.upsert'),
      id: id.optional(),
      source: id,
      target: id,
      relation: word,
      weight: weight.optional(),
      properties: properties.optional(),
      sourceMemoryId: memoryRef.nullable().optional(),
      ...validity,
    })
    .strict(),
  z.object({ op: z.literal('node.delete'), id }).strict(),
  z.object({ op: z.literal('edge.delete'), id }).strict(),
  z.object({ op: z.literal('invalidate'), element: z.enum(['node', 'edge']), id, validTo: instant.optional() }).strict(),
  z.object({ op: z.literal('cascade'), memoryId: memoryRef }).strict(),
  z.object({ op: z.literal('unlink'), memoryId: memoryRef, element: z.enum(['node', 'edge']), id }).strict(),
  z.object({ op: z.literal('purge'), before: instant }).strict(),
]);
export type GraphOpDraft = z.input<typeof graphOpDraftSchema>;

export const graphWriteSchema = z.array(graphOpDraftSchema).min(1, 'give at least one op').max(GRAPH_LIMITS.maxOpsPerWrite);

export const graphWriteOptionsSchema = z
  .object({
    /** A job that runs twice writes once: a second write with the same key is a no-op. */
    jobKey: z
      .string()
      .min(1)
      .max(200)
      .refine((s) => !s.includes('\u0000'), NO_NUL)
      .optional(),
    /** The memory the ops came from: default source of every upsert, and where graph.changed is routed. */
    sourceMemory: z.object({ id: memoryRef, layer: z.string().min(1).max(32), scopeId: id }).strict().optional(),
  })
  .strict();
export type GraphWriteOptions = z.input<typeof graphWriteOptionsSchema>;

/** A node as clients see it. Times are ISO strings; `validTo`/`deletedAt` null while live. */
export interface GraphNode {
  id: string;
  tenantId: string;
  label: string;
  kind: string;
  properties: Record<string, unknown>;
  /** The memory that first produced it (null when written directly through the API). */
  sourceMemoryId: string | null;
  validFrom: string;
  validTo: string | null;
  createdAt: string;
  deletedAt: string | null;
}

export interface GraphEdge {
  id: string;
  tenantId: string;
  source: string;
  target: string;
  relation: string;
  weight: number;
  properties: Record<string, unknown>;
  sourceMemoryId: string | null;
  validFrom: string;
  validTo: string | null;
  createdAt: string;
  deletedAt: string | null;
}

export interface GraphNodeResult {
  node: GraphNode;
  /** Visible incident edges (a self-loop counts once in each). */
  degree: { in: number; out: number; total: number };
}

export interface GraphNeighborsResult {
  node: GraphNode;
  /** Nearest first; `depth` is the hop distance from `node`. */
  neighbors: { node: GraphNode; depth: number }[];
  /** Every edge that led from one level to a node first reached at the next. */
  edges: GraphEdge[];
  /** More nodes were in reach than `limit`. */
  truncated: boolean;
}

export type GraphPathResult =
  | { found: true; length: number; nodes: GraphNode[]; edges: GraphEdge[] }
  | { found: false; maxDepth: number };

export interface GraphRelatedResult {
  node: GraphNode;
  /** Best first: `score` is the best product of edge weights along a fewest-hop path, halved per hop after the first. */
  related: { node: GraphNode; score: number; hops: number }[];
}

export type GraphSearchMatch = 'exact' | 'prefix' | 'label' | 'properties' | 'semantic';

export interface GraphSearchResult {
  /** `semantic` only when asked for and an embedding service is configured. */
  mode: 'text' | 'semantic';
  results: { node: GraphNode; score: number; match: GraphSearchMatch; similarity?: number }[];
}

/** What a write changed; the ids are complete here and capped in the graph.changed event. */
export interface GraphChanges {
  nodes: { upserted: string[]; deleted: string[]; invalidated: string[]; purged: string[] };
  edges: { upserted: string[]; deleted: string[]; invalidated: string[]; purged: string[] };
}

export interface GraphWriteResult {
  /** False when nothing was written: a repeated job key, or a batch that changed nothing (a cascade or purge that found nothing, a repeated delete). */
  applied: boolean;
  /** The graph log position after the write (the batch's own seq when applied). */
  seq: number;
  changes: GraphChanges;
  /** The job key was already written by an earlier run. */
  duplicate?: true;
}

/** `data` of the `graph.changed` event. Each id list holds at most GRAPH_EVENT_ID_CAP ids. */
export interface GraphChangedData {
  graphSeq: number;
  nodes: { upserted: string[]; deleted: string[]; invalidated: string[] };
  edges: { upserted: string[]; deleted: string[]; invalidated: string[] };
  purged?: { nodes: number; edges: number };
  /** Some id list was longer than the cap: reload instead of patching. */
  truncated?: true;
  sourceMemoryId?: string;
  layer?: string;
  scopeId?: string;
  jobKey?: string;
}

export const GRAPH_EVENT_ID_CAP = 100;
