import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenFor } from '../support/backends.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { requireService } from '../support/index.js';

const python = requireService('python');
const AGENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'python/agent.py');

interface Step {
  refused?: boolean;
  reason?: string;
  ready?: boolean;
  transport?: string;
  added?: { ok: boolean; data?: { memory: { id: string } } };
  invalid?: { ok: boolean; error?: { code: string; details?: { field: string } } };
  found?: { ok: boolean; data?: { results: { memory: { id: string } }[] } };
  subscribed?: { ok: boolean; data?: { recovered: boolean; events: { seq: number }[] } };
  received?: { seq: number; type: string; data: { memory: { content: string } } }[];
}

/** A real non-JavaScript client: Debian's python3-socketio, speaking socket.io's JSON protocol. */
describe.skipIf(!python)('a python-socketio agent on the JSON endpoint', () => {
  let g: TestGateway;
  let base: string;

  beforeAll(async () => {
    g = await startTestGateway({ AETERNA_RELAY_TICK_MS: '200' });
    base = g.url;
  });
  afterAll(async () => {
    await g?.close();
  });

  it.each(['websocket', 'polling'])('works over %s: auth, acks, errors, replay and live events', async (transport) => {
    const tenantId = `py-${transport}`;
    const token = await tokenFor({ tenantId, userId: 'pyagent', roles: ['developer'] });
    const child = spawn(python as string, [AGENT, base, token, transport, 'not-a-token'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const steps: Step[] = [];
    let stderr = '';
    let buffer = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout.on('data', (c: Buffer) => {
      buffer += c.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        steps.push(JSON.parse(buffer.slice(0, nl)) as Step);
        buffer = buffer.slice(nl + 1);
      }
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const deadline = Date.now() + 30_000;
    while (!steps.some((s) => s.ready) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 25));
    const ready = steps.find((s) => s.ready);
    expect(ready, stderr).toBeDefined();
    for (const content of ['live one', 'live two']) {
      const res = await fetch(`${base}/v1/memories`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ layer: 'project', projectId: 'py', content }),
      });
      expect(res.status).toBe(201);
    }
    expect(await exited, stderr).toBe(0);

    expect(steps[0]).toMatchObject({ refused: true });
    expect(ready?.transport).toBe(transport);
    expect(ready?.added).toMatchObject({ ok: true });
    expect(ready?.invalid).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', details: { field: 'projectId' } } });
    expect(ready?.found?.data?.results[0]?.memory.id).toBe(ready?.added?.data?.memory.id);
    expect(ready?.subscribed).toMatchObject({ ok: true, data: { recovered: true, events: [{ seq: 1 }] } });
    const received = steps.find((s) => s.received)?.received ?? [];
    expect(received.map((e) => [e.seq, e.type, e.data.memory.content])).toEqual([
      [2, 'memory.added', 'live one'],
      [3, 'memory.added', 'live two'],
    ]);
  });
});
