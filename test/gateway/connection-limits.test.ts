import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenFor } from '../support/backends.js';
import { openSocket, startTestGateway, type TestGateway } from '../support/gateway.js';

describe('connection limits', () => {
  let g: TestGateway;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    g = await startTestGateway({ AETERNA_TENANT_MAX_CONNECTIONS: '2', AETERNA_PING_INTERVAL_MS: '1000', AETERNA_PING_TIMEOUT_MS: '1000' });
  });
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await g?.close();
  });

  async function open(token: string): Promise<Socket> {
    const socket = await openSocket(g.url, token);
    sockets.push(socket);
    return socket;
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
    const before = g.gateway.realtime.connectionCount();
    // Stop the client's engine from answering pings without closing its TCP connection.
    const engine = socket.io.engine as unknown as { transport: { ws?: { _socket?: { pause(): void } }; socket?: { _socket?: { pause(): void } } } };
    const raw = engine.transport.ws?._socket ?? engine.transport.socket?._socket;
    expect(raw).toBeDefined();
    raw?.pause();
    const deadline = Date.now() + 10_000;
    while (g.gateway.realtime.connectionCount() >= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(g.gateway.realtime.connectionCount()).toBe(before - 1);
  });
});
