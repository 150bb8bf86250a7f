import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roomsOfEvent } from '../../gateway/realtime/memory-stream.js';
import { JOBS_ACTOR } from '../../src/jobs/index.js';
import { countTokens } from '../../src/obs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { OpenAiChatLlm, SummaryService, LlmSummarizer } from '../../src/cca/index.js';
import { EVENT_TYPES, type EventEnvelope, type SummaryReadyData } from '../../src/protocol/index.js';
import { summaryProcessors } from '../../workers/processors/summaries.js';
import { backends, rejectionOf, tenantCtx } from '../support/backends.js';
import { startLlmServer, type LlmServer } from '../support/index.js';
import { MarkedSummarizer, openContextFixture, summariesWith, summarizeJob, type ContextFixture } from './context-support.js';

const ctx = tenantCtx('acme', 'alice', ['admin']);
const CAPS = { sentence: 50, paragraph: 200, detailed: 500 };

/** ~900 tokens of distinct sentences: longer than every cap. */
function longText(topic: string): string {
  return Array.from({ length: 40 }, (_, i) => `Note ${i} on ${topic}: the ${['cache', 'queue', 'index', 'shard'][i % 4]} layer of service ${i % 9} needs review.`).join(' ');
}

interface SummaryRowOut {
  level: string;
  content_hash: string;
  summary: string;
  tokens: number;
  summarizer: string;
}

describe.each(backends())('summaries and the cca.summarize job on %s', (backend) => {
  let f: ContextFixture;
  let llm: LlmServer;

  const rows = (memoryId: string, tenantId = 'acme') =>
    f.t.core.db.withTenant(tenantId, async (sql) =>
      (
        await sql.query<SummaryRowOut>(
          'SELECT level, content_hash, summary, tokens, summarizer FROM memory_summaries WHERE memory_id = $1 ORDER BY level',
          [memoryId],
        )
      ).rows,
    );
  const readyEvents = async (memoryId: string) =>
    (await f.events('acme')).filter((e): e is EventEnvelope<SummaryReadyData> => e.type === EVENT_TYPES.summaryReady && (e.data as SummaryReadyData).memoryId === memoryId);

  beforeAll(async () => {
    [f, llm] = await Promise.all([openContextFixture(backend), startLlmServer()]);
  }, 60_000);
  afterAll(async () => {
    await llm?.close();
    await f?.close();
  });

  function llmSummaries(): SummaryService {
    const model = new OpenAiChatLlm({ url: llm.url, model: 'sum-model', timeoutMs: 5000, retry: { attempts: 1 } });
    return summariesWith(f, new LlmSummarizer(model, { caps: CAPS, maxInputTokens: 4000 }));
  }

  it('stores three levels within their caps for the current content and announces summary.ready to the memory\'s rooms', async () => {
    const { memory } = await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('ingestion') });
    expect(await f.runSummaries('acme')).toHaveLength(1);
    const stored = await rows(memory.id);
    expect(stored.map((r) => r.level)).toEqual(['detailed', 'paragraph', 'sentence']);
    for (const r of stored) {
      expect(r.content_hash).toBe(memory.contentHash);
      expect(r.summarizer).toBe('extractive');
      expect(r.tokens).toBe(countTokens(r.summary));
      expect(r.tokens).toBeLessThanOrEqual(CAPS[r.level as keyof typeof CAPS]);
    }
    const [ready, ...more] = await readyEvents(memory.id);
    expect(more).toEqual([]);
    expect(ready?.actor).toEqual(JOBS_ACTOR);
    expect(ready?.data).toEqual({
      memoryId: memory.id,
      layer: 'project',
      scopeId: 'apollo',
      contentHash: memory.contentHash,
      summarizer: 'extractive',
      levels: Object.fromEntries(stored.map((r) => [r.level, r.tokens])),
    });
    expect(roomsOfEvent(ready as EventEnvelope)).toEqual(['t:acme:layer:project:apollo', 't:acme:layer:project:*']);
  });

  it('writes nothing when the job runs again, and replaces the rows when the content changes', async () => {
    const { memory } = await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('billing') });
    const [job] = await f.runSummaries('acme');
    const first = await rows(memory.id);
    const run = summaryProcessors({ core: { summaries: f.services.summaries, config: f.t.config }, log: createLogger('silent') })['cca.summarize']!;
    await run(job!);
    expect(await rows(memory.id)).toEqual(first);
    expect(await readyEvents(memory.id)).toHaveLength(1);

    const updated = await f.t.core.memory.update(ctx, memory.id, { version: memory.version, content: longText('invoicing') });
    // The job of the old event, run late, summarises what the memory holds now.
    expect((await f.services.summaries.summarizeMemory('acme', memory.id, { actor: JOBS_ACTOR })).status).toBe('summarized');
    expect(await f.runSummaries('acme')).toHaveLength(1);
    const second = await rows(memory.id);
    expect(second).toHaveLength(3);
    expect(second.every((r) => r.content_hash === updated.contentHash)).toBe(true);
    expect(second.find((r) => r.level === 'sentence')?.summary).toMatch(/invoicing/);
    expect(await readyEvents(memory.id)).toHaveLength(2);
  });

  it('never summarises the same content twice: another memory with it reuses the rows', async () => {
    const marked = new MarkedSummarizer();
    const summaries = summariesWith(f, marked);
    const content = longText('reuse');
    const a = (await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content })).memory;
    const b = (await f.t.core.memory.add(ctx, { layer: 'team', teamId: 'core', content })).memory;
    expect((await summaries.summarizeMemory('acme', a.id, { actor: JOBS_ACTOR })).status).toBe('summarized');
    expect((await summaries.summarizeMemory('acme', b.id, { actor: JOBS_ACTOR })).status).toBe('reused');
    expect((await summaries.summarizeMemory('acme', b.id, { actor: JOBS_ACTOR })).status).toBe('unchanged');
    expect(marked.calls).toBe(1);
    expect((await rows(b.id)).map((r) => r.summary)).toEqual((await rows(a.id)).map((r) => r.summary));
    const [ready] = await readyEvents(b.id);
    expect(ready?.data).toMatchObject({ layer: 'team', scopeId: 'core', summarizer: 'marked' });
    await f.runSummaries('acme');
  });

  it('stores nothing for a memory deleted before or during the job, nor for content that changed meanwhile', async () => {
    const gone = (await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('deleted early') })).memory;
    await f.t.core.memory.delete(ctx, gone.id);
    expect((await f.services.summaries.summarizeMemory('acme', gone.id, { actor: JOBS_ACTOR })).status).toBe('gone');

    const during = (await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('deleted during') })).memory;
    const deleting = summariesWith(f, new MarkedSummarizer('marked', async () => void (await f.t.core.memory.delete(ctx, during.id))));
    expect((await deleting.summarizeMemory('acme', during.id, { actor: JOBS_ACTOR })).status).toBe('gone');

    const edited = (await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('edited during') })).memory;
    const editing = summariesWith(
      f,
      new MarkedSummarizer('marked', async () => void (await f.t.core.memory.update(ctx, edited.id, { version: edited.version, content: longText('edited after') }))),
    );
    expect((await editing.summarizeMemory('acme', edited.id, { actor: JOBS_ACTOR })).status).toBe('superseded');
    for (const id of [gone.id, during.id, edited.id]) {
      expect(await rows(id)).toEqual([]);
      expect(await readyEvents(id)).toEqual([]);
    }
    await f.runSummaries('acme');
  });

  it('fails a malformed event for the dead letter instead of guessing', async () => {
    const run = summaryProcessors({ core: { summaries: f.services.summaries, config: f.t.config }, log: createLogger('silent') })['cca.summarize']!;
    const bad = { id: '0190a0a0-0000-7000-8000-000000000000', seq: 1, type: 'memory.added', tenantId: 'acme', at: '', actor: JOBS_ACTOR, data: { memory: { id: 'nope' } }, traceId: null };
    expect((await rejectionOf(run(summarizeJob('acme', bad)))).code).toBe('INVALID_ARGUMENT');
  });

  it('resolves stored summaries for current content and makes extractive ones for the rest', async () => {
    const summarized = (await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('resolved') })).memory;
    const fresh = (await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('not yet summarised') })).memory;
    await summariesWith(f, new MarkedSummarizer()).summarizeMemory('acme', summarized.id, { actor: JOBS_ACTOR });
    const resolved = await f.services.summaries.resolve('acme', [summarized, fresh]);
    expect(resolved.get(summarized.id)).toMatchObject({ source: 'stored', summarizer: 'marked', levels: { sentence: { text: `S(${summarized.content.slice(0, 20)})` } } });
    const inline = resolved.get(fresh.id);
    expect(inline).toMatchObject({ source: 'extractive', contentHash: fresh.contentHash });
    expect(fresh.content).toContain(inline?.levels.sentence.text.split('. ')[0]);
    expect(inline?.levels.sentence.tokens).toBeLessThanOrEqual(CAPS.sentence);

    // Rows of older content are ignored.
    const edited = await f.t.core.memory.update(ctx, summarized.id, { version: summarized.version, content: longText('resolved again') });
    expect((await f.services.summaries.resolveOne('acme', edited)).source).toBe('extractive');
    await f.runSummaries('acme');
  });

  it("keeps each tenant's summaries to itself (row-level security)", async () => {
    const { memory } = await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('secret') });
    await f.runSummaries('acme');
    expect(await rows(memory.id)).toHaveLength(3);
    expect(await rows(memory.id, 'globex')).toEqual([]);
    const planted = await rejectionOf(
      f.t.core.db.withTenant('globex', (sql) =>
        sql.query(`INSERT INTO memory_summaries (tenant_id, memory_id, level, content_hash, summary, tokens, summarizer) VALUES ('acme', $1, 'sentence', 'h', 'x', 1, 'x')`, [
          memory.id,
        ]),
      ),
    );
    expect(planted.message).toMatch(/row-level security/);
  });

  it('stores what the model wrote, each level within its cap', async () => {
    const { memory } = await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('model') });
    llm.enqueue(JSON.stringify({ sentence: 'Service review notes.', paragraph: 'Forty notes asking for reviews. '.repeat(60), detailed: 'Detailed notes.' }));
    expect(await f.runSummaries('acme', llmSummaries())).toHaveLength(1);
    const resolved = await f.services.summaries.resolveOne('acme', memory);
    expect(resolved).toMatchObject({ source: 'stored', summarizer: 'llm:sum-model', levels: { sentence: { text: 'Service review notes.' }, detailed: { text: 'Detailed notes.' } } });
    expect(resolved.levels.paragraph.tokens).toBeLessThanOrEqual(CAPS.paragraph);
    expect(resolved.levels.paragraph.tokens).toBeGreaterThan(CAPS.paragraph - 10);
  });

  it('lets a failing model fail the job for a retry, and falls back to extractive summaries on the last attempt', async () => {
    const { memory } = await f.t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: longText('outage') });
    const added = (await f.events('acme')).find((e) => e.type === EVENT_TYPES.memoryAdded && (e.data as { memory: { id: string } }).memory.id === memory.id) as EventEnvelope;
    const config = { jobs: { ...f.t.config.jobs, attempts: 2 } };
    const run = summaryProcessors({ core: { summaries: llmSummaries(), config }, log: createLogger('silent') })['cca.summarize']!;
    llm.enqueue({ status: 503, json: { error: { message: 'down' } } }, { status: 503, json: { error: { message: 'down' } } });
    expect((await rejectionOf(run(summarizeJob('acme', added, 1)))).code).toBe('UNAVAILABLE');
    expect((await f.services.summaries.resolveOne('acme', memory)).source).toBe('extractive');
    await run(summarizeJob('acme', added, 2));
    expect(await f.services.summaries.resolveOne('acme', memory)).toMatchObject({ source: 'stored', summarizer: 'extractive' });
    expect(llm.requests.length).toBeGreaterThanOrEqual(2);
    await f.runSummaries('acme');
  });
});
