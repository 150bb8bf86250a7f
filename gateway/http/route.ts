import type { TenantContext } from '../../src/tenancy/index.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** What a handler gets once transport, auth and body parsing are done. */
export interface RouteCall {
  /** Present on every route declared with `auth: true`. */
  tenant: TenantContext;
  params: Record<string, string>;
  query: Record<string, string>;
  body: unknown;
}

export interface RouteReply {
  status: number;
  body: unknown;
}

/**
 * A route, independent of the server it runs on: the uWS app serves these, and the benchmark's
 * node:http baseline serves the very same objects.
 */
export interface Route {
  method: HttpMethod;
  /** uWS pattern syntax: `/v1/memories/:id`. */
  path: string;
  auth: boolean;
  /** Whether the request carries a JSON body to read. */
  body: boolean;
  handle(call: RouteCall): Promise<RouteReply>;
}

/** Names of a pattern's parameters, in order (`/a/:id/b/:x` -> ['id', 'x']). */
export function paramNames(pattern: string): string[] {
  return pattern
    .split('/')
    .filter((seg) => seg.startsWith(':'))
    .map((seg) => seg.slice(1));
}
