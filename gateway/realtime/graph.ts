import { z } from 'zod';
import type { GraphApi } from '../../src/graph/index.js';
import { CLIENT_EVENTS } from '../../src/protocol/index.js';
import type { RealtimeExtension } from './types.js';

/** The graph.* socket events, each acked; the same GraphApi (roles, validation, errors) as REST. */
export function createGraphExtension(api: GraphApi): RealtimeExtension {
  return {
    name: 'graph',
    onConnection(conn) {
      const ctx = conn.tenant;
      const any = z.unknown();
      conn.handle(CLIENT_EVENTS.graphNode, any, (input) => api.node(ctx, input));
      conn.handle(CLIENT_EVENTS.graphNeighbors, any, (input) => api.neighbors(ctx, input));
      conn.handle(CLIENT_EVENTS.graphPath, any, (input) => api.path(ctx, input));
      conn.handle(CLIENT_EVENTS.graphRelated, any, (input) => api.related(ctx, input));
      conn.handle(CLIENT_EVENTS.graphSearch, any, (input) => api.search(ctx, input));
      conn.handle(CLIENT_EVENTS.graphUpsertNode, any, (input) => api.upsertNode(ctx, input));
      conn.handle(CLIENT_EVENTS.graphUpsertEdge, any, (input) => api.upsertEdge(ctx, input));
      conn.handle(CLIENT_EVENTS.graphSnapshot, any, (input) => api.snapshot(ctx, input));
    },
  };
}
