/**
 * What the Context Architect's tests share: a core with the summaries, the architect and its API
 * built as `createContextServices` builds them, and a runner for the cca.summarize jobs that the
 * relay would enqueue for new memory events.
 */
import { createContextServices, ContextApi, SummaryService, type ContextServices, type Llm, type Summarizer } from '../../src/cca/index.js';
import { EventLog } from '../../src/events/index.js';
import type { JobContext, JobProcessor } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { EVENT_TYPES, type EventEnvelope } from '../../src/protocol/index.js';
import { summaryProcessors } from '../../workers/processors/summaries.js';
import { openTestCore, type BackendName, type TestCore } from '../support/backends.js';

export interface ContextFixture {
  t: TestCore;
  services: ContextServices;
  api: ContextApi;
  /** Runs cca.summarize for every memory event since the last call; returns the jobs run. */
  runSummaries(tenantId: string, summaries?: SummaryService): Promise<JobContext[]>;
  /** The tenant's events since the start, in order. */
  events(tenantId: string): Promise<EventEnvelope[]>;
  close(): Promise<void>;
}

export interface ContextFixtureOptions {
  env?: Record<string, string>;
  llm?: Llm;
}

/** The events that ask for summaries: a new memory, and an update that changed its content. */
function wantsSummary(e: EventEnvelope): boolean {
  if (e.type === EVENT_TYPES.memoryAdded) return true;
  const changed = (e.data as { changed?: unknown }).changed;
  return e.type === EVENT_TYPES.memoryUpdated && Array.isArray(changed) && changed.includes('content');
}

export function summarizeJob(tenantId: string, e: EventEnvelope, attempt = 1): JobContext {
  return {
    kind: 'cca.summarize',
    id: e.id,
    tenantId,
    attempt,
    signal: new AbortController().signal,
    event: { id: e.id, seq: e.seq, type: e.type, data: e.data },
  };
}

export async function openContextFixture(backend: BackendName, opts: ContextFixtureOptions = {}): Promise<ContextFixture> {
  const t = await openTestCore(backend, opts.env ?? {});
  const { core } = t;
  const services = createContextServices({ config: t.config, db: core.db, memory: core.memory, embeddings: core.embeddings, llm: opts.llm, commits: core.commits });
  const api = new ContextApi({ context: services.context, summaries: services.summaries, memory: core.memory, config: t.config.context });
  const cursors = new Map<string, number>();
  const log = createLogger('silent');
  const events = async (tenantId: string) => (await core.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, 0, 10_000))).events;
  return {
    t,
    services,
    api,
    events,
    async runSummaries(tenantId, summaries = services.summaries) {
      const since = cursors.get(tenantId) ?? 0;
      const page = await core.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, since, 10_000));
      const last = page.events.at(-1);
      if (last) cursors.set(tenantId, last.seq);
      const run = summaryProcessors({ core: { summaries, config: t.config }, log })['cca.summarize'] as JobProcessor;
      const jobs = page.events.filter(wantsSummary).map((e) => summarizeJob(tenantId, e));
      for (const job of jobs) await run(job);
      return jobs;
    },
    async close() {
      await services.close();
      await t.close();
    },
  };
}

/** A summariser whose output says what it summarised, counting its calls. */
export class MarkedSummarizer implements Summarizer {
  readonly id: string;
  calls = 0;
  constructor(id = 'marked', private readonly before?: (text: string) => Promise<void>) {
    this.id = id;
  }
  async summarize(text: string) {
    this.calls++;
    await this.before?.(text);
    const head = text.slice(0, 20);
    return { sentence: `S(${head})`, paragraph: `P(${head})`, detailed: `D(${head})` };
  }
}

/** A SummaryService like the fixture's, with another summariser. */
export function summariesWith(f: ContextFixture, summarizer: Summarizer): SummaryService {
  return new SummaryService({ db: f.t.core.db, summarizer, caps: f.t.config.context.summaryTokens, commits: f.t.core.commits });
}
