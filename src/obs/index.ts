export { createLogger, type Logger } from './logger.js';
export { countTokens, truncateToTokens } from './tokens.js';
export { BUDGET_ACTOR, TokenBudgets, budgetRetryAt, periodBounds, type TokenBudgetsOptions, type TokenCharge, type TokenMeter } from './budget.js';
export { BUDGET_PERMISSION, BudgetApi, type EmbedCacheUsageSource } from './budget-api.js';
