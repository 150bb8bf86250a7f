import uWS from 'uWebSockets.js';
import type { Core } from '../src/core.js';
import type { Logger } from '../src/obs/index.js';
import { createPipeline } from './http/pipeline.js';
import { healthRoutes, memoryRoutes } from './http/routes.js';
import { mountRoutes } from './http/uws.js';

export interface Gateway {
  /** Resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting, waits up to `graceMs` for in-flight requests, then closes every socket. */
  close(graceMs?: number): Promise<void>;
}

/**
 * The package's own fallback swaps in a slow Node implementation when the native addon fails to
 * load; running on it would silently void every performance claim, so refuse instead.
 */
function assertNativeUws(): void {
  if (typeof (uWS as unknown as Record<string, unknown>)['SSLApp'] !== 'function') {
    throw new Error('uWebSockets.js native addon did not load (the JS fallback is not supported)');
  }
}

export function createGateway(core: Core, log: Logger): Gateway {
  assertNativeUws();
  const app = uWS.App();
  const inflight = { count: 0 };
  const pipeline = createPipeline(core.tokens, log);
  mountRoutes(app, [...healthRoutes(core), ...memoryRoutes(core)], pipeline, {
    maxBodyBytes: core.config.limits.maxBodyBytes,
    log,
    inflight,
  });
  let listenSocket: uWS.us_listen_socket | undefined;

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        app.listen(host, port, (socket) => {
          if (!socket) {
            reject(new Error(`could not listen on ${host}:${port}`));
            return;
          }
          listenSocket = socket;
          resolve(uWS.us_socket_local_port(socket));
        });
      });
    },
    async close(graceMs = 5000) {
      if (listenSocket) uWS.us_listen_socket_close(listenSocket);
      listenSocket = undefined;
      const deadline = Date.now() + graceMs;
      while (inflight.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // close() exists in this uWS build (it drops every open socket) but is missing from its typings.
      (app as unknown as { close(): void }).close();
    },
  };
}
