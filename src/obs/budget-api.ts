import { budgetLimitsSchema, parseInput, type AnswerCacheUsage, type BudgetStatus, type EmbedCacheUsage, type UsageReport } from '../protocol/index.js';
import { actorOf, requirePermission, type Permission, type TenantContext } from '../tenancy/index.js';
import type { TokenBudgets } from './budget.js';

/**
 * Budgets and usage are an operator's concern, like the job admin: the admin role's
 * `jobs:manage` guards them until tenancy grows a permission of their own.
 */
export const BUDGET_PERMISSION: Permission = 'budget:manage';

/** Where the usage report reads the embedding cache's counters (the EmbeddingService). */
export interface EmbedCacheUsageSource {
  cacheUsage(tenantId: string): Promise<EmbedCacheUsage>;
}

/**
 * Budgets and usage as callers reach them, over REST and the socket alike: the role is checked
 * here, input is validated with the protocol's schema, and the tenant always comes from the
 * verified token, so an admin sees and sets only their own tenant's budgets. Every failure is a
 * rejected promise, never a synchronous throw.
 */
export class BudgetApi {
  constructor(
    private readonly budgets: TokenBudgets,
    private readonly embeddings: EmbedCacheUsageSource,
    /** The semantic answer caches' counters, when the caller has them (the gateway does). */
    private readonly answers?: () => AnswerCacheUsage,
  ) {}

  async get(ctx: TenantContext): Promise<BudgetStatus> {
    requirePermission(ctx, BUDGET_PERMISSION);
    return this.budgets.status(ctx.tenantId);
  }

  async set(ctx: TenantContext, input: unknown): Promise<BudgetStatus> {
    requirePermission(ctx, BUDGET_PERMISSION);
    const limits = parseInput(budgetLimitsSchema, input, 'budget limits');
    return this.budgets.setLimits(ctx.tenantId, limits, actorOf(ctx));
  }

  async usage(ctx: TenantContext): Promise<UsageReport> {
    requirePermission(ctx, BUDGET_PERMISSION);
    const [embedCache, status] = await Promise.all([this.embeddings.cacheUsage(ctx.tenantId), this.budgets.status(ctx.tenantId)]);
    return { tenantId: ctx.tenantId, embedCache, ...(this.answers ? { answerCache: this.answers() } : {}), tokens: status.budgets };
  }
}
