import { z } from 'zod';
import type { AgentsApi } from '../../src/cca/index.js';
import { CLIENT_EVENTS } from '../../src/protocol/index.js';
import type { RealtimeExtension } from './types.js';

/** trajectory.capture, session.end and hindsight.*, each acked; the same AgentsApi (roles, validation, errors) as REST. */
export function createAgentsExtension(api: AgentsApi): RealtimeExtension {
  return {
    name: 'agents',
    onConnection(conn) {
      const ctx = conn.tenant;
      const any = z.unknown();
      conn.handle(CLIENT_EVENTS.trajectoryCapture, any, (input) => api.capture(ctx, input));
      conn.handle(CLIENT_EVENTS.sessionEnd, any, (input) => api.endSession(ctx, input));
      conn.handle(CLIENT_EVENTS.hindsightReport, any, (input) => api.report(ctx, input));
      conn.handle(CLIENT_EVENTS.hindsightQuery, any, (input) => api.query(ctx, input));
      conn.handle(CLIENT_EVENTS.hindsightResolve, any, (input) => api.resolve(ctx, input));
    },
  };
}
