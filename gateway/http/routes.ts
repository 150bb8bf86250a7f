import type { Core } from '../../src/core.js';
import type { Route, RouteCall, RouteReply } from './route.js';

const ok = (body: unknown, status = 200): RouteReply => ({ status, body });

type Handler = (call: RouteCall) => Promise<RouteReply>;
const authed = (method: Route['method'], path: string, body: boolean, handle: Handler): Route => ({
  method,
  path,
  auth: true,
  body,
  handle,
});

/** The memory API: /v1/memories and the tenant's event log. */
export function memoryRoutes(core: Core): Route[] {
  const memory = core.memory;
  return [
    authed('POST', '/v1/memories', true, async ({ tenant, body }) => {
      const result = await memory.add(tenant, body);
      return ok(result, result.deduplicated ? 200 : 201);
    }),
    authed('GET', '/v1/memories', false, async ({ tenant, query }) => ok(await memory.list(tenant, query))),
    authed('POST', '/v1/memories/search', true, async ({ tenant, body }) => ok(await core.search.search(tenant, body))),
    authed('GET', '/v1/memories/:id', false, async ({ tenant, params }) => ok({ memory: await memory.get(tenant, params['id']) })),
    authed('PATCH', '/v1/memories/:id', true, async ({ tenant, params, body }) =>
      ok({ memory: await memory.update(tenant, params['id'], body) }),
    ),
    authed('DELETE', '/v1/memories/:id', false, async ({ tenant, params }) => ok(await memory.delete(tenant, params['id']))),
    authed('POST', '/v1/memories/:id/feedback', true, async ({ tenant, params, body }) =>
      ok({ memory: await memory.feedback(tenant, params['id'], body) }),
    ),
    authed('GET', '/v1/events', false, async ({ tenant, query }) => ok(await memory.events(tenant, query))),
  ];
}

/** Liveness says the process answers; readiness says its database does too. */
export function healthRoutes(core: Core): Route[] {
  return [
    { method: 'GET', path: '/healthz', auth: false, body: false, handle: async () => ok({ status: 'ok' }) },
    {
      method: 'GET',
      path: '/readyz',
      auth: false,
      body: false,
      handle: async () => {
        try {
          await core.db.ping();
          return ok({ status: 'ready', db: core.db.kind, vectors: core.vectors.name, embedder: core.embeddings.model });
        } catch {
          return ok({ code: 'UNAVAILABLE', message: 'database not reachable' }, 503);
        }
      },
    },
  ];
}
