import { z } from 'zod';
import type { BudgetApi } from '../../src/obs/index.js';
import { CLIENT_EVENTS } from '../../src/protocol/index.js';
import type { RealtimeExtension } from './types.js';

/** budget.get / budget.set / usage.get, each acked; the same BudgetApi (role, validation) as REST. */
export function createBudgetExtension(api: BudgetApi): RealtimeExtension {
  return {
    name: 'budget',
    onConnection(conn) {
      const ctx = conn.tenant;
      const any = z.unknown();
      conn.handle(CLIENT_EVENTS.budgetGet, any, () => api.get(ctx));
      conn.handle(CLIENT_EVENTS.budgetSet, any, (input) => api.set(ctx, input));
      conn.handle(CLIENT_EVENTS.usageGet, any, () => api.usage(ctx));
    },
  };
}
