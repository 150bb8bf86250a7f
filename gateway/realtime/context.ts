import { z } from 'zod';
import type { ContextApi } from '../../src/cca/index.js';
import { CLIENT_EVENTS } from '../../src/protocol/index.js';
import type { RealtimeExtension } from './types.js';

/** context.assemble and memory.summaries, acked; the same ContextApi (roles, validation, errors) as REST. */
export function createContextExtension(api: ContextApi): RealtimeExtension {
  return {
    name: 'context',
    onConnection(conn) {
      const ctx = conn.tenant;
      conn.handle(CLIENT_EVENTS.contextAssemble, z.unknown(), (input) => api.assemble(ctx, input));
      conn.handle(CLIENT_EVENTS.memorySummaries, z.unknown(), (input) => api.summaries(ctx, input));
    },
  };
}
