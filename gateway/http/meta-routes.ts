import type { MetaApi } from '../../src/cca/index.js';
import type { Route, RouteCall, RouteReply } from './route.js';

const ok = (body: unknown, status = 200): RouteReply => ({ status, body });

/** The run id from the path; a body cannot override it. */
function withRunId(call: RouteCall): Record<string, unknown> {
  const body = typeof call.body === 'object' && call.body !== null && !Array.isArray(call.body) ? (call.body as Record<string, unknown>) : {};
  return { ...body, runId: call.params['id'] ?? '' };
}

/** The Meta-Agent over REST; the socket's meta.* events call the same MetaApi. */
export function metaRoutes(api: MetaApi): Route[] {
  return [
    { method: 'POST', path: '/v1/meta/runs', auth: true, body: true, handle: async (call) => ok(await api.start(call.tenant, call.body), 202) },
    { method: 'GET', path: '/v1/meta/runs', auth: true, body: false, handle: async (call) => ok(await api.list(call.tenant, call.query)) },
    { method: 'GET', path: '/v1/meta/runs/:id', auth: true, body: false, handle: async (call) => ok(await api.get(call.tenant, { runId: call.params['id'] ?? '' })) },
    { method: 'POST', path: '/v1/meta/runs/:id/test-result', auth: true, body: true, handle: async (call) => ok(await api.testResult(call.tenant, withRunId(call))) },
    { method: 'POST', path: '/v1/meta/runs/:id/cancel', auth: true, body: false, handle: async (call) => ok(await api.cancel(call.tenant, { runId: call.params['id'] ?? '' })) },
  ];
}
