import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LlmSummarizer, OpenAiChatLlm, createSummarizer } from '../../src/cca/index.js';
import { countTokens } from '../../src/obs/index.js';
import { rejectionOf } from '../support/backends.js';
import { startLlmServer, type LlmServer } from '../support/index.js';

const CAPS = { sentence: 50, paragraph: 200, detailed: 500 };
/** ~700 tokens: longer than every cap, so all three levels come from the model. */
const LONG = Array.from({ length: 40 }, (_, i) => `Paragraph ${i}: the ingestion pipeline batches events for tenant ${i % 5} before indexing.`).join(' ');

describe('LLM summariser (local OpenAI-compatible server)', () => {
  let server: LlmServer;
  let summarizer: LlmSummarizer;

  beforeAll(async () => {
    server = await startLlmServer();
  });
  afterAll(async () => {
    await server?.close();
  });
  beforeEach(() => {
    summarizer = new LlmSummarizer(new OpenAiChatLlm({ url: server.url, model: 'sum-model', timeoutMs: 5000, retry: { attempts: 1 } }), {
      caps: CAPS,
      maxInputTokens: 300,
    });
  });

  it('asks once for all three levels as JSON and returns them', async () => {
    const before = server.requests.length;
    server.enqueue(
      '```json\n' +
        JSON.stringify({ sentence: 'The pipeline batches events.', paragraph: 'The ingestion pipeline batches events per tenant.', detailed: 'Forty notes on batching.' }) +
        '\n```',
    );
    const levels = await summarizer.summarize(LONG);
    expect(levels).toEqual({
      sentence: 'The pipeline batches events.',
      paragraph: 'The ingestion pipeline batches events per tenant.',
      detailed: 'Forty notes on batching.',
    });
    expect(summarizer.id).toBe('llm:sum-model');
    expect(server.requests.length).toBe(before + 1);
    const body = server.requests.at(-1)?.body;
    expect(body?.response_format).toEqual({ type: 'json_object' });
    // The memory is cut to maxInputTokens before it is sent.
    const sent = body?.messages?.find((m) => m.role === 'user')?.content ?? '';
    expect(countTokens(sent)).toBeLessThanOrEqual(300);
    expect(LONG.startsWith(sent)).toBe(true);
  });

  it('cuts a level the model made too long to its cap', async () => {
    const rambling = 'This summary goes on and on about batching. '.repeat(80);
    server.enqueue(JSON.stringify({ sentence: rambling, paragraph: rambling, detailed: rambling }));
    const levels = await summarizer.summarize(LONG);
    expect(countTokens(levels.sentence)).toBeLessThanOrEqual(CAPS.sentence);
    expect(countTokens(levels.paragraph)).toBeLessThanOrEqual(CAPS.paragraph);
    expect(countTokens(levels.detailed)).toBeLessThanOrEqual(CAPS.detailed);
    expect(countTokens(levels.detailed)).toBeGreaterThan(CAPS.detailed - 5);
    expect(rambling.startsWith(levels.sentence)).toBe(true);
  });

  it('makes no call for a memory that fits every cap, and keeps the memory at the levels it fits', async () => {
    const before = server.requests.length;
    const short = 'Deploys freeze on Fridays.';
    expect(await summarizer.summarize(short)).toEqual({ sentence: short, paragraph: short, detailed: short });
    expect(server.requests.length).toBe(before);

    const medium = LONG.slice(0, 400);
    expect(countTokens(medium)).toBeGreaterThan(CAPS.sentence);
    expect(countTokens(medium)).toBeLessThanOrEqual(CAPS.paragraph);
    server.enqueue(JSON.stringify({ sentence: 'Batching per tenant.', paragraph: 'model paragraph', detailed: 'model detailed' }));
    expect(await summarizer.summarize(medium)).toEqual({ sentence: 'Batching per tenant.', paragraph: medium, detailed: medium });
  });

  it('refuses a reply that is not JSON or misses a level (INTERNAL: the job retries)', async () => {
    server.enqueue('Sure! Here is a summary of the note.');
    const notJson = await rejectionOf(summarizer.summarize(LONG));
    expect(notJson.code).toBe('INTERNAL');
    expect(notJson.message).toMatch(/not JSON/);

    server.enqueue(JSON.stringify({ sentence: 'ok', paragraph: '   ' }));
    const shape = await rejectionOf(summarizer.summarize(LONG));
    expect(shape.code).toBe('INTERNAL');
    expect(shape.message).toMatch(/wrong shape/);
  });

  it('passes on an unreachable model as UNAVAILABLE', async () => {
    server.enqueue({ status: 503, json: { error: { message: 'overloaded' } } });
    expect((await rejectionOf(summarizer.summarize(LONG))).code).toBe('UNAVAILABLE');
  });

  it('is the extractive summariser when no model is configured', () => {
    expect(createSummarizer(undefined, { caps: CAPS, maxInputTokens: 100 }).id).toBe('extractive');
  });
});
