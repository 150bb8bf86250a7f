import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { OpenAIEmbedder } from '../../src/embed/index.js';
import { AeternaError } from '../../src/protocol/index.js';

interface Received {
  headers: http.IncomingHttpHeaders;
  url: string | undefined;
  body: { model?: unknown; input?: unknown; dimensions?: unknown };
}

type Reply = (req: Received, res: http.ServerResponse) => void;

const DIMS = 4;
const servers: http.Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A local stand-in for an OpenAI-compatible /v1/embeddings endpoint; records every request. */
async function startProvider(reply: Reply): Promise<{ url: string; requests: Received[] }> {
  const requests: Received[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    req.on('end', () => {
      const received: Received = { headers: req.headers, url: req.url, body: JSON.parse(raw) as Received['body'] };
      requests.push(received);
      reply(received, res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1/`, requests };
}

/** A deterministic, un-normalised vector that encodes which input it belongs to. */
function vectorFor(text: string, dims = DIMS): number[] {
  return Array.from({ length: dims }, (_, i) => (i === 0 ? text.length + 1 : i + 1));
}

function inputsOf(req: Received): string[] {
  return req.body.input as string[];
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** Answers correctly, but with `data` in reverse order, as the spec allows. */
const shuffledOk: Reply = (req, res) => {
  const data = inputsOf(req).map((text, index) => ({ object: 'embedding', index, embedding: vectorFor(text) }));
  json(res, 200, { object: 'list', data: data.reverse(), model: req.body.model, usage: { prompt_tokens: 1, total_tokens: 1 } });
};

function embedderFor(url: string, extra: { apiKey?: string; timeoutMs?: number; dims?: number } = {}): OpenAIEmbedder {
  return new OpenAIEmbedder({ url, model: 'text-embedding-test', dims: extra.dims ?? DIMS, timeoutMs: extra.timeoutMs ?? 5_000, apiKey: extra.apiKey });
}

async function expectUnavailable(promise: Promise<unknown>, message: RegExp): Promise<AeternaError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AeternaError);
  const aeterna = err as AeternaError;
  expect(aeterna.code).toBe('UNAVAILABLE');
  expect(aeterna.message).toMatch(message);
  return aeterna;
}

describe('OpenAIEmbedder', () => {
  it('posts {model, input} to {url}/embeddings with the bearer key and returns unit vectors in input order', async () => {
    const provider = await startProvider(shuffledOk);
    const embedder = embedderFor(provider.url, { apiKey: 'sk-test-123' });
    const texts = ['a', 'bbb', 'cc'];
    const vectors = await embedder.embed(texts);

    expect(provider.requests).toHaveLength(1);
    const [req] = provider.requests;
    expect(req?.url).toBe('/v1/embeddings');
    expect(req?.headers.authorization).toBe('Bearer sk-test-123');
    expect(req?.headers['content-type']).toBe('application/json');
    expect(req?.body).toEqual({ model: 'text-embedding-test', input: texts });

    expect(vectors).toHaveLength(3);
    texts.forEach((text, i) => {
      const raw = vectorFor(text);
      const norm = Math.hypot(...raw);
      expect(Array.from(vectors[i] ?? [])).toEqual(raw.map((x) => Math.fround(x / norm)));
    });
    expect(embedder.model).toBe('text-embedding-test');
    expect(embedder.dims).toBe(DIMS);
  });

  it('sends no Authorization header without a key', async () => {
    const provider = await startProvider(shuffledOk);
    await embedderFor(provider.url).embed(['x']);
    expect(provider.requests[0]?.headers.authorization).toBeUndefined();
  });

  it('returns [] for no input without calling the provider', async () => {
    const provider = await startProvider(shuffledOk);
    expect(await embedderFor(provider.url).embed([])).toEqual([]);
    expect(provider.requests).toHaveLength(0);
  });

  it('splits large inputs into batches of 128 and keeps the overall order', async () => {
    const provider = await startProvider(shuffledOk);
    const texts = Array.from({ length: 300 }, (_, i) => 'x'.repeat(i));
    const vectors = await embedderFor(provider.url).embed(texts);
    expect(provider.requests.map((r) => inputsOf(r).length)).toEqual([128, 128, 44]);
    expect(provider.requests.flatMap(inputsOf)).toEqual(texts);
    texts.forEach((text, i) => {
      const raw = vectorFor(text);
      expect(vectors[i]?.[0]).toBeCloseTo(raw[0]! / Math.hypot(...raw), 6);
    });
  });

  it('turns an HTTP error into UNAVAILABLE carrying the status and the provider message', async () => {
    const provider = await startProvider((_req, res) => json(res, 500, { error: { message: 'model overloaded' } }));
    const err = await expectUnavailable(embedderFor(provider.url, { apiKey: 'sk-secret' }).embed(['a']), /HTTP 500/);
    expect(err.details).toMatchObject({ status: 500, model: 'text-embedding-test' });
    expect(String(err.details?.providerMessage)).toContain('model overloaded');
    expect(JSON.stringify(err.toWire())).not.toContain('sk-secret');
    expect(JSON.stringify(err.toWire())).not.toContain('127.0.0.1');
  });

  it('turns a body that is not JSON into UNAVAILABLE', async () => {
    const provider = await startProvider((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"data": [');
    });
    await expectUnavailable(embedderFor(provider.url).embed(['a']), /not JSON/);
  });

  it('turns JSON of the wrong shape into UNAVAILABLE', async () => {
    const provider = await startProvider((_req, res) => json(res, 200, { data: [{ embedding: 'AAAA', index: 0 }] }));
    await expectUnavailable(embedderFor(provider.url).embed(['a']), /malformed/);
  });

  it('turns vectors of the wrong dimension into UNAVAILABLE naming both sizes', async () => {
    const provider = await startProvider((req, res) =>
      json(res, 200, { data: inputsOf(req).map((t, index) => ({ index, embedding: vectorFor(t, DIMS + 1) })) }),
    );
    const err = await expectUnavailable(embedderFor(provider.url).embed(['a', 'b']), /5-dimensional .* 4 are configured/);
    expect(err.details).toMatchObject({ expected: DIMS, received: DIMS + 1 });
  });

  it('turns a wrong number of vectors into UNAVAILABLE', async () => {
    const provider = await startProvider((req, res) =>
      json(res, 200, { data: inputsOf(req).slice(1).map((t, index) => ({ index, embedding: vectorFor(t) })) }),
    );
    await expectUnavailable(embedderFor(provider.url).embed(['a', 'b', 'c']), /2 vectors for 3 inputs/);
  });

  it('turns duplicate indexes into UNAVAILABLE rather than returning a hole', async () => {
    const provider = await startProvider((req, res) => json(res, 200, { data: inputsOf(req).map((t) => ({ index: 0, embedding: vectorFor(t) })) }));
    await expectUnavailable(embedderFor(provider.url).embed(['a', 'b']), /duplicate index/);
  });

  it('turns a zero vector into UNAVAILABLE rather than NaN', async () => {
    const provider = await startProvider((_req, res) => json(res, 200, { data: [{ index: 0, embedding: [0, 0, 0, 0] }] }));
    await expectUnavailable(embedderFor(provider.url).embed(['a']), /zero/);
  });

  it('fails the whole call, with no partial result, when a later batch fails', async () => {
    let calls = 0;
    const provider = await startProvider((req, res) => (++calls === 2 ? json(res, 503, {}) : shuffledOk(req, res)));
    await expectUnavailable(embedderFor(provider.url).embed(Array.from({ length: 200 }, (_, i) => `t${i}`)), /HTTP 503/);
    expect(provider.requests).toHaveLength(2);
  });

  it('gives up after timeoutMs on a provider that never answers', async () => {
    const provider = await startProvider(() => {
      // Never respond: the request hangs until the client aborts it.
    });
    const err = await expectUnavailable(embedderFor(provider.url, { timeoutMs: 200 }).embed(['a']), /did not answer within 200 ms/);
    expect(err.details).toMatchObject({ timeoutMs: 200 });
  });

  it('turns a refused connection into UNAVAILABLE', async () => {
    const provider = await startProvider(shuffledOk);
    const url = provider.url;
    for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
    const err = await expectUnavailable(embedderFor(url).embed(['a']), /could not be reached \(ECONNREFUSED\)/);
    expect(JSON.stringify(err.toWire())).not.toContain('127.0.0.1');
  });

  it('uses an injected fetch', async () => {
    const seen: string[] = [];
    const fakeFetch: typeof fetch = async (input) => {
      seen.push(String(input));
      return new Response(JSON.stringify({ data: [{ index: 0, embedding: [3, 4, 0, 0] }] }), { status: 200 });
    };
    const embedder = new OpenAIEmbedder({ url: 'https://example.invalid/v1', model: 'm', dims: DIMS, timeoutMs: 1_000, fetch: fakeFetch });
    const [v] = await embedder.embed(['hello']);
    expect(seen).toEqual(['https://example.invalid/v1/embeddings']);
    expect(Array.from(v ?? [])).toEqual([0.6000000238418579, 0.800000011920929, 0, 0]);
  });

  it('rejects a bad configuration up front', () => {
    expect(() => embedderFor('not a url')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => embedderFor('ftp://host/v1')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => embedderFor('http://host/v1', { dims: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
