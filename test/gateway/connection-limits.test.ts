import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../../gateway/app.js';
import { createLogger } from '../../src/obs/index.js';
import { SOCKET_PATHS, msgpackParser } from '../../src/protocol/index.js';
import { openTestCore, tokenFor, type TestCore } from '../support/backends.js';

describe('connection limits', () => {
  let t: TestCore;
  let gateway: Gateway;
  let base: string;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    t = await openTestCore('pglite', { AETERNA_TENANT_MAX_CONNECTIONS: '2', AETERNA_PING_INTERVAL_MS: '1000', AETERNA_PING_TIMEOUT_MS: '1000' });
    gateway = createGateway(t.core, createLogger('silent'));
    base = `http://127.0.0.1:${await gateway.listen('127.0.0.1', 0)}`;
  });
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await gateway?.close(500);
    await t?.close();
  });

  function open(token: string): Promise<Socket> {
    const socket = connectSocket(base, { path: SOCKET_PATHS.msgpack, parser: msgpackParser, transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true });
    sockets.push(socket);
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  }

  it('refuses a tenant past its connection cap, without affecting other tenants, and admits again when one leaves', async () => {
    const acme = await tokenFor({ tenantId: 'capped', userId: 'alice', roles: ['viewer'] });
    const other = await tokenFor({ tenantId: 'uncapped', userId: 'bob', roles: ['viewer'] });
    const first = await open(acme);
    await open(acme);
    const refused = (await open(acme).catch((e: unknown) => e)) as Error & { data?: { code: string; details?: { reason: string } } };
    expect(refused.data).toMatchObject({ code: 'RATE_LIMITED', details: { reason: 'tenant_connection_limit' } });
    await expect(open(other)).resolves.toBeDefined();
    first.disconnect();
    await new Promise((r) => setTimeout(r, 200));
    await expect(open(acme)).resolves.toBeDefined();
  });

  it('drops a peer that stops answering heartbeats', async () => {
    const token = await tokenFor({ tenantId: 'heartbeat', userId: 'alice', roles: ['viewer'] });
    const socket = await open(token);
    const before = gateway.realtime.connectionCount();
    // Stop the client's engine from answering pings without closing its TCP connection.
    const engine = socket.io.engine as unknown as { transport: { ws?: { _socket?: { pause(): void } }; socket?: { _socket?: { pause(): void } } } };
    const raw = engine.transport.ws?._socket ?? engine.transport.socket?._socket;
    expect(raw).toBeDefined();
    raw?.pause();
    const deadline = Date.now() + 10_000;
    while (gateway.realtime.connectionCount() >= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(gateway.realtime.connectionCount()).toBe(before - 1);
  });
});
