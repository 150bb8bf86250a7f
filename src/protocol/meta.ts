import { z } from 'zod';
import { LAYERS } from './memory.js';

/**
 * Wire shapes of the Meta-Agent: a run (goal, how to test, limits), its iterations (a candidate
 * solution, then its test), and the events it streams. The limits a caller may ask for come from
 * configuration, so the run schema is built from them.
 */

const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$');
const noNul = (s: string) => !s.includes('\u0000');
const NO_NUL = { message: 'must not contain NUL characters' };

export const META_LIMITS = {
  maxGoalChars: 8000,
  maxTestOutputChars: 65_536,
  /** What an event carries of a solution or test output; `meta.get` has them whole. */
  eventExcerptChars: 4000,
  defaultIterations: 3,
} as const;

export interface MetaRunLimits {
  maxIterations: number;
  defaultTimeBudgetMs: number;
  maxTimeBudgetMs: number;
  testTimeoutMs: number;
}

export function metaRunSchema(limits: MetaRunLimits) {
  return z
    .object({
      goal: z.string().trim().min(1, 'must not be empty').max(META_LIMITS.maxGoalChars).refine(noNul, NO_NUL),
      /**
       * A program and its arguments (an array, or one string split on whitespace with '…'/"…"
       * quoting; never a shell). Exit code 0 passes. Without it the caller is the test: each
       * candidate arrives as `meta.test`, answered with `meta.testResult`.
       */
      testCommand: z.union([z.string().max(16_384), z.array(z.string().max(4096)).max(64)]).optional(),
      maxIterations: z.number().int().min(1).max(limits.maxIterations).default(Math.min(META_LIMITS.defaultIterations, limits.maxIterations)),
      timeBudgetMs: z.number().int().min(1000).max(limits.maxTimeBudgetMs).default(limits.defaultTimeBudgetMs),
      /** One test's limit; at most the configured one, and never past the run's time budget. */
      testTimeoutMs: z.number().int().min(100).max(limits.testTimeoutMs).default(limits.testTimeoutMs),
      /** Layers the build step's assembled context reads (default: all the caller can read). */
      layers: z.array(z.enum(LAYERS)).min(1).max(LAYERS.length).optional(),
      projectId: id.optional(),
      teamId: id.optional(),
    })
    .strict();
}
export type MetaRunInput = z.infer<ReturnType<typeof metaRunSchema>>;

export const metaRunIdSchema = z.object({ runId: z.string().uuid('must be a UUID') }).strict();

export const metaListSchema = z
  .object({
    status: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']).optional(),
    limit: z.coerce.number().int().min(1).max(100).default(20),
  })
  .strict();
export type MetaListInput = z.infer<typeof metaListSchema>;

export const metaTestResultSchema = z
  .object({
    runId: z.string().uuid('must be a UUID'),
    iteration: z.number().int().min(1),
    passed: z.boolean(),
    /** What the check printed; shown to the model when the candidate failed. */
    output: z.string().max(META_LIMITS.maxTestOutputChars).refine(noNul, NO_NUL).optional(),
  })
  .strict();
export type MetaTestResultInput = z.infer<typeof metaTestResultSchema>;

export const META_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type MetaStatus = (typeof META_STATUSES)[number];

/** Why a run stopped. */
export const META_STOP_REASONS = [
  'passed',
  'max_iterations',
  'time_budget',
  'test_timeout',
  'llm_error',
  'llm_not_configured',
  'budget_exhausted',
  'sandbox_error',
  'internal_error',
  'cancelled',
] as const;
export type MetaStopReason = (typeof META_STOP_REASONS)[number];

export type MetaTestSpec = { kind: 'command'; argv: string[] } | { kind: 'callback' };

/** How an iteration's candidate came about: the first is built, later ones improve on a failure. */
export type MetaCandidateSource = 'build' | 'improve';

/** A resolution hindsight knew for the failure being fixed, handed to the model. */
export interface MetaHindsightHint {
  patternId: string;
  resolution: string;
  successRate: number;
  similarity: number;
}

export interface MetaTestOutcome {
  passed: boolean;
  /** 'command' ran in the sandbox; 'callback' was answered by the caller. */
  via: 'command' | 'callback';
  exitCode: number | null;
  timedOut: boolean;
  output: string;
  durationMs: number;
}

export interface MetaIteration {
  iteration: number;
  source: MetaCandidateSource;
  solution: string;
  rationale: string;
  hints: MetaHindsightHint[];
  test: MetaTestOutcome | null;
  startedAt: string;
  testedAt: string | null;
}

export interface MetaEscalation {
  reason: MetaStopReason;
  /** One paragraph for the human who takes over. */
  summary: string;
  goal: string;
  iterations: { iteration: number; source: MetaCandidateSource; rationale: string; passed: boolean | null; outputTail: string }[];
  lastSolution: string | null;
  /** The hindsight patterns the failures were filed under: where a fix should be recorded. */
  patternIds: string[];
}

export interface MetaRun {
  runId: string;
  goal: string;
  status: MetaStatus;
  stopReason: MetaStopReason | null;
  test: MetaTestSpec;
  maxIterations: number;
  timeBudgetMs: number;
  testTimeoutMs: number;
  iterationsDone: number;
  /** The candidate that passed (succeeded), else the last one tried. */
  solution: string | null;
  escalation: MetaEscalation | null;
  createdAt: string;
  startedAt: string | null;
  deadlineAt: string | null;
  finishedAt: string | null;
  iterations?: MetaIteration[];
}

/** Event data; every meta event goes to the tenant's `meta` topic room. */
export interface MetaStartedEventData {
  runId: string;
  goal: string;
  maxIterations: number;
  timeBudgetMs: number;
  test: MetaTestSpec['kind'];
}

export type MetaIterationEventData =
  | { runId: string; iteration: number; phase: MetaCandidateSource; rationale: string; solution: string; solutionTruncated: boolean; hints: MetaHindsightHint[] }
  | { runId: string; iteration: number; phase: 'test'; passed: boolean; via: 'command' | 'callback'; exitCode: number | null; timedOut: boolean; output: string; durationMs: number };

/** Sent when the caller is the test: answer with `meta.testResult {runId, iteration, passed, output?}`. */
export interface MetaTestRequestEventData {
  runId: string;
  iteration: number;
  solution: string;
  timeoutMs: number;
}

export interface MetaFinishedEventData {
  runId: string;
  status: MetaStatus;
  reason: MetaStopReason;
  iterations: number;
  escalation: MetaEscalation | null;
}
