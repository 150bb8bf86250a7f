import type { BudgetApi } from '../../src/obs/index.js';
import type { HttpMethod, Route } from './route.js';

/**
 * `PUT` is what the budget API promises; route.ts and uws.ts gain it with this file's mounting
 * (HttpMethod `'PUT'`, UWS_METHOD `PUT: 'put'`). Until then the type admits it here only.
 */
export type BudgetRoute = Omit<Route, 'method'> & { method: HttpMethod | 'PUT' };

/**
 * The tenant's token budgets and cost usage (admin role):
 * `GET /v1/admin/budgets`, `PUT /v1/admin/budgets` with `{embed?: {day?, month?}, llm?: {…}}`
 * (a number sets the tenant's limit, 0 = unlimited; null goes back to the configured default),
 * and `GET /v1/admin/usage` (tokens used plus the embedding cache's hit/miss counters).
 */
export function budgetRoutes(api: BudgetApi): BudgetRoute[] {
  return [
    { method: 'GET', path: '/v1/admin/budgets', auth: true, body: false, handle: async ({ tenant }) => ({ status: 200, body: await api.get(tenant) }) },
    { method: 'PUT', path: '/v1/admin/budgets', auth: true, body: true, handle: async ({ tenant, body }) => ({ status: 200, body: await api.set(tenant, body) }) },
    { method: 'GET', path: '/v1/admin/usage', auth: true, body: false, handle: async ({ tenant }) => ({ status: 200, body: await api.usage(tenant) }) },
  ];
}
