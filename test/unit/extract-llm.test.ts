import { afterEach, describe, expect, it } from 'vitest';
import { OpenAiChatLlm, type Llm } from '../../src/cca/index.js';
import {
  DEFAULT_EXTRACTION_LIMITS,
  LlmExtractor,
  RuleExtractor,
  createExtractor,
  parseLlmExtraction,
  type Extraction,
} from '../../src/graph/extract/index.js';
import { AeternaError } from '../../src/protocol/index.js';
import { startLlmServer, type LlmServer } from '../support/index.js';

const servers: LlmServer[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function extractorWith(...replies: Parameters<LlmServer['enqueue']>): Promise<{ server: LlmServer; extractor: LlmExtractor }> {
  const server = await startLlmServer({ replies });
  servers.push(server);
  const llm = new OpenAiChatLlm({ url: server.url, model: 'extract-model', timeoutMs: 5_000, retry: { attempts: 1 } });
  return { server, extractor: new LlmExtractor(llm) };
}

function summary(x: Extraction): { entities: string[]; relations: string[] } {
  return {
    entities: x.entities.map((e) => `${e.kind}:${e.label}`),
    relations: x.relations.map((r) => `${r.source.kind}:${r.source.label} -${r.relation}(${r.weight})-> ${r.target.kind}:${r.target.label}`),
  };
}

async function rejection(promise: Promise<unknown>): Promise<AeternaError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AeternaError);
  return err as AeternaError;
}

const NOTE = 'Jane Doe manages Apollo. Apollo uses Redis.';

describe('LlmExtractor against an OpenAI-compatible server', () => {
  it('sends the note in json mode at temperature 0 and reads the reply into a normalised extraction', async () => {
    const reply = {
      entities: [
        { label: 'Jane Doe', kind: 'Person' },
        { label: 'Apollo', kind: 'project', properties: { status: 'active' } },
        { label: 'Redis', kind: 'Technology' },
      ],
      relations: [
        { source: 'Jane Doe', target: 'Apollo', relation: 'manages', weight: 1 },
        { source: 'Apollo', target: 'Redis', relation: 'Uses', weight: 0.9 },
      ],
    };
    const { server, extractor } = await extractorWith(JSON.stringify(reply));
    const x = await extractor.extract(NOTE);

    expect(summary(x)).toEqual({
      entities: ['person:Jane Doe', 'project:Apollo', 'technology:Redis'],
      relations: ['person:Jane Doe -manages(1)-> project:Apollo', 'project:Apollo -uses(0.9)-> technology:Redis'],
    });
    expect(x.entities[1]?.properties).toEqual({ status: 'active' });

    const body = server.requests[0]?.body;
    expect(body?.response_format).toEqual({ type: 'json_object' });
    expect(body?.temperature).toBe(0);
    expect(body?.model).toBe('extract-model');
    expect(body?.messages?.[0]?.role).toBe('system');
    expect(body?.messages?.[0]?.content).toMatch(/JSON/);
    expect(body?.messages?.[1]).toEqual({ role: 'user', content: `<note>\n${NOTE}\n</note>` });
  });

  it('drops invalid items one by one and keeps the rest', async () => {
    const reply = {
      entities: [
        { label: 'Apollo', kind: 'project' },
        { kind: 'person' },
        { label: 42, kind: 'number' },
        { label: '   ', kind: 'blank' },
        { name: 'Kafka', type: 'technology', properties: { blob: 'x'.repeat(5_000), version: 3, nested: { a: 1 }, ok: true } },
        { label: 'Weird', kind: '!!!' },
        { label: 'Nul\u0000Byte', kind: 'concept' },
        'just a string',
        null,
      ],
      relations: [
        { source: 'Apollo', target: 'Kafka', relation: 'depends on', weight: 1 },
        { source: 'Apollo', relation: 'uses' },
        { source: 'Apollo', target: 'Kafka', relation: '???' },
        { source: 'Apollo', target: 'Apollo', relation: 'uses' },
        { source: 'Apollo', target: { label: 'Ops Team', kind: 'team' }, predicate: 'owned_by', weight: 'high' },
        { source: 'Apollo', target: 'Kafka', relation: 'uses', weight: 7 },
        42,
      ],
    };
    const { extractor } = await extractorWith(JSON.stringify(reply));
    const x = await extractor.extract('Apollo depends on Kafka; the Ops Team owns it.');
    expect(summary(x)).toEqual({
      entities: ['project:Apollo', 'technology:Kafka', 'entity:Weird', 'team:Ops Team'],
      relations: [
        'project:Apollo -depends_on(1)-> technology:Kafka',
        'project:Apollo -owned_by(1)-> team:Ops Team',
        'project:Apollo -uses(1)-> technology:Kafka',
      ],
    });
    expect(x.entities[1]?.properties).toEqual({ version: 3, ok: true });
  });

  it('accepts a reply wrapped in a code fence', async () => {
    const { extractor } = await extractorWith('```json\n{"entities":[{"label":"Apollo","kind":"project"}],"relations":[]}\n```');
    expect(summary(await extractor.extract('Apollo.')).entities).toEqual(['project:Apollo']);
  });

  it.each([
    ['prose', 'Sure! Jane manages Apollo.', /not JSON/],
    ['broken JSON', '{"entities": [{"label": "Apollo"', /not JSON/],
    ['a JSON array', '[{"label": "Apollo"}]', /wrong shape/],
    ['an object without entities', '{"nodes": []}', /wrong shape/],
    ['entities that are not a list', '{"entities": {"Apollo": "project"}}', /wrong shape/],
    ['relations that are not a list', '{"entities": [], "relations": "none"}', /wrong shape/],
  ])('throws INTERNAL, so the job retries, for %s', async (_what, text, message) => {
    const { extractor } = await extractorWith(text);
    const err = await rejection(extractor.extract(NOTE));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(message);
  });

  it('says so when the reply was cut off at the token limit', async () => {
    const { extractor } = await extractorWith({ content: '{"entities": [{"label": "Apo', finishReason: 'length' });
    const err = await rejection(extractor.extract(NOTE));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(/cut off/);
    expect(err.details).toMatchObject({ truncated: true });
  });

  it('passes an unreachable model on as UNAVAILABLE', async () => {
    const { extractor } = await extractorWith({ status: 503, json: { error: { message: 'down' } } });
    expect((await rejection(extractor.extract(NOTE))).code).toBe('UNAVAILABLE');
  });

  it('does not call the model for an empty memory, and cuts a long one at a word boundary', async () => {
    const { server, extractor } = await extractorWith('{"entities": []}');
    expect(await extractor.extract('  \n ')).toEqual({ entities: [], relations: [] });
    expect(server.requests).toHaveLength(0);

    const short = new LlmExtractor(new OpenAiChatLlm({ url: server.url, model: 'm', timeoutMs: 5_000 }), { maxInputChars: 100 });
    await short.extract('word '.repeat(100));
    const sent = String(server.requests[0]?.body?.messages?.[1]?.content);
    expect(sent).toBe(`<note>\n${'word '.repeat(20).trimEnd()}\n</note>`);
  });

  it('passes the abort signal to the model call', async () => {
    const { server, extractor } = await extractorWith({ hang: true });
    const controller = new AbortController();
    const pending = extractor.extract(NOTE, { signal: controller.signal });
    await server.waitForRequests(1);
    controller.abort();
    const err = await rejection(pending);
    expect(err.details).toMatchObject({ cancelled: true });
  });
});

describe('parseLlmExtraction', () => {
  it('applies the same caps and dedupe as the rule extractor', () => {
    const entities = Array.from({ length: 70 }, (_, i) => ({ label: `Thing ${i}`, kind: 'concept' }));
    const reply = {
      entities: [...entities, { label: 'thing  0', kind: 'concept' }, { label: 'x'.repeat(DEFAULT_EXTRACTION_LIMITS.maxLabelChars + 1), kind: 'concept' }],
      relations: Array.from({ length: 150 }, (_, i) => ({ source: `Thing ${i % 50}`, target: `Thing ${(i + 1) % 50}`, relation: `rel_${i}` })),
    };
    const x = parseLlmExtraction(JSON.stringify(reply));
    expect(x.entities).toHaveLength(DEFAULT_EXTRACTION_LIMITS.maxEntities);
    expect(x.entities[0]).toEqual({ label: 'Thing 0', kind: 'concept', mentions: 2 });
    expect(x.entities.some((e) => e.label.length > DEFAULT_EXTRACTION_LIMITS.maxLabelChars)).toBe(false);
    expect(x.relations).toHaveLength(DEFAULT_EXTRACTION_LIMITS.maxRelations);
  });

  it('gives a relation end the kind its entity has, and adds ends the entity list forgot', () => {
    const x = parseLlmExtraction(
      JSON.stringify({ entities: [{ label: 'Apollo', kind: 'project' }], relations: [{ source: 'apollo', target: 'Hermes', relation: 'calls' }] }),
    );
    expect(summary(x)).toEqual({ entities: ['project:Apollo', 'entity:Hermes'], relations: ['project:Apollo -calls(1)-> entity:Hermes'] });
  });
});

describe('createExtractor', () => {
  const fakeLlm: Llm = {
    model: 'fake',
    complete: async () => ({ text: '{"entities":[{"label":"Apollo","kind":"project"}]}', usage: { promptTokens: 1, completionTokens: 1 }, model: 'fake' }),
  };

  it('builds the rule extractor for "rules", whether or not an LLM exists', () => {
    expect(createExtractor({ extractor: 'rules' })).toBeInstanceOf(RuleExtractor);
    expect(createExtractor({ extractor: 'rules' }, fakeLlm)).toBeInstanceOf(RuleExtractor);
  });

  it('builds the LLM extractor for "llm" and refuses to without an LLM', async () => {
    const extractor = createExtractor({ extractor: 'llm' }, fakeLlm);
    expect(extractor).toBeInstanceOf(LlmExtractor);
    expect(summary(await extractor.extract('Apollo')).entities).toEqual(['project:Apollo']);
    expect(() => createExtractor({ extractor: 'llm' })).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});
