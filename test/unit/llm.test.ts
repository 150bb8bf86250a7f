import { afterEach, describe, expect, it } from 'vitest';
import { OpenAiChatLlm, chatCompletionsUrl, createLlm, type LlmRequest } from '../../src/cca/index.js';
import { AeternaError } from '../../src/protocol/index.js';
import { startLlmServer, type LlmServer } from '../support/index.js';

const servers: LlmServer[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function provider(...replies: Parameters<LlmServer['enqueue']>): Promise<LlmServer> {
  const server = await startLlmServer({ replies });
  servers.push(server);
  return server;
}

/** Retries wait milliseconds, not seconds, so the tests stay quick; the policy is what is tested. */
function llmFor(url: string, extra: { apiKey?: string; timeoutMs?: number; attempts?: number } = {}): OpenAiChatLlm {
  return new OpenAiChatLlm({
    url,
    model: 'test-model',
    timeoutMs: extra.timeoutMs ?? 5_000,
    ...(extra.apiKey ? { apiKey: extra.apiKey } : {}),
    retry: { attempts: extra.attempts ?? 3, baseDelayMs: 5, maxDelayMs: 20 },
  });
}

const ask: LlmRequest = { messages: [{ role: 'user', content: 'Say hi' }] };

async function failure(promise: Promise<unknown>, code: AeternaError['code'], message: RegExp): Promise<AeternaError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AeternaError);
  const aeterna = err as AeternaError;
  expect(aeterna.code).toBe(code);
  expect(aeterna.message).toMatch(message);
  return aeterna;
}

describe('chatCompletionsUrl', () => {
  it.each([
    ['https://api.openai.com/v1', 'https://api.openai.com/v1/chat/completions'],
    ['https://api.openai.com/v1/', 'https://api.openai.com/v1/chat/completions'],
    ['http://localhost:11434', 'http://localhost:11434/v1/chat/completions'],
    ['http://localhost:11434/', 'http://localhost:11434/v1/chat/completions'],
    ['https://openrouter.ai/api/v1', 'https://openrouter.ai/api/v1/chat/completions'],
    ['https://generativelanguage.googleapis.com/v1beta/openai/', 'https://generativelanguage.googleapis.com/v1beta/openai/chat/completions'],
    ['http://gw.internal/llm', 'http://gw.internal/llm/v1/chat/completions'],
    ['http://h/v1/chat/completions', 'http://h/v1/chat/completions'],
    ['https://x.azure.com/openai/deployments/d?api-version=2024-06-01', 'https://x.azure.com/openai/deployments/d/v1/chat/completions?api-version=2024-06-01'],
  ])('%s → %s', (url, expected) => {
    expect(chatCompletionsUrl(url)).toBe(expected);
  });

  it('rejects what is not an http(s) URL', () => {
    expect(() => chatCompletionsUrl('not a url')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => chatCompletionsUrl('ftp://h/v1')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('OpenAiChatLlm', () => {
  it('posts the messages to {url}/chat/completions with the bearer key and returns text, usage and model', async () => {
    const server = await provider({ content: 'Hi!', model: 'test-model-2024', usage: { prompt_tokens: 12, completion_tokens: 3 } });
    const res = await llmFor(server.url, { apiKey: 'sk-test-123' }).complete({ ...ask, maxTokens: 50, temperature: 0 });

    expect(res).toEqual({ text: 'Hi!', usage: { promptTokens: 12, completionTokens: 3 }, model: 'test-model-2024', finishReason: 'stop' });
    expect(server.requests).toHaveLength(1);
    const [req] = server.requests;
    expect(req?.path).toBe('/v1/chat/completions');
    expect(req?.headers.authorization).toBe('Bearer sk-test-123');
    expect(req?.headers['content-type']).toBe('application/json');
    expect(req?.body).toEqual({ model: 'test-model', messages: ask.messages, max_tokens: 50, temperature: 0 });
  });

  it('asks for a JSON object in json mode, and only then', async () => {
    const server = await provider('{"a":1}', 'plain');
    const llm = llmFor(server.url);
    expect((await llm.complete({ ...ask, json: true })).text).toBe('{"a":1}');
    await llm.complete(ask);
    expect(server.requests[0]?.body?.response_format).toEqual({ type: 'json_object' });
    expect(server.requests[1]?.body).not.toHaveProperty('response_format');
  });

  it('sends no Authorization header without a key', async () => {
    const server = await provider('ok');
    await llmFor(server.url).complete(ask);
    expect(server.requests[0]?.headers.authorization).toBeUndefined();
  });

  it('reports zero usage and the configured model when the provider leaves them out', async () => {
    const server = await startLlmServer({
      replies: [{ status: 200, json: { choices: [{ message: { role: 'assistant', content: 'x' } }] } }],
    });
    servers.push(server);
    expect(await llmFor(server.url).complete(ask)).toEqual({ text: 'x', usage: { promptTokens: 0, completionTokens: 0 }, model: 'test-model' });
  });

  it('passes finish_reason "length" on, so callers can tell a cut-off reply', async () => {
    const server = await provider({ content: '{"entities": [', finishReason: 'length' });
    expect((await llmFor(server.url).complete(ask)).finishReason).toBe('length');
  });

  it('retries a 429 and then succeeds', async () => {
    const server = await provider({ status: 429, json: { error: { message: 'slow down' } }, headers: { 'retry-after': '0' } }, 'after the wait');
    expect((await llmFor(server.url).complete(ask)).text).toBe('after the wait');
    expect(server.requests).toHaveLength(2);
  });

  it('retries 5xx and gives up after the configured attempts with UNAVAILABLE', async () => {
    const server = await provider(...Array.from({ length: 5 }, () => ({ status: 500, json: { error: { message: 'model overloaded' } } })));
    const err = await failure(llmFor(server.url, { apiKey: 'sk-secret', attempts: 3 }).complete(ask), 'UNAVAILABLE', /HTTP 500 \(3 tries\)/);
    expect(server.requests).toHaveLength(3);
    expect(err.details).toMatchObject({ status: 500, attempts: 3, retryable: true, model: 'test-model' });
    expect(String(err.details?.providerMessage)).toContain('model overloaded');
    expect(JSON.stringify(err.toWire())).not.toContain('sk-secret');
    expect(JSON.stringify(err.toWire())).not.toContain('127.0.0.1');
  });

  it('does not retry a 4xx that another try cannot fix', async () => {
    const server = await provider({ status: 401, json: { error: { message: 'bad key' } } }, 'never reached');
    const err = await failure(llmFor(server.url).complete(ask), 'UNAVAILABLE', /HTTP 401$/);
    expect(err.details).toMatchObject({ status: 401, retryable: false });
    expect(server.requests).toHaveLength(1);
  });

  it('gives up after timeoutMs on a provider that never answers, without retrying', async () => {
    const server = await provider({ hang: true }, 'never reached');
    const err = await failure(llmFor(server.url, { timeoutMs: 200 }).complete(ask), 'UNAVAILABLE', /did not answer within 200 ms/);
    expect(err.details).toMatchObject({ timeoutMs: 200, retryable: false });
    expect(server.requests).toHaveLength(1);
  });

  it('turns a 200 body that is not JSON into INTERNAL', async () => {
    const server = await provider({ status: 200, body: '{"choices": [' });
    await failure(llmFor(server.url).complete(ask), 'INTERNAL', /not JSON/);
  });

  it.each([
    ['no choices', { choices: [] }],
    ['content null (a refusal or tool call)', { choices: [{ message: { role: 'assistant', content: null } }] }],
    ['an error object with status 200', { error: { message: 'oops' } }],
  ])('turns JSON of the wrong shape (%s) into INTERNAL', async (_what, json) => {
    const server = await provider({ status: 200, json });
    const err = await failure(llmFor(server.url).complete(ask), 'INTERNAL', /malformed response/);
    expect(err.details).toMatchObject({ model: 'test-model', retryable: false });
    expect(server.requests).toHaveLength(1);
  });

  it('turns a refused connection into UNAVAILABLE after retrying it', async () => {
    const server = await provider();
    await server.close();
    servers.splice(0);
    const err = await failure(llmFor(server.url, { attempts: 2 }).complete(ask), 'UNAVAILABLE', /could not be reached \(ECONNREFUSED\) \(2 tries\)/);
    expect(JSON.stringify(err.toWire())).not.toContain('127.0.0.1');
  });

  it('stops when the caller aborts, mid-request and during a backoff wait', async () => {
    const server = await provider();
    const release = server.hold();
    const controller = new AbortController();
    const pending = llmFor(server.url).complete({ ...ask, signal: controller.signal });
    await server.waitForRequests(1);
    controller.abort();
    const err = await failure(pending, 'UNAVAILABLE', /cancelled/);
    expect(err.details).toMatchObject({ cancelled: true, retryable: false });
    release();

    server.enqueue({ status: 503, headers: { 'retry-after': '3600' } });
    const waiting = new AbortController();
    const slow = new OpenAiChatLlm({ url: server.url, model: 'm', timeoutMs: 5_000, retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 600_000 } });
    const backingOff = slow.complete({ ...ask, signal: waiting.signal });
    await server.waitForRequests(2);
    waiting.abort();
    await failure(backingOff, 'UNAVAILABLE', /cancelled/);
    expect(server.requests).toHaveLength(2);
  });

  it('rejects a malformed request before calling the provider', async () => {
    const server = await provider('never reached');
    const llm = llmFor(server.url);
    await failure(llm.complete({ messages: [] }), 'INVALID_ARGUMENT', /message/);
    await failure(llm.complete({ ...ask, temperature: 7 }), 'INVALID_ARGUMENT', /temperature/);
    expect(server.requests).toHaveLength(0);
  });

  it('rejects a bad configuration up front', () => {
    expect(() => new OpenAiChatLlm({ url: 'nope', model: 'm', timeoutMs: 1000 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => new OpenAiChatLlm({ url: 'http://h/v1', model: ' ', timeoutMs: 1000 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => new OpenAiChatLlm({ url: 'http://h/v1', model: 'm', timeoutMs: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('createLlm', () => {
  it('is undefined without configuration and an OpenAiChatLlm with it', async () => {
    expect(createLlm(undefined)).toBeUndefined();
    const server = await provider('configured');
    const llm = createLlm({ url: server.origin, model: 'cfg-model', timeoutMs: 2_000 });
    expect(llm).toBeInstanceOf(OpenAiChatLlm);
    expect(llm?.model).toBe('cfg-model');
    expect((await llm!.complete(ask)).text).toBe('configured');
    expect(server.requests[0]?.path).toBe('/v1/chat/completions');
  });
});
