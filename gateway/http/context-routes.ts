import type { ContextApi } from '../../src/cca/index.js';
import type { Route } from './route.js';

/** The Context Architect over REST; the socket's context.assemble and memory.summaries call the same ContextApi. */
export function contextRoutes(api: ContextApi): Route[] {
  return [
    {
      method: 'POST',
      path: '/v1/context/assemble',
      auth: true,
      body: true,
      handle: async (call) => ({ status: 200, body: await api.assemble(call.tenant, call.body ?? {}) }),
    },
    {
      method: 'GET',
      path: '/v1/memories/:id/summaries',
      auth: true,
      body: false,
      handle: async (call) => ({ status: 200, body: await api.summaries(call.tenant, { memoryId: call.params['id'] ?? '' }) }),
    },
  ];
}
