import { randomUUID } from 'node:crypto';
import { AeternaError, isAeternaError, toWireError } from '../../src/protocol/index.js';
import type { TokenVerifier } from '../../src/tenancy/index.js';
import type { Logger } from '../../src/obs/index.js';
import type { Route, RouteReply } from './route.js';

/** A request as every transport hands it over, already read in full. */
export interface IncomingRequest {
  authorization: string;
  requestId: string;
  params: Record<string, string>;
  query: string;
  body: Buffer | undefined;
}

export interface Pipeline {
  run(route: Route, req: IncomingRequest): Promise<RouteReply>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A caller's x-request-id when it is sane, else a fresh one; it becomes the trace id. */
export function requestIdFrom(header: string): string {
  return REQUEST_ID.test(header) ? header : randomUUID();
}

function parseQuery(query: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(query)) out[key] = value;
  return out;
}

function parseJsonBody(body: Buffer | undefined): unknown {
  if (!body || body.length === 0) throw new AeternaError('INVALID_ARGUMENT', 'request body must be a JSON object');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new AeternaError('INVALID_ARGUMENT', `malformed JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AeternaError('INVALID_ARGUMENT', 'request body must be a JSON object');
  }
  return value;
}

/**
 * Auth, parsing and error mapping, shared by every transport: a handler sees only validated
 * calls, and whatever it throws leaves as `{code, message, details?}` with the matching status.
 */
export function createPipeline(tokens: TokenVerifier, log: Logger): Pipeline {
  return {
    async run(route, req) {
      try {
        let tenant;
        if (route.auth) {
          const match = /^Bearer\s+(\S+)\s*$/i.exec(req.authorization);
          if (!match?.[1]) throw new AeternaError('UNAUTHENTICATED', 'missing bearer token');
          tenant = { ...(await tokens.verify(match[1])), traceId: req.requestId };
        }
        const body = route.body ? parseJsonBody(req.body) : undefined;
        return await route.handle({
          // Routes declared without auth never read `tenant`; the cast keeps RouteCall simple.
          tenant: tenant as NonNullable<typeof tenant>,
          params: req.params,
          query: parseQuery(req.query),
          body,
        });
      } catch (err) {
        if (!isAeternaError(err)) log.error({ err, path: route.path, requestId: req.requestId }, 'request failed');
        const wire = toWireError(err);
        return { status: isAeternaError(err) ? err.httpStatus : 500, body: wire };
      }
    },
  };
}
