import { z } from 'zod';
import type { Actor, Layer } from './memory.js';

/**
 * Wire shapes of the note-taking agent (trajectory capture, session end, distilled notes) and of
 * hindsight learning (error reports, pattern queries, resolutions). The services parse their raw
 * input with these; the results are what every transport answers.
 */

// The shared id rule (ARCHITECTURE.md): session, project and team ids follow it.
const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$');
const NO_NUL = { message: 'must not contain NUL characters' };
const noNul = (s: string) => !s.includes('\u0000');
const noControl = /^[^\p{Cc}]+$/u;

/** Hard bounds the API promises whatever the configuration says. */
export const AGENT_LIMITS = {
  /** Events in one batched capture (the configured maximum may only be lower). */
  maxBatch: 1000,
  maxToolNameChars: 128,
  maxCommentChars: 2000,
  maxDurationMs: 7 * 86_400_000,
  maxErrorTypeChars: 128,
  maxMessageChars: 16_384,
  maxStackChars: 65_536,
  maxContextBytes: 16 * 1024,
  maxResolutionChars: 4000,
  maxQueryLimit: 20,
} as const;

export const FEEDBACK_RATINGS = ['positive', 'negative', 'neutral'] as const;
export type FeedbackRating = (typeof FEEDBACK_RATINGS)[number];

/**
 * User feedback on a session, carried by any captured event (`feedback`) or by an event whose
 * toolName is `feedback` (its input is then the comment). Either marks the session significant.
 */
export const trajectoryFeedbackSchema = z
  .object({
    rating: z.enum(FEEDBACK_RATINGS),
    comment: z.string().max(AGENT_LIMITS.maxCommentChars).optional(),
  })
  .strict();
export type TrajectoryFeedback = z.infer<typeof trajectoryFeedbackSchema>;

/** Tool inputs and outputs are any JSON (or text); they are redacted and capped, never refused for size here. */
const jsonish = z.unknown().refine(
  (v) => {
    try {
      JSON.stringify(v);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'must be JSON-serialisable' },
);

export const trajectoryEventSchema = z
  .object({
    sessionId: id,
    /** The project the session works on; the distilled note goes to its project layer. */
    projectId: id.optional(),
    toolName: z.string().min(1).max(AGENT_LIMITS.maxToolNameChars).regex(noControl, 'must not contain control characters'),
    input: jsonish.optional(),
    output: jsonish.optional(),
    success: z.boolean(),
    durationMs: z.number().finite().min(0).max(AGENT_LIMITS.maxDurationMs).optional(),
    /** Overrides the tool-name heuristic: true when the call changed something outside the agent. */
    stateChanging: z.boolean().optional(),
    feedback: trajectoryFeedbackSchema.optional(),
  })
  .strict();
export type TrajectoryEventInput = z.infer<typeof trajectoryEventSchema>;

export const trajectoryBatchSchema = z
  .object({ events: z.array(trajectoryEventSchema).min(1, 'give at least one event').max(AGENT_LIMITS.maxBatch) })
  .strict();
export type TrajectoryBatchInput = z.infer<typeof trajectoryBatchSchema>;

export const sessionEndSchema = z
  .object({
    sessionId: id,
    /** Names (or corrects) the project whose layer receives the note. */
    projectId: id.optional(),
  })
  .strict();
export type SessionEndInput = z.infer<typeof sessionEndSchema>;

export interface CapturedTrajectoryEvent {
  id: string;
  sessionId: string;
  /** A session reused after it ended starts a new segment; each segment is distilled on its own. */
  segment: number;
  truncated: { input: boolean; output: boolean };
  /** Secrets replaced by `[REDACTED:<kind>]` in this event's input and output. */
  redactions: number;
}

export interface TrajectoryCaptureResult {
  captured: number;
  events: CapturedTrajectoryEvent[];
}

export type SessionEndReason = 'ended' | 'idle';

export interface SessionEndResult {
  sessionId: string;
  segment: number;
  /** False when this segment had already ended (a repeated end changes nothing). */
  ended: boolean;
  reason: SessionEndReason;
  events: number;
  projectId: string | null;
}

/** A captured event as stored (after redaction and capping). */
export interface TrajectoryEvent {
  id: string;
  sessionId: string;
  segment: number;
  projectId: string | null;
  toolName: string;
  input: string | null;
  output: string | null;
  inputTruncated: boolean;
  outputTruncated: boolean;
  success: boolean;
  durationMs: number | null;
  stateChanging: boolean | null;
  feedback: TrajectoryFeedback | null;
  actor: Actor;
  createdAt: string;
}

/** `session.started` / `session.ended` event data; delivered to the session layer's room. */
export interface SessionLifecycleEventData {
  layer: 'session';
  scopeId: string;
  sessionId: string;
  segment: number;
  projectId: string | null;
  reason?: SessionEndReason;
  events?: number;
}

/** `note.created` event data; delivered to the note memory's layer room. */
export interface NoteCreatedEventData {
  layer: Layer;
  scopeId: string;
  memoryId: string;
  sessionId: string;
  segment: number;
  /** True when the note merged into an existing near-identical memory instead of adding one. */
  deduplicated: boolean;
}

const errorType = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(AGENT_LIMITS.maxErrorTypeChars)
  .regex(noControl, 'must not contain control characters');
const message = z.string().min(1, 'must not be empty').max(AGENT_LIMITS.maxMessageChars).refine(noNul, NO_NUL);
const stack = z.string().max(AGENT_LIMITS.maxStackChars).refine(noNul, NO_NUL);
const context = z.record(z.unknown()).refine(
  (c) => {
    try {
      const text = JSON.stringify(c);
      return Buffer.byteLength(text) <= AGENT_LIMITS.maxContextBytes && !text.includes('\\u0000');
    } catch {
      return false;
    }
  },
  { message: `must be JSON without NUL characters, at most ${AGENT_LIMITS.maxContextBytes} bytes` },
);

export const hindsightReportSchema = z
  .object({
    errorType,
    message,
    stack: stack.optional(),
    context: context.optional(),
    /** The team whose layer receives the pattern once it is promoted. */
    teamId: id.optional(),
  })
  .strict();
export type HindsightReportInput = z.infer<typeof hindsightReportSchema>;

export const hindsightQuerySchema = z
  .object({
    errorType: errorType.optional(),
    message,
    stack: stack.optional(),
    /** Defaults to the configured number (3). */
    limit: z.number().int().min(1).max(AGENT_LIMITS.maxQueryLimit).optional(),
  })
  .strict();
export type HindsightQueryInput = z.infer<typeof hindsightQuerySchema>;

export const hindsightPatternIdSchema = z.string().uuid('must be a UUID');

export const hindsightResolveSchema = z
  .object({
    patternId: hindsightPatternIdSchema,
    resolution: z.string().trim().min(1, 'must not be empty').max(AGENT_LIMITS.maxResolutionChars).refine(noNul, NO_NUL),
    success: z.boolean(),
    teamId: id.optional(),
  })
  .strict();
export type HindsightResolveInput = z.infer<typeof hindsightResolveSchema>;

export interface HindsightResolutionStats {
  resolution: string;
  successes: number;
  failures: number;
  /** (successes + 1) / (tries + 2): untried is 0.5, never 0 or 1 on little evidence. */
  successRate: number;
  lastUsedAt: string;
}

export interface HindsightPromotion {
  memoryId: string;
  teamId: string;
  promotedAt: string;
}

export interface HindsightMatch {
  patternId: string;
  errorType: string;
  signature: string;
  /** Same normalised signature (similarity 1), not merely a similar one. */
  exact: boolean;
  similarity: number;
  occurrences: number;
  firstSeenAt: string;
  lastSeenAt: string;
  attempts: number;
  successes: number;
  successRate: number;
  /** successRate × similarity × recency; see HindsightService. */
  score: number;
  /** Best first. */
  resolutions: HindsightResolutionStats[];
  promoted: HindsightPromotion | null;
}

export interface HindsightReportResult {
  patternId: string;
  signature: string;
  isNew: boolean;
  occurrences: number;
  /** Earlier patterns with the same or a similar signature, best first (this one, if seen before, is exact). */
  matches: HindsightMatch[];
  /** Set by the report that promoted the pattern (at most one ever). */
  promoted: HindsightPromotion | null;
}

export interface HindsightQueryResult {
  signature: string;
  patterns: HindsightMatch[];
}

export interface HindsightResolveResult {
  patternId: string;
  outcomeId: string;
  success: boolean;
  attempts: number;
  successes: number;
  successRate: number;
  /** Set by the call that promoted the pattern (at most one ever). */
  promoted: HindsightPromotion | null;
}

/** `hindsight.pattern` event data; delivered to the team layer's room. */
export interface HindsightPatternEventData {
  layer: 'team';
  scopeId: string;
  patternId: string;
  memoryId: string;
  errorType: string;
  signature: string;
  occurrences: number;
  resolution: string;
}
