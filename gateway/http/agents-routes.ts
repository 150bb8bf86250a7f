import type { AgentsApi } from '../../src/cca/index.js';
import type { Route, RouteCall, RouteReply } from './route.js';

const ok = (body: unknown, status = 200): RouteReply => ({ status, body });
const post = (path: string, handle: (call: RouteCall) => Promise<RouteReply>): Route => ({ method: 'POST', path, auth: true, body: true, handle });

/** A path parameter joins the body; the body cannot override it. */
function withParam(call: RouteCall, field: string, param: string): Record<string, unknown> {
  const body = typeof call.body === 'object' && call.body !== null && !Array.isArray(call.body) ? (call.body as Record<string, unknown>) : {};
  return { ...body, [field]: call.params[param] ?? '' };
}

/** Note-taking and hindsight over REST; the socket's trajectory.* / session.end / hindsight.* events call the same AgentsApi. */
export function agentsRoutes(api: AgentsApi): Route[] {
  return [
    post('/v1/trajectories', async (call) => ok(await api.capture(call.tenant, call.body), 201)),
    post('/v1/sessions/:id/end', async (call) => ok(await api.endSession(call.tenant, withParam(call, 'sessionId', 'id')))),
    post('/v1/hindsight/report', async (call) => {
      const result = await api.report(call.tenant, call.body);
      return ok(result, result.isNew ? 201 : 200);
    }),
    post('/v1/hindsight/query', async (call) => ok(await api.query(call.tenant, call.body))),
    post('/v1/hindsight/:id/resolve', async (call) => ok(await api.resolve(call.tenant, withParam(call, 'patternId', 'id')), 201)),
  ];
}
