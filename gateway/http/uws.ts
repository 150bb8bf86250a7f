import uWS from 'uWebSockets.js';
import { AeternaError, toWireError } from '../../src/protocol/index.js';
import type { Logger } from '../../src/obs/index.js';
import { requestIdFrom, type Pipeline } from './pipeline.js';
import { paramNames, type Route, type RouteReply } from './route.js';

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

/**
 * One request's response. uWS invalidates the response object once the client aborts, so every
 * write checks `aborted` first, and writes after an await go through cork() (one syscall).
 */
class Responder {
  aborted = false;
  done = false;

  constructor(
    private readonly res: uWS.HttpResponse,
    private readonly requestId: string,
  ) {
    res.onAborted(() => {
      this.aborted = true;
    });
  }

  send(reply: RouteReply, closeConnection = false): void {
    if (this.aborted || this.done) return;
    this.done = true;
    const body = JSON.stringify(reply.body);
    this.res.cork(() => {
      this.res
        .writeStatus(STATUS_TEXT[reply.status] ?? String(reply.status))
        .writeHeader('content-type', 'application/json')
        .writeHeader('x-request-id', this.requestId);
      if (reply.status === 401) this.res.writeHeader('www-authenticate', 'Bearer');
      if (closeConnection) this.res.writeHeader('connection', 'close');
      this.res.end(body);
    });
  }

  fail(err: AeternaError, closeConnection = false): void {
    this.send({ status: err.httpStatus, body: toWireError(err) }, closeConnection);
  }
}

function tooLarge(limit: number): AeternaError {
  return new AeternaError('PAYLOAD_TOO_LARGE', `request body exceeds ${limit} bytes`, { maxBytes: limit });
}

/**
 * Reads the whole body, refusing it as soon as it passes `limit`: a declared Content-Length over
 * the limit is refused before a byte is read, and a chunked body when it crosses the limit.
 */
function readBody(
  res: uWS.HttpResponse,
  responder: Responder,
  declared: { length: number; chunked: boolean },
  limit: number,
): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    // With neither a length nor chunked encoding there is no body, and uWS will not call onData.
    if (declared.length === 0 && !declared.chunked) {
      resolve(undefined);
      return;
    }
    if (declared.length > limit) {
      responder.fail(tooLarge(limit), true);
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (responder.done) return;
      size += chunk.byteLength;
      if (size > limit) {
        responder.fail(tooLarge(limit), true);
        resolve(undefined);
        return;
      }
      // uWS reuses the chunk's memory after this callback returns: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (isLast) resolve(Buffer.concat(chunks, size));
    });
  });
}

function decodeParams(names: readonly string[], req: uWS.HttpRequest): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  try {
    names.forEach((name, i) => {
      params[name] = decodeURIComponent(req.getParameter(i) ?? '');
    });
  } catch {
    return undefined; // a URIError thrown here would escape into uWS and end the process
  }
  return params;
}

const UWS_METHOD = { GET: 'get', POST: 'post', PUT: 'put', PATCH: 'patch', DELETE: 'del' } as const;

export function mountRoutes(
  app: uWS.TemplatedApp,
  routes: readonly Route[],
  pipeline: Pipeline,
  opts: { maxBodyBytes: number; log: Logger; inflight: { count: number } },
): void {
  for (const route of routes) {
    const names = paramNames(route.path);
    app[UWS_METHOD[route.method]](route.path, (res, req) => {
      // uWS frees `req` when this function returns: read everything from it now.
      const requestId = requestIdFrom(req.getHeader('x-request-id'));
      const authorization = req.getHeader('authorization');
      const query = req.getQuery() ?? '';
      const declared = {
        length: Number(req.getHeader('content-length') || 0),
        chunked: req.getHeader('transfer-encoding').toLowerCase().includes('chunked'),
      };
      const responder = new Responder(res, requestId);
      const params = decodeParams(names, req);
      if (!params) {
        responder.fail(new AeternaError('INVALID_ARGUMENT', 'malformed percent-encoding in the path'));
        return;
      }
      opts.inflight.count += 1;
      const bodyPromise = route.body ? readBody(res, responder, declared, opts.maxBodyBytes) : Promise.resolve(undefined);
      bodyPromise
        .then(async (body) => {
          if (responder.done || responder.aborted) return;
          responder.send(await pipeline.run(route, { authorization, requestId, params, query, body }));
        })
        .catch((err: unknown) => {
          opts.log.error({ err, requestId }, 'unhandled request failure');
          responder.send({ status: 500, body: { code: 'INTERNAL', message: 'internal error' } });
        })
        .finally(() => {
          opts.inflight.count -= 1;
        });
    });
  }
  app.any('/*', (res, req) => {
    const responder = new Responder(res, requestIdFrom(req.getHeader('x-request-id')));
    responder.fail(new AeternaError('NOT_FOUND', `no route for ${req.getCaseSensitiveMethod().toUpperCase()} ${req.getUrl()}`));
  });
}
