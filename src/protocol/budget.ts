import { z } from 'zod';

/**
 * Token budgets and cost usage on the wire: what an admin may set (`PUT /v1/admin/budgets`,
 * `budget.set`), what the budget and usage reads answer, and the data of the `budget.warning` and
 * `budget.exceeded` events.
 */

/** What is metered: embedding input tokens and LLM prompt + completion tokens. */
export const BUDGET_KINDS = ['embed', 'llm'] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

/** UTC calendar periods: a day resets at 00:00 UTC, a month on the 1st at 00:00 UTC. */
export const BUDGET_PERIODS = ['day', 'month'] as const;
export type BudgetPeriod = (typeof BUDGET_PERIODS)[number];

/**
 * What a call that would pass a limit meets: `reject` refuses it (RATE_LIMITED, nothing spent),
 * `queue` refuses it the same way but marks the error retryable at the reset so job queues wait
 * for it, `warn` lets it through and announces `budget.exceeded` once per period.
 */
export const BUDGET_ACTIONS = ['reject', 'queue', 'warn'] as const;
export type BudgetAction = (typeof BUDGET_ACTIONS)[number];

/** Far above any real budget, and exact in a double and in a PostgreSQL bigint. */
export const MAX_TOKEN_LIMIT = 1_000_000_000_000_000;

/** A limit in tokens (0 = unlimited), or null to drop the tenant's override and use the default. */
const limitValue = z.number().int('must be a whole number of tokens').min(0, 'must be 0 (unlimited) or more').max(MAX_TOKEN_LIMIT).nullable();
const periodLimits = z.object({ day: limitValue.optional(), month: limitValue.optional() }).strict();

/** `{embed?: {day?, month?}, llm?: {day?, month?}}`; unknown kinds or periods are refused. */
export const budgetLimitsSchema = z
  .object({ embed: periodLimits.optional(), llm: periodLimits.optional() })
  .strict()
  .refine((v) => BUDGET_KINDS.some((k) => Object.keys(v[k] ?? {}).length > 0), { message: 'name at least one limit, e.g. {"llm": {"day": 100000}}' });
export type BudgetLimitsInput = z.infer<typeof budgetLimitsSchema>;

export interface BudgetPeriodStatus {
  /** Tokens allowed in the period; 0 means unlimited. */
  limit: number;
  /** Where the limit comes from: the configured default or this tenant's override. */
  source: 'default' | 'tenant';
  used: number;
  /** null when unlimited. */
  remaining: number | null;
  /** Start of the current period (UTC date, YYYY-MM-DD). */
  periodStart: string;
  /** When usage starts again from 0 (ISO 8601, UTC). */
  resetsAt: string;
}

export type BudgetKindStatus = Record<BudgetPeriod, BudgetPeriodStatus>;

export interface BudgetStatus {
  tenantId: string;
  action: BudgetAction;
  /** Fraction of a limit at which `budget.warning` is announced. */
  warnAt: number;
  budgets: Record<BudgetKind, BudgetKindStatus>;
}

export interface CacheLevelCounts {
  hits: number;
  misses: number;
}

/**
 * Embedding-cache lookups of one tenant, per level. A text the exact level misses is looked up in
 * the semantic level (when that level is on), so semantic hits + misses ≤ exact misses.
 */
export interface EmbedCacheCounts {
  exact: CacheLevelCounts;
  semantic: CacheLevelCounts;
}

export interface EmbedCacheUsage extends EmbedCacheCounts {
  /** `cluster`: counted in Redis by every node; `process`: this process only (embedded mode). */
  scope: 'cluster' | 'process';
  /** The semantic level is on only for a remote (billable) embedding model. */
  semanticEnabled: boolean;
  model: string;
}

/** Semantic answer cache lookups of this process (all tenants); null when the cache is off. */
export interface AnswerCacheUsage {
  scope: 'process';
  context: AnswerCacheCounts | null;
  search: AnswerCacheCounts | null;
}

export interface AnswerCacheCounts {
  hits: number;
  misses: number;
  /** Misses where a similar answer existed but a source or its scopes had changed since. */
  stale: number;
}

/** `GET /v1/admin/usage`, `usage.get`. */
export interface UsageReport {
  tenantId: string;
  embedCache: EmbedCacheUsage;
  answerCache?: AnswerCacheUsage;
  tokens: Record<BudgetKind, BudgetKindStatus>;
}

/** The data of `budget.warning` and `budget.exceeded` events. */
export interface BudgetEventData {
  kind: BudgetKind;
  period: BudgetPeriod;
  used: number;
  limit: number;
  resetsAt: string;
  action: BudgetAction;
}
