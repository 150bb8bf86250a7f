import { EventLog, type CommitSignal } from '../events/index.js';
import { countTokens } from '../obs/index.js';
import {
  EVENT_TYPES,
  SUMMARY_LEVELS,
  type Actor,
  type EventEnvelope,
  type MemorySummaries,
  type SummaryLevel,
  type SummaryLevels,
  type SummaryReadyData,
} from '../protocol/index.js';
import type { Db, Sql } from '../store/index.js';
import { ExtractiveSummarizer, fitToTokens, type SummaryCaps, type Summarizer } from './summarizer.js';

/** What a summary is made from: a memory's id and its current content. */
export interface SummarySource {
  id: string;
  content: string;
  contentHash: string;
}

export interface SummaryServiceOptions {
  db: Db;
  /** The configured summariser (the LLM one when a model is set). */
  summarizer: Summarizer;
  /**
   * The summariser for one tenant's job, e.g. one whose LLM charges that tenant's token budget.
   * Must have the same id as `summarizer`.
   */
  summarizerFor?: (tenantId: string) => Summarizer;
  caps: SummaryCaps;
  commits?: CommitSignal;
  /** Summaries made on the fly for memories the job has not reached yet, kept per (tenant, content). */
  inlineCacheEntries?: number;
}

export type SummarizeStatus =
  /** New rows for the memory's current content, and a summary.ready event. */
  | 'summarized'
  /** Another memory with the same content had them: copied, no summariser call, and an event. */
  | 'reused'
  /** The memory's rows already match its content and summariser: nothing written (a re-run job). */
  | 'unchanged'
  /** The memory is deleted (or never existed). */
  | 'gone'
  /** Its content changed while this ran: the job of that change summarises it. */
  | 'superseded';

export interface SummarizeOutcome {
  status: SummarizeStatus;
  memoryId: string;
  contentHash?: string;
  summarizer?: string;
  event?: EventEnvelope<SummaryReadyData>;
}

export interface SummarizeOptions {
  /** Recorded on the summary.ready event. */
  actor: Actor;
  traceId?: string;
  signal?: AbortSignal;
  /** Use the extractive summariser if the configured one fails (the job's last attempt). */
  fallbackToExtractive?: boolean;
}

interface SummaryRow {
  memory_id: string;
  level: SummaryLevel;
  content_hash: string;
  summary: string;
  tokens: number;
  summarizer: string;
}

interface MemoryRow {
  id: string;
  layer: string;
  scope_id: string;
  content: string;
  content_hash: string;
}

type StoredLevels = MemorySummaries['levels'];

interface StoredSummaries {
  contentHash: string;
  summarizer: string;
  levels: StoredLevels;
}

/** Rows grouped by memory; a memory counts only with all three levels of one content and summariser. */
function groupRows(rows: readonly SummaryRow[]): Map<string, StoredSummaries> {
  const partial = new Map<string, { contentHash: string; summarizer: string; levels: Partial<StoredLevels> }>();
  for (const r of rows) {
    const entry = partial.get(r.memory_id) ?? { contentHash: r.content_hash, summarizer: r.summarizer, levels: {} };
    // Rows of one memory can only disagree if written outside summarizeMemory; such a set is incomplete.
    if (entry.contentHash !== r.content_hash || entry.summarizer !== r.summarizer) continue;
    entry.levels[r.level] = { text: r.summary, tokens: r.tokens };
    partial.set(r.memory_id, entry);
  }
  const complete = new Map<string, StoredSummaries>();
  for (const [id, { levels, ...rest }] of partial) {
    const { sentence, paragraph, detailed } = levels;
    if (sentence && paragraph && detailed) complete.set(id, { ...rest, levels: { sentence, paragraph, detailed } });
  }
  return complete;
}

/**
 * Each memory's three summary levels in `memory_summaries`: made by the cca.summarize job and
 * read by context.assemble. Rows are tied to the content hash they were made from, so a reader
 * never takes a summary of older content for the current one.
 */
export class SummaryService {
  readonly summarizer: Summarizer;
  private readonly extractive: ExtractiveSummarizer;
  private readonly inline = new Map<string, SummaryLevels>();
  private readonly inlineMax: number;

  constructor(private readonly opts: SummaryServiceOptions) {
    this.summarizer = opts.summarizer;
    this.extractive = new ExtractiveSummarizer(opts.caps);
    this.inlineMax = opts.inlineCacheEntries ?? 2000;
  }

  /**
   * Makes (or reuses) the summaries of a memory's current content and stores them with a
   * summary.ready event, in one transaction. Idempotent: the same content is never summarised
   * twice by the same summariser, and a re-run writes nothing. Reads the memory itself rather than
   * trusting an event's copy, so a late job never stores summaries of content that has changed.
   */
  async summarizeMemory(tenantId: string, memoryId: string, opts: SummarizeOptions): Promise<SummarizeOutcome> {
    const { db } = this.opts;
    const found = await db.withTenant(tenantId, async (sql) => {
      const memory = await this.liveMemory(sql, tenantId, memoryId, false);
      if (!memory) return undefined;
      const own = await this.rowsFor(sql, tenantId, [memoryId]);
      const current = own.get(memoryId);
      const done = current?.contentHash === memory.content_hash && current.summarizer === this.summarizer.id;
      return { memory, done, reusable: done ? undefined : await this.reusable(sql, tenantId, memory.content_hash) };
    });
    if (!found) return { status: 'gone', memoryId };
    const { memory } = found;
    if (found.done) return { status: 'unchanged', memoryId, contentHash: memory.content_hash, summarizer: this.summarizer.id };

    let levels: SummaryLevels;
    let summarizer = this.summarizer.id;
    let status: SummarizeStatus = 'summarized';
    if (found.reusable) {
      levels = found.reusable;
      status = 'reused';
    } else {
      try {
        const summarize = this.opts.summarizerFor?.(tenantId) ?? this.summarizer;
        levels = await summarize.summarize(memory.content, opts.signal ? { signal: opts.signal } : {});
      } catch (err) {
        if (!opts.fallbackToExtractive || this.summarizer.id === this.extractive.id) throw err;
        levels = this.extractive.levels(memory.content);
        summarizer = this.extractive.id;
      }
    }

    const outcome = await db.withTenant(tenantId, async (sql): Promise<SummarizeOutcome> => {
      // One writer per memory at a time; whoever comes second sees the first one's rows.
      await sql.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`summaries/${tenantId}/${memoryId}`]);
      const now = await this.liveMemory(sql, tenantId, memoryId, true);
      if (!now) return { status: 'gone', memoryId };
      if (now.content_hash !== memory.content_hash) return { status: 'superseded', memoryId, contentHash: memory.content_hash };
      const existing = (await this.rowsFor(sql, tenantId, [memoryId])).get(memoryId);
      if (existing?.contentHash === memory.content_hash && existing.summarizer === summarizer) {
        return { status: 'unchanged', memoryId, contentHash: memory.content_hash, summarizer };
      }
      const tokens = {} as Record<SummaryLevel, number>;
      for (const level of SUMMARY_LEVELS) {
        const text = levels[level];
        tokens[level] = countTokens(text);
        await sql.query(
          `INSERT INTO memory_summaries (tenant_id, memory_id, level, content_hash, summary, tokens, summarizer)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (tenant_id, memory_id, level) DO UPDATE SET
             content_hash = EXCLUDED.content_hash, summary = EXCLUDED.summary, tokens = EXCLUDED.tokens,
             summarizer = EXCLUDED.summarizer, created_at = now()`,
          [tenantId, memoryId, level, memory.content_hash, text, tokens[level], summarizer],
        );
      }
      const data: SummaryReadyData = {
        memoryId,
        layer: now.layer,
        scopeId: now.scope_id,
        contentHash: memory.content_hash,
        summarizer,
        levels: tokens,
      };
      const event = (await EventLog.append(sql, tenantId, {
        type: EVENT_TYPES.summaryReady,
        actor: opts.actor,
        data,
        ...(opts.traceId ? { traceId: opts.traceId } : {}),
      })) as EventEnvelope<SummaryReadyData>;
      return { status, memoryId, contentHash: memory.content_hash, summarizer, event };
    });
    if (outcome.event) this.opts.commits?.notify(tenantId);
    return outcome;
  }

  /**
   * The summaries of these memories as they are now: stored ones made from their current content,
   * else extractive ones made here and now (the job may not have run yet; nobody waits for it).
   * Every level is within the current caps, also for rows stored under larger ones.
   */
  async resolve(tenantId: string, memories: readonly SummarySource[]): Promise<Map<string, MemorySummaries>> {
    if (memories.length === 0) return new Map();
    const stored = await this.opts.db.withTenant(tenantId, (sql) => this.rowsFor(sql, tenantId, memories.map((m) => m.id)));
    return new Map(memories.map((m) => [m.id, this.summariesOf(tenantId, m, stored.get(m.id))]));
  }

  /** One memory's summaries, as `resolve` makes them. */
  async resolveOne(tenantId: string, memory: SummarySource): Promise<MemorySummaries> {
    const stored = await this.opts.db.withTenant(tenantId, (sql) => this.rowsFor(sql, tenantId, [memory.id]));
    return this.summariesOf(tenantId, memory, stored.get(memory.id));
  }

  private summariesOf(tenantId: string, m: SummarySource, stored: StoredSummaries | undefined): MemorySummaries {
    if (stored?.contentHash === m.contentHash) {
      return { memoryId: m.id, contentHash: m.contentHash, source: 'stored', summarizer: stored.summarizer, levels: this.withinCaps(stored.levels) };
    }
    const levels = this.inlineLevels(tenantId, m);
    return {
      memoryId: m.id,
      contentHash: m.contentHash,
      source: 'extractive',
      summarizer: this.extractive.id,
      levels: {
        sentence: { text: levels.sentence, tokens: countTokens(levels.sentence) },
        paragraph: { text: levels.paragraph, tokens: countTokens(levels.paragraph) },
        detailed: { text: levels.detailed, tokens: countTokens(levels.detailed) },
      },
    };
  }

  private withinCaps(levels: StoredLevels): StoredLevels {
    const out = {} as StoredLevels;
    for (const level of SUMMARY_LEVELS) {
      const { text, tokens } = levels[level];
      const cap = this.opts.caps[level];
      if (tokens <= cap) {
        out[level] = { text, tokens };
      } else {
        const cut = fitToTokens(text, cap);
        out[level] = { text: cut, tokens: countTokens(cut) };
      }
    }
    return out;
  }

  /** LRU by (tenant, content hash): a popular memory is not re-summarised on every assemble. */
  private inlineLevels(tenantId: string, m: SummarySource): SummaryLevels {
    const key = `${tenantId}/${m.contentHash}`;
    const hit = this.inline.get(key);
    if (hit) {
      this.inline.delete(key);
      this.inline.set(key, hit);
      return hit;
    }
    const levels = this.extractive.levels(m.content);
    if (this.inlineMax > 0) {
      this.inline.set(key, levels);
      for (const oldest of this.inline.keys()) {
        if (this.inline.size <= this.inlineMax) break;
        this.inline.delete(oldest);
      }
    }
    return levels;
  }

  private async liveMemory(sql: Sql, tenantId: string, id: string, lock: boolean): Promise<MemoryRow | undefined> {
    const res = await sql.query<MemoryRow>(
      `SELECT id, layer, scope_id, content, content_hash FROM memories WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL${lock ? ' FOR SHARE' : ''}`,
      [id, tenantId],
    );
    return res.rows[0];
  }

  private async rowsFor(sql: Sql, tenantId: string, ids: readonly string[]): Promise<Map<string, StoredSummaries>> {
    const res = await sql.query<SummaryRow>(
      `SELECT memory_id, level, content_hash, summary, tokens, summarizer FROM memory_summaries
        WHERE tenant_id = $1 AND memory_id = ANY($2::uuid[])`,
      [tenantId, ids],
    );
    return groupRows(res.rows);
  }

  /** Summaries this summariser already made of the same content for another memory of the tenant. */
  private async reusable(sql: Sql, tenantId: string, contentHash: string): Promise<SummaryLevels | undefined> {
    const res = await sql.query<SummaryRow>(
      `SELECT memory_id, level, content_hash, summary, tokens, summarizer FROM memory_summaries
        WHERE tenant_id = $1 AND content_hash = $2 AND summarizer = $3
        ORDER BY memory_id LIMIT 30`,
      [tenantId, contentHash, this.summarizer.id],
    );
    const [first] = groupRows(res.rows).values();
    return first && { sentence: first.levels.sentence.text, paragraph: first.levels.paragraph.text, detailed: first.levels.detailed.text };
  }
}
