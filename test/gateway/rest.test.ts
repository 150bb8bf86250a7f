import net from 'node:net';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../../gateway/app.js';
import { createLogger } from '../../src/obs/index.js';
import { backends, openTestCore, tokenFor, type TestCore } from '../support/backends.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

describe.each(backends())('REST API on uWS (%s)', (backend) => {
  let t: TestCore;
  let gateway: Gateway;
  let base: string;
  let port: number;
  let dev: string;
  let admin: string;
  let viewer: string;
  let otherTenant: string;

  async function call(method: string, path: string, opts: { token?: string | null; body?: unknown; raw?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const token = opts.token === undefined ? dev : opts.token;
    if (token !== null) headers['authorization'] = `Bearer ${token}`;
    const res = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(opts.raw !== undefined ? { body: opts.raw } : opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
  }

  const add = (body: unknown, token?: string) => call('POST', '/v1/memories', { body, ...(token ? { token } : {}) });
  const memoryCount = async () => ((await call('GET', '/v1/memories?limit=100')).body['items'] as unknown[]).length;

  beforeAll(async () => {
    t = await openTestCore(backend);
    gateway = createGateway(t.core, createLogger('silent'));
    port = await gateway.listen('127.0.0.1', 0);
    base = `http://127.0.0.1:${port}`;
    dev = await tokenFor({ tenantId: 'acme', userId: 'alice', roles: ['developer'] });
    admin = await tokenFor({ tenantId: 'acme', userId: 'root', roles: ['admin'] });
    viewer = await tokenFor({ tenantId: 'acme', userId: 'val', roles: ['viewer'] });
    otherTenant = await tokenFor({ tenantId: 'globex', userId: 'mallory', roles: ['admin'] });
  });
  afterAll(async () => {
    await gateway?.close(1000);
    await t?.close();
  });

  it('answers health and readiness without a token', async () => {
    expect(await call('GET', '/healthz', { token: null })).toMatchObject({ status: 200, body: { status: 'ok' } });
    const ready = await call('GET', '/readyz', { token: null });
    expect(ready).toMatchObject({ status: 200, body: { status: 'ready', db: backend } });
  });

  it('runs the whole memory life cycle', async () => {
    const created = await add({ layer: 'project', projectId: 'apollo', content: 'Release train leaves every second Tuesday', tags: ['release'] });
    expect(created.status).toBe(201);
    const memory = created.body['memory'] as { id: string; version: number };
    expect(created.headers.get('x-request-id')).toBeTruthy();

    const twin = await add({ layer: 'project', projectId: 'apollo', content: 'Release train leaves every second Tuesday' });
    expect(twin).toMatchObject({ status: 200, body: { deduplicated: true, duplicateOf: memory.id } });

    expect(await call('GET', `/v1/memories/${memory.id}`)).toMatchObject({ status: 200, body: { memory: { id: memory.id } } });
    const listed = await call('GET', '/v1/memories?layer=project&projectId=apollo&tags=release');
    expect((listed.body['items'] as { id: string }[]).map((m) => m.id)).toEqual([memory.id]);

    const found = await call('POST', '/v1/memories/search', { body: { query: 'when does the release train leave', limit: 3 } });
    expect(found.status).toBe(200);
    expect((found.body['results'] as { memory: { id: string } }[])[0]?.memory.id).toBe(memory.id);

    const patched = await call('PATCH', `/v1/memories/${memory.id}`, { body: { version: 1, content: 'Release train leaves every Tuesday' } });
    expect(patched).toMatchObject({ status: 200, body: { memory: { version: 2 } } });
    const stale = await call('PATCH', `/v1/memories/${memory.id}`, { body: { version: 1, content: 'older' } });
    expect(stale).toMatchObject({ status: 409, body: { code: 'CONFLICT', details: { currentVersion: 2 } } });

    const rated = await call('POST', `/v1/memories/${memory.id}/feedback`, { body: { type: 'helpful', score: 0.5 } });
    expect(rated).toMatchObject({ status: 200, body: { memory: { importance: 0.55 } } });

    expect((await call('DELETE', `/v1/memories/${memory.id}`)).status).toBe(403);
    expect(await call('DELETE', `/v1/memories/${memory.id}`, { token: admin })).toMatchObject({ status: 200, body: { alreadyDeleted: false } });
    expect(await call('DELETE', `/v1/memories/${memory.id}`, { token: admin })).toMatchObject({ status: 200, body: { alreadyDeleted: true } });
    expect(await call('GET', `/v1/memories/${memory.id}`)).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });

    const events = await call('GET', '/v1/events?since=0&limit=10');
    expect((events.body['events'] as { seq: number; type: string }[]).map((e) => [e.seq, e.type])).toEqual([
      [1, 'memory.added'],
      [2, 'memory.updated'],
      [3, 'memory.feedback'],
      [4, 'memory.deleted'],
    ]);
    const after = await call('GET', '/v1/events?since=3');
    expect((after.body['events'] as { seq: number }[]).map((e) => e.seq)).toEqual([4]);
  });

  it('refuses missing, expired, unsigned, wrong-secret and malformed tokens with 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ tenant: 'acme', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('alice')
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(new TextEncoder().encode('test-secret-0123456789abcdef0123456789abcdef'));
    const unsigned = new UnsecuredJWT({ tenant: 'acme', sub: 'alice', roles: ['admin'] }).encode();
    const wrongSecret = await new SignJWT({ tenant: 'acme', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('alice')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('some-other-secret-that-is-long-enough-0000'));
    const sqlTenant = await tokenFor({ tenantId: "acme'; DROP TABLE memories;--", userId: 'alice', roles: ['admin'] });
    const cases: [string, string | null, RegExp][] = [
      ['missing', null, /missing bearer token/],
      ['expired', expired, /expired/],
      ['unsigned', unsigned, /./],
      ['wrong secret', wrongSecret, /signature/],
      ['garbage', 'not.a.jwt', /./],
      ['SQL in tenant claim', sqlTenant, /tenant/],
    ];
    for (const [name, token, message] of cases) {
      const reply = await call('GET', '/v1/memories', { token });
      expect(reply.status, name).toBe(401);
      expect(reply.body['code'], name).toBe('UNAUTHENTICATED');
      expect(String(reply.body['message']), name).toMatch(message);
      expect(reply.headers.get('www-authenticate'), name).toBe('Bearer');
    }
  });

  it('answers 404, not 403, for a memory of another tenant', async () => {
    const { body } = await add({ layer: 'org', orgId: 'acme-org', content: 'acme internal pricing' });
    const id = (body['memory'] as { id: string }).id;
    for (const [method, path, payload] of [
      ['GET', `/v1/memories/${id}`, undefined],
      ['PATCH', `/v1/memories/${id}`, { version: 1, content: 'x' }],
      ['DELETE', `/v1/memories/${id}`, undefined],
      ['POST', `/v1/memories/${id}/feedback`, { type: 'helpful' }],
    ] as const) {
      const reply = await call(method, path, { token: otherTenant, ...(payload ? { body: payload } : {}) });
      expect(reply, `${method} ${path}`).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    }
    expect((await call('GET', `/v1/memories/${id}`)).status).toBe(200);
  });

  it('rejects bad input with a clear error and writes nothing', async () => {
    const before = await memoryCount();
    const cases: [string, { body?: unknown; raw?: string }, number, string, RegExp?][] = [
      ['malformed JSON', { raw: '{"layer": "project",' }, 400, 'INVALID_ARGUMENT', /malformed JSON/],
      ['JSON array', { raw: '[1,2]' }, 400, 'INVALID_ARGUMENT', /JSON object/],
      ['empty body', { raw: '' }, 400, 'INVALID_ARGUMENT', /JSON object/],
      ['wrong type', { body: { layer: 'project', projectId: 'p', content: 12 } }, 400, 'INVALID_ARGUMENT', /content/],
      ['unknown layer', { body: { layer: 'galaxy', projectId: 'p', content: 'x' } }, 400, 'INVALID_ARGUMENT', /layer/],
      ['missing scope id', { body: { layer: 'team', content: 'x' } }, 400, 'INVALID_ARGUMENT', /teamId/],
      ['over-long content', { body: { layer: 'project', projectId: 'p', content: 'y'.repeat(70_000) } }, 413, 'PAYLOAD_TOO_LARGE', /content/],
      ['SQL in a scope id', { body: { layer: 'project', projectId: "p' OR '1'='1", content: 'x' } }, 400, 'INVALID_ARGUMENT', /projectId/],
    ];
    for (const [name, req, status, code, message] of cases) {
      const reply = await call('POST', '/v1/memories', req);
      expect(reply.status, name).toBe(status);
      expect(reply.body['code'], name).toBe(code);
      if (message) expect(String(reply.body['message']), name).toMatch(message);
    }
    const missing = await call('POST', '/v1/memories', { body: { layer: 'team', content: 'x' } });
    expect(missing.body['details']).toEqual({ field: 'teamId' });
    expect(await call('GET', '/v1/memories?limit=abc')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', '/v1/memories/%E0%A4%A')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('GET', '/v1/memories/not-a-uuid')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
    expect(await call('POST', '/v1/memories/search', { body: { query: 'x', threshold: 7 } })).toMatchObject({ status: 400 });
    expect(await add({ layer: 'project', projectId: 'p', content: 'viewer write' }, viewer)).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect(await memoryCount()).toBe(before);
  });

  it('refuses bodies over the size limit with 413, declared or streamed', async () => {
    const big = JSON.stringify({ layer: 'project', projectId: 'p', content: 'z'.repeat(1024 * 1024 + 10) });
    const declared = await call('POST', '/v1/memories', { raw: big });
    expect(declared).toMatchObject({ status: 413, body: { code: 'PAYLOAD_TOO_LARGE' } });

    // Chunked transfer: no Content-Length to check up front, so the limit must trip mid-stream.
    const chunks = (async function* () {
      for (let i = 0; i < 20; i++) yield new TextEncoder().encode('x'.repeat(64 * 1024));
    })();
    const res = await fetch(`${base}/v1/memories`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev}`, 'content-type': 'application/json' },
      body: chunks as unknown as RequestInit["body"],
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await call('GET', '/healthz', { token: null })).status).toBe(200);
  });

  it('survives clients that abort mid-request', async () => {
    const before = await memoryCount();
    const body = JSON.stringify({ layer: 'project', projectId: 'p', content: 'aborted write' });
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write(
            `POST /v1/memories HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${dev}\r\ncontent-type: application/json\r\n` +
              `content-length: ${body.length}\r\n\r\n${body.slice(0, 10 + i)}`,
          );
          setTimeout(() => {
            socket.destroy();
            resolve();
          }, 5);
        });
        socket.on('error', () => resolve());
      });
    }
    // Full requests whose client disappears before the answer: the server finishes, writes nothing back.
    for (let i = 0; i < 5; i++) {
      const controller = new AbortController();
      const pending = fetch(`${base}/v1/memories/search`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dev}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query: `abort probe ${i}` }),
        signal: controller.signal,
      }).catch(() => undefined);
      controller.abort();
      await pending;
    }
    expect((await call('GET', '/healthz', { token: null })).status).toBe(200);
    expect(await memoryCount()).toBe(before);
  });

  it("records the caller's x-request-id as the trace id of the events it wrote", async () => {
    const res = await fetch(`${base}/v1/memories`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev}`, 'content-type': 'application/json', 'x-request-id': 'trace-42.a' },
      body: JSON.stringify({ layer: 'project', projectId: 'trace', content: 'traced write' }),
    });
    expect(res.headers.get('x-request-id')).toBe('trace-42.a');
    const { events } = (await call('GET', '/v1/events?since=0&limit=1000')).body as { events: { traceId: string; type: string }[] };
    expect(events.at(-1)).toMatchObject({ type: 'memory.added', traceId: 'trace-42.a' });
    const odd = await fetch(`${base}/healthz`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(odd.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers unknown routes with a JSON 404', async () => {
    expect(await call('GET', '/v2/nothing')).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    expect(await call('PUT', '/v1/memories')).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
  });
});
