import { io as connectSocket, type Socket } from 'socket.io-client';
import { createGateway, type Gateway } from '../../gateway/app.js';
import { createProcessors } from '../../workers/processors/index.js';
import { createLogger } from '../../src/obs/index.js';
import { SOCKET_PATHS, msgpackParser } from '../../src/protocol/index.js';
import { openTestCore, type TestCore } from './backends.js';

/** A gateway in this process over embedded PGlite, listening on a free loopback port. */
export interface TestGateway {
  t: TestCore;
  gateway: Gateway;
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Run the workers' processors in-process, as `npm start` does in embedded mode. */
  jobs?: boolean;
}

export async function startTestGateway(env: Record<string, string> = {}, opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const t = await openTestCore('pglite', env);
  const log = createLogger('silent');
  const gateway = createGateway(t.core, log, opts.jobs ? { processors: createProcessors({ core: t.core, log }) } : {});
  const port = await gateway.listen('127.0.0.1', 0);
  return {
    t,
    gateway,
    port,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await gateway.close(500);
      await t.close();
    },
  };
}

export interface OpenSocketOptions {
  flavor?: keyof typeof SOCKET_PATHS;
  transports?: ('websocket' | 'polling')[];
}

/** A raw socket.io client, connected (or rejected with the server's connect_error). */
export function openSocket(url: string, token: string | undefined, opts: OpenSocketOptions = {}): Promise<Socket> {
  const flavor = opts.flavor ?? 'msgpack';
  const socket = connectSocket(url, {
    path: SOCKET_PATHS[flavor],
    ...(flavor === 'msgpack' ? { parser: msgpackParser } : {}),
    transports: opts.transports ?? ['websocket'],
    auth: token === undefined ? {} : { token },
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(err);
    });
  });
}

/** Polls until `check` holds; fails naming `what` after `ms`. No timing assertion: a bound. */
export async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface RestReply<B = Record<string, unknown>> {
  status: number;
  body: B;
}

/** One JSON request to a gateway (a string body is sent as it is), with a bearer token when given; the reply's status and parsed body. */
export async function restCall<B = Record<string, unknown>>(baseUrl: string, method: string, route: string, token: string | undefined, body?: unknown): Promise<RestReply<B>> {
  const res = await fetch(`${baseUrl}${route}`, {
    method,
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as B };
}
