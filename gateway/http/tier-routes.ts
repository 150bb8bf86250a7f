import type { TieringService } from '../../src/memory/index.js';
import type { Route } from './route.js';

/**
 * Tiered storage of the caller's tenant (admin role, `jobs:manage`):
 * `POST /v1/admin/tiering/run[?dryRun=true]` tiers it now and answers the run's report;
 * `GET /v1/admin/tiering/stats` counts memories and bytes per tier and archive files.
 */
export function tieringRoutes(tiering: TieringService): Route[] {
  return [
    {
      method: 'POST',
      path: '/v1/admin/tiering/run',
      auth: true,
      body: false,
      handle: async ({ tenant, query }) => ({ status: 200, body: await tiering.runFor(tenant, query) }),
    },
    {
      method: 'GET',
      path: '/v1/admin/tiering/stats',
      auth: true,
      body: false,
      handle: async ({ tenant }) => ({ status: 200, body: await tiering.statsFor(tenant) }),
    },
  ];
}
