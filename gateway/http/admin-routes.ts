import { JobAdmin, type DeadLetterStore, type JobQueue } from '../../src/jobs/index.js';
import type { Route } from './route.js';

/**
 * Dead-lettered jobs of the caller's tenant (admin role, `jobs:manage`):
 * `GET /v1/admin/jobs?state=failed&limit=&cursor=` and `POST /v1/admin/jobs/:id/retry[?kind=]`.
 */
export function adminJobRoutes(deps: { deadLetters: DeadLetterStore; queue: JobQueue }): Route[] {
  const admin = new JobAdmin(deps);
  return [
    {
      method: 'GET',
      path: '/v1/admin/jobs',
      auth: true,
      body: false,
      handle: async ({ tenant, query }) => ({ status: 200, body: await admin.list(tenant, query) }),
    },
    {
      method: 'POST',
      path: '/v1/admin/jobs/:id/retry',
      auth: true,
      body: false,
      // 202: the job is queued again; its outcome arrives later (done, or another job.failed).
      handle: async ({ tenant, params, query }) => ({ status: 202, body: { job: await admin.retry(tenant, params['id'], query) } }),
    },
  ];
}
