import { io as connectSocket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SOCKET_PATHS, type EventEnvelope } from '../../src/protocol/index.js';
import { tenantCtx, tokenFor } from '../support/backends.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * A client that stops reading must not make the server buffer without bound, nor slow anyone
 * else down: once its unsent backlog passes AETERNA_WS_MAX_BUFFERED_BYTES it is disconnected.
 */
describe('a slow consumer', () => {
  let g: TestGateway;

  beforeAll(async () => {
    g = await startTestGateway({ AETERNA_WS_MAX_BUFFERED_BYTES: '65536', AETERNA_MAX_CONTENT_BYTES: '262144', AETERNA_RELAY_TICK_MS: '200' });
  });
  afterAll(async () => {
    await g?.close();
  });

  it('is disconnected while a healthy client keeps receiving every event', async () => {
    const token = await tokenFor({ tenantId: 'slow', userId: 'alice', roles: ['developer'] });

    // The slow one speaks the Engine.IO/socket.io wire protocol by hand, so it can stop reading.
    const slow = new WebSocket(`ws://127.0.0.1:${g.port}${SOCKET_PATHS.json}/?EIO=4&transport=websocket`);
    const frames: string[] = [];
    slow.on('message', (data) => frames.push(data.toString()));
    await new Promise<void>((resolve, reject) => {
      slow.once('open', () => resolve());
      slow.once('error', reject);
    });
    const waitFrame = async (prefix: string) => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const frame = frames.find((f) => f.startsWith(prefix));
        if (frame) return frame;
        if (Date.now() > deadline) throw new Error(`no ${prefix} frame; got ${frames.join(' | ')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitFrame('0{');
    slow.send(`40${JSON.stringify({ token })}`);
    await waitFrame('40{');
    slow.send(`421${JSON.stringify(['subscribe', { layers: ['project'] }])}`);
    await waitFrame('431');

    const healthy = connectSocket(g.url, { path: SOCKET_PATHS.json, transports: ['websocket'], auth: { token }, forceNew: true });
    const received: EventEnvelope[] = [];
    healthy.on('memory.added', (e: EventEnvelope) => received.push(e));
    await new Promise<void>((resolve) => healthy.once('connect', () => resolve()));
    await healthy.timeout(10_000).emitWithAck('subscribe', { layers: ['project'] });
    expect(g.gateway.realtime.connectionCount()).toBe(2);

    // Stop reading: from now on everything sent to it piles up in the kernel, then in uWS.
    (slow as unknown as { _socket: { pause(): void } })._socket.pause();
    const ctx = tenantCtx('slow');
    const filler = 'lorem ipsum dolor sit amet '.repeat(9000); // ~240 KB per event
    const writes = 80;
    for (let i = 0; i < writes; i++) {
      await g.t.core.memory.add(ctx, { layer: 'project', projectId: `p${i}`, content: `${i} ${filler} ${i * 7919}` });
      // The healthy client lives in this process: let it read between writes, as a real one would.
      await new Promise((r) => setTimeout(r, 30));
    }
    const deadline = Date.now() + 30_000;
    while ((g.gateway.realtime.connectionCount() !== 1 || received.length < writes) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(g.gateway.realtime.connectionCount()).toBe(1);
    expect(received.map((e) => e.seq)).toEqual(Array.from({ length: writes }, (_, i) => i + 1));
    expect(healthy.connected).toBe(true);
    healthy.disconnect();
    slow.terminate();
  }, 90_000);
});
