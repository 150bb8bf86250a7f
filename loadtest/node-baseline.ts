/**
 * The benchmark's baseline: the gateway's own routes and pipeline behind plain node:http.
 *
 * It mirrors gateway/http/uws.ts step for step (same route objects, same pipeline, same body
 * limit, same response headers) so that the uWS/Node ratio measures the transport and nothing
 * else. Anything added here that the uWS path does not do, or left out that it does, skews it.
 */
import http from 'node:http';
import type { Gateway } from '../gateway/app.js';
import { createPipeline, requestIdFrom, type Pipeline } from '../gateway/http/pipeline.js';
import { paramNames, type Route, type RouteReply } from '../gateway/http/route.js';
import { healthRoutes, memoryRoutes } from '../gateway/http/routes.js';
import type { Core } from '../src/core.js';
import type { Logger } from '../src/obs/index.js';
import { AeternaError, toWireError } from '../src/protocol/index.js';

interface CompiledRoute {
  route: Route;
  /** The pattern's segments; `undefined` marks a `:param` position. */
  segments: readonly (string | undefined)[];
  names: readonly string[];
}

function compile(route: Route): CompiledRoute {
  const segments = route.path.split('/').map((seg) => (seg.startsWith(':') ? undefined : seg));
  return { route, segments, names: paramNames(route.path) };
}

/** Per method, fewest parameters first: uWS likewise prefers a static segment over a `:param`. */
function routeTable(routes: readonly Route[]): Map<string, CompiledRoute[]> {
  const table = new Map<string, CompiledRoute[]>();
  for (const route of routes) {
    const list = table.get(route.method) ?? [];
    list.push(compile(route));
    table.set(route.method, list);
  }
  for (const list of table.values()) list.sort((a, b) => a.names.length - b.names.length);
  return table;
}

/** The route and its raw (still percent-encoded) parameter values, as uWS's getParameter gives them. */
function match(candidates: readonly CompiledRoute[], pathname: string): { compiled: CompiledRoute; raw: string[] } | undefined {
  const parts = pathname.split('/');
  for (const compiled of candidates) {
    if (compiled.segments.length !== parts.length) continue;
    const raw: string[] = [];
    const fits = compiled.segments.every((seg, i) => {
      const part = parts[i] as string;
      if (seg !== undefined) return seg === part;
      raw.push(part);
      return part.length > 0;
    });
    if (fits) return { compiled, raw };
  }
  return undefined;
}

function decodeParams(names: readonly string[], raw: readonly string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  try {
    names.forEach((name, i) => {
      params[name] = decodeURIComponent(raw[i] ?? '');
    });
  } catch {
    return undefined;
  }
  return params;
}

function send(res: http.ServerResponse, requestId: string, reply: RouteReply, closeConnection = false): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(reply.body);
  // writeHead() serialises the head at once, so without a length Node would fall back to chunked
  // framing, which uWS (it sends Content-Length) does not pay for.
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
  };
  if (reply.status === 401) headers['www-authenticate'] = 'Bearer';
  if (closeConnection) headers['connection'] = 'close';
  res.writeHead(reply.status, headers).end(body);
}

function fail(res: http.ServerResponse, requestId: string, err: AeternaError, closeConnection = false): void {
  send(res, requestId, { status: err.httpStatus, body: toWireError(err) }, closeConnection);
}

/** The uWS path's limit semantics: a declared length over the limit is refused unread, a stream when it crosses it. */
function readBody(req: http.IncomingMessage, res: http.ServerResponse, requestId: string, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const tooLarge = () =>
      fail(res, requestId, new AeternaError('PAYLOAD_TOO_LARGE', `request body exceeds ${limit} bytes`, { maxBytes: limit }), true);
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      tooLarge();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (res.headersSent) return;
      size += chunk.length;
      if (size > limit) {
        tooLarge();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(size === 0 ? undefined : Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

function handler(routes: readonly Route[], pipeline: Pipeline, opts: { maxBodyBytes: number; log: Logger }): http.RequestListener {
  const table = routeTable(routes);
  return (req, res) => {
    const requestId = requestIdFrom(req.headers['x-request-id']?.toString() ?? '');
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    const found = match(table.get(req.method ?? '') ?? [], pathname);
    if (!found) {
      fail(res, requestId, new AeternaError('NOT_FOUND', `no route for ${req.method ?? ''} ${pathname}`));
      return;
    }
    const { route, names } = found.compiled;
    const params = decodeParams(names, found.raw);
    if (!params) {
      fail(res, requestId, new AeternaError('INVALID_ARGUMENT', 'malformed percent-encoding in the path'));
      return;
    }
    const authorization = req.headers.authorization ?? '';
    const query = q === -1 ? '' : url.slice(q + 1);
    const bodyPromise = route.body ? readBody(req, res, requestId, opts.maxBodyBytes) : Promise.resolve(undefined);
    bodyPromise
      .then(async (body) => {
        if (res.headersSent || res.destroyed) return;
        send(res, requestId, await pipeline.run(route, { authorization, requestId, params, query, body }));
      })
      .catch((err: unknown) => {
        opts.log.error({ err, requestId }, 'unhandled request failure');
        send(res, requestId, { status: 500, body: { code: 'INTERNAL', message: 'internal error' } });
      });
  };
}

/** createGateway()'s HTTP half: same route set, same listen/close, so the benchmark drives both alike. */
export function createNodeBaseline(core: Core, log: Logger): Pick<Gateway, 'listen' | 'close'> {
  const pipeline = createPipeline(core.tokens, log);
  const server = http.createServer(
    handler([...healthRoutes(core), ...memoryRoutes(core)], pipeline, { maxBodyBytes: core.config.limits.maxBodyBytes, log }),
  );
  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address();
          resolve(typeof address === 'object' && address ? address.port : port);
        });
      });
    },
    async close(graceMs = 5000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
