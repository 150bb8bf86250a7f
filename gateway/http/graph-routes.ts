import type { GraphApi } from '../../src/graph/index.js';
import type { Route, RouteCall, RouteReply } from './route.js';

const ok = (body: unknown, status = 200): RouteReply => ({ status, body });

/** Query strings are flat text: `relation=uses,owns` names several relations. */
function queryInput(call: RouteCall, extra: Record<string, string> = {}): Record<string, unknown> {
  const input: Record<string, unknown> = { ...call.query, ...extra };
  const relation = input['relation'];
  if (typeof relation === 'string' && relation.includes(',')) input['relation'] = relation.split(',');
  return input;
}

const get = (path: string, handle: (call: RouteCall) => Promise<RouteReply>): Route => ({ method: 'GET', path, auth: true, body: false, handle });
const post = (path: string, handle: (call: RouteCall) => Promise<RouteReply>): Route => ({ method: 'POST', path, auth: true, body: true, handle });

/** The knowledge graph over REST; the socket's graph.* events call the same GraphApi. */
export function graphRoutes(api: GraphApi): Route[] {
  const byId = (call: RouteCall) => queryInput(call, { id: call.params['id'] ?? '' });
  return [
    get('/v1/graph/nodes/:id', async (call) => ok(await api.node(call.tenant, byId(call)))),
    get('/v1/graph/nodes/:id/neighbors', async (call) => ok(await api.neighbors(call.tenant, byId(call)))),
    get('/v1/graph/nodes/:id/related', async (call) => ok(await api.related(call.tenant, byId(call)))),
    get('/v1/graph/path', async (call) => ok(await api.path(call.tenant, queryInput(call)))),
    get('/v1/graph/search', async (call) => ok(await api.search(call.tenant, queryInput(call)))),
    post('/v1/graph/nodes', async (call) => ok(await api.upsertNode(call.tenant, call.body), 201)),
    post('/v1/graph/edges', async (call) => ok(await api.upsertEdge(call.tenant, call.body), 201)),
    post('/v1/admin/graph/snapshot', async (call) => ok(await api.snapshot(call.tenant, call.body ?? {}), 201)),
  ];
}
