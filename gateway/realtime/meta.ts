import { z } from 'zod';
import type { MetaApi } from '../../src/cca/index.js';
import { CLIENT_EVENTS } from '../../src/protocol/index.js';
import type { RealtimeExtension } from './types.js';

/**
 * meta.run / meta.get / meta.list / meta.testResult / meta.cancel, acked; the same MetaApi (roles, validation,
 * errors) as REST. Progress (`meta.iteration`, `meta.test`, `meta.finished`) arrives on the `meta`
 * topic: subscribe to it before starting a run, or resume with `since`.
 */
export function createMetaExtension(api: MetaApi): RealtimeExtension {
  return {
    name: 'meta',
    onConnection(conn) {
      const ctx = conn.tenant;
      const any = z.unknown();
      conn.handle(CLIENT_EVENTS.metaRun, any, (input) => api.start(ctx, input));
      conn.handle(CLIENT_EVENTS.metaGet, any, (input) => api.get(ctx, input));
      conn.handle(CLIENT_EVENTS.metaList, any, (input) => api.list(ctx, input));
      conn.handle(CLIENT_EVENTS.metaTestResult, any, (input) => api.testResult(ctx, input));
      conn.handle(CLIENT_EVENTS.metaCancel, any, (input) => api.cancel(ctx, input));
    },
  };
}
