import { z } from 'zod';
import { memoryIdSchema, searchMemoriesSchema } from './memory.js';

/**
 * The Context Architect's wire shapes: summary levels, `context.assemble` and what it answers.
 * Budget limits are configuration (AETERNA_CONTEXT_*), so the assemble schema is built from them.
 */

/** Shortest first: packing falls back along this order when a longer level does not fit. */
export const SUMMARY_LEVELS = ['sentence', 'paragraph', 'detailed'] as const;
export type SummaryLevel = (typeof SUMMARY_LEVELS)[number];

/** One text per level. */
export type SummaryLevels = Record<SummaryLevel, string>;

export interface BudgetLimits {
  min: number;
  max: number;
  default: number;
}

/** `{query, tokenBudget?, layers?, tags?}` plus the scope ids search takes (`projectId`, …), validated as search validates them. */
export function contextAssembleSchema(budget: BudgetLimits) {
  return searchMemoriesSchema
    .omit({ limit: true, threshold: true })
    .extend({ tokenBudget: z.number().int().min(budget.min).max(budget.max).default(budget.default) })
    .strict();
}
export type ContextAssembleInput = z.infer<ReturnType<typeof contextAssembleSchema>>;

/** One memory packed into the context, in the order of the blocks (`[1]` is the first). */
export interface ContextUsed {
  memoryId: string;
  level: SummaryLevel;
  /** Cosine similarity of the memory to the query, 0..1. */
  relevance: number;
  /** Tokens of this memory's block, its header and separator included. */
  tokens: number;
}

export interface ContextAssembleResult {
  context: string;
  used: ContextUsed[];
  /** countTokens(context): never above `budget`. */
  tokens: number;
  budget: number;
  /** True when the answer came from the semantic answer cache (after checking its sources are unchanged). */
  cached: boolean;
}

export const memorySummariesSchema = z.object({ memoryId: memoryIdSchema }).strict();

export interface MemorySummaries {
  memoryId: string;
  contentHash: string;
  /** `stored` when the summariser job has run for this content, `extractive` when made just now. */
  source: 'stored' | 'extractive';
  summarizer: string;
  levels: Record<SummaryLevel, { text: string; tokens: number }>;
}

/** Data of the `summary.ready` event (delivered to the memory's layer rooms). */
export interface SummaryReadyData {
  memoryId: string;
  layer: string;
  scopeId: string;
  contentHash: string;
  summarizer: string;
  /** Tokens per level. */
  levels: Record<SummaryLevel, number>;
}
