import { createHash } from 'node:crypto';
import type { Config, ContextConfig } from '../config.js';
import type { EmbeddingService } from '../embed/index.js';
import type { CommitSignal } from '../events/index.js';
import { resolveReadScopes, type MemoryService } from '../memory/index.js';
import { countTokens } from '../obs/index.js';
import {
  LAYERS,
  SUMMARY_LEVELS,
  type ContextAssembleInput,
  type ContextAssembleResult,
  type ContextUsed,
  type SummaryLevel,
  type SummaryLevels,
} from '../protocol/index.js';
import type { Db } from '../store/index.js';
import { requirePermission, type TenantContext } from '../tenancy/index.js';
import { MemoryAnswerStore, RedisAnswerStore, SemanticAnswerCache, type AnswerCacheStats, type CachedAnswer } from './answer-cache.js';
import type { Llm } from './llm.js';
import { CachedMemorySearch, type SearchAnswer } from './search-answers.js';
import { SummaryService } from './summaries.js';
import { createSummarizer } from './summarizer.js';

export interface LevelThresholds {
  /** Relevance above this: detailed. */
  detailedAbove: number;
  /** Relevance from this up to detailedAbove: paragraph; below it: sentence. */
  paragraphFrom: number;
}

/** The summary level a memory of this relevance is packed at, budget permitting. */
export function levelFor(relevance: number, t: LevelThresholds): SummaryLevel {
  if (relevance > t.detailedAbove) return 'detailed';
  return relevance >= t.paragraphFrom ? 'paragraph' : 'sentence';
}

/** One memory offered to the packer. */
export interface PackCandidate {
  memoryId: string;
  relevance: number;
  /** Where the memory comes from, shown in its block's header (`project:apollo`). */
  label: string;
  levels: SummaryLevels;
}

export interface PackedContext {
  context: string;
  used: ContextUsed[];
  tokens: number;
}

/**
 * `[n] label`, the text, a blank line. The block starts with a non-space character and ends in
 * newlines, so the tokenizer splits the joined context exactly where the blocks meet: a block
 * costs the same tokens alone as in the context, and the budget arithmetic below is exact.
 */
function block(n: number, label: string, text: string): string {
  return `[${n}] ${label}\n${text.trim()}\n\n`;
}

/**
 * Packs memories into `budget` tokens, most relevant first. Each memory gets the level its
 * relevance earns (levelFor); when that block does not fit what is left, its shorter levels are
 * tried, and when none fits it is skipped, and the next one is tried. Every token of the result is
 * counted, headers and separators included, and the whole is counted again at the end: the
 * returned context never exceeds the budget.
 */
export function packContext(candidates: readonly PackCandidate[], budget: number, thresholds: LevelThresholds): PackedContext {
  const ordered = [...candidates].sort((a, b) => b.relevance - a.relevance);
  const blocks: string[] = [];
  const used: ContextUsed[] = [];
  let left = budget;
  for (const c of ordered) {
    const chosen = SUMMARY_LEVELS.indexOf(levelFor(c.relevance, thresholds));
    for (let i = chosen; i >= 0; i--) {
      const level = SUMMARY_LEVELS[i] as SummaryLevel;
      const text = block(blocks.length + 1, c.label, c.levels[level]);
      const tokens = countTokens(text);
      if (tokens > left) continue;
      blocks.push(text);
      used.push({ memoryId: c.memoryId, level, relevance: c.relevance, tokens });
      left -= tokens;
      break;
    }
  }
  // The last block's blank line separates nothing.
  let context = blocks.join('').trimEnd();
  let tokens = countTokens(context);
  // Never taken when the blocks split as block() intends; a guarantee must not rest on a tokenizer detail.
  while (tokens > budget && blocks.length > 0) {
    blocks.pop();
    used.pop();
    context = blocks.join('').trimEnd();
    tokens = countTokens(context);
  }
  return { context, used, tokens };
}

export interface ContextArchitectOptions {
  memory: MemoryService;
  embeddings: EmbeddingService;
  summaries: SummaryService;
  config: ContextConfig;
  /** The semantic answer cache; none when AETERNA_ANSWER_CACHE_ENTRIES=0. */
  cache?: SemanticAnswerCache<ContextAssembleResult>;
}

export interface ContextStats {
  assembled: number;
  cache: AnswerCacheStats | null;
}

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

/**
 * `context.assemble`: the memories most relevant to a query, each at the summary level its
 * relevance earns, packed into a token budget. Relevance is the cosine similarity MemoryService.search
 * reports, called with the caller's own context, so only memories the caller may read are
 * candidates. Answers are cached semantically, per effective scope, and checked against their
 * sources before reuse.
 */
export class ContextArchitect {
  private assembled = 0;

  constructor(private readonly opts: ContextArchitectOptions) {}

  async assemble(ctx: TenantContext, input: ContextAssembleInput): Promise<ContextAssembleResult> {
    requirePermission(ctx, 'memory:read');
    const { config, cache, embeddings } = this.opts;
    const { tokenBudget, ...query } = input;
    // Throws FORBIDDEN for another user's user layer before anything is looked up.
    const scopes = resolveReadScopes(ctx, input.layers ?? [...LAYERS], input);
    const partition = this.partitionOf(ctx, scopes, input);
    const vector = cache ? (await embeddings.embed(ctx.tenantId, [input.query]))[0] : undefined;
    if (cache && vector) {
      const hit = await cache.get(ctx.tenantId, partition, vector);
      if (hit) {
        await this.opts.memory.recordAccess(ctx, hit.used.map((u) => u.memoryId));
        this.assembled++;
        return { ...hit, cached: true };
      }
    }

    // Before the search: a memory written in these scopes from here on makes the answer stale.
    const fence = cache && vector ? await cache.fence(ctx.tenantId, scopes) : undefined;
    const { results } = await this.opts.memory.search(ctx, { ...query, limit: config.candidates, threshold: config.minRelevance });
    const summaries = await this.opts.summaries.resolve(ctx.tenantId, results.map((h) => h.memory));
    // Search orders by its score (similarity with importance and recency); packing goes by
    // relevance, and among equals the order search gave (a stable sort) decides.
    const candidates: PackCandidate[] = results.flatMap((h) => {
      const s = summaries.get(h.memory.id);
      if (!s) return [];
      return [
        {
          memoryId: h.memory.id,
          relevance: round4(Math.min(1, Math.max(0, h.similarity))),
          label: `${h.memory.layer}:${h.memory.scopeId}`,
          levels: { sentence: s.levels.sentence.text, paragraph: s.levels.paragraph.text, detailed: s.levels.detailed.text },
        },
      ];
    });
    const packed = packContext(candidates, tokenBudget, config);
    const result: ContextAssembleResult = { ...packed, budget: tokenBudget, cached: false };
    this.assembled++;
    // Every candidate is a source, packed or not: an edit can change what would be packed. So is
    // the state of its summaries: stored ones arriving replace the ones made on the fly.
    if (cache && vector) {
      const sources = results.map((h) => {
        const s = summaries.get(h.memory.id);
        return { id: h.memory.id, version: h.memory.version, summarizer: s?.source === 'stored' ? s.summarizer : null };
      });
      await cache.set(ctx.tenantId, partition, vector, result, sources, fence);
    }
    return result;
  }

  stats(): ContextStats {
    return { assembled: this.assembled, cache: this.opts.cache?.stats() ?? null };
  }

  async close(): Promise<void> {
    await this.opts.cache?.close();
  }

  /**
   * Everything that changes what an answer may contain or how it is packed: the scopes the caller
   * can read here (its own user layer unless an admin), tags, roles, budget, the embedding model
   * and the packing settings. Two callers share answers only where all of these agree.
   */
  private partitionOf(ctx: TenantContext, scopes: readonly { layer: string; scopeId?: string }[], input: ContextAssembleInput): string {
    const { config } = this.opts;
    const key = JSON.stringify({
      model: this.opts.embeddings.model,
      scopes: scopes.map((s) => `${s.layer}:${s.scopeId ?? '*'}`).sort(),
      tags: [...(input.tags ?? [])].sort(),
      roles: [...ctx.roles].sort(),
      budget: input.tokenBudget,
      packing: [config.summaryTokens, config.detailedAbove, config.paragraphFrom, config.candidates, config.minRelevance],
    });
    return `context.${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
  }
}

export interface ContextServicesOptions {
  config: Pick<Config, 'context' | 'redisUrl'>;
  db: Db;
  memory: MemoryService;
  embeddings: EmbeddingService;
  llm: Llm | undefined;
  /** The model as one tenant's summary jobs use it (charged to its token budget); `llm` when absent. */
  llmFor?: (tenantId: string) => Llm;
  commits?: CommitSignal;
}

export interface ContextServices {
  summaries: SummaryService;
  context: ContextArchitect;
  /** memory.search through the same kind of semantic answer cache, in partitions of its own. */
  search: CachedMemorySearch;
  close(): Promise<void>;
}

/**
 * The summaries and the Context Architect as configured: the LLM summariser when a model is set,
 * the answer cache in Redis in cluster mode and in process otherwise (off at 0 entries).
 */
export function createContextServices(opts: ContextServicesOptions): ContextServices {
  const { context: config, redisUrl } = opts.config;
  const summarizerOptions = { caps: config.summaryTokens, maxInputTokens: config.summaryMaxInputTokens };
  const { llm, llmFor } = opts;
  const summaries = new SummaryService({
    db: opts.db,
    summarizer: createSummarizer(llm, summarizerOptions),
    ...(llm && llmFor ? { summarizerFor: (tenantId: string) => createSummarizer(llmFor(tenantId), summarizerOptions) } : {}),
    caps: config.summaryTokens,
    ...(opts.commits ? { commits: opts.commits } : {}),
  });
  const { entries, ttlSec, threshold, perScopeEntries } = config.answerCache;
  const answerCache = <T>(): SemanticAnswerCache<T> | undefined =>
    entries > 0
      ? new SemanticAnswerCache<T>({
          store: redisUrl ? new RedisAnswerStore<CachedAnswer<T>>({ url: redisUrl, ttlSec }) : new MemoryAnswerStore<CachedAnswer<T>>(entries),
          db: opts.db,
          threshold,
          ttlSec,
          perPartition: perScopeEntries,
        })
      : undefined;
  const cache = answerCache<ContextAssembleResult>();
  const context = new ContextArchitect({ memory: opts.memory, embeddings: opts.embeddings, summaries, config, ...(cache ? { cache } : {}) });
  const search = new CachedMemorySearch({ memory: opts.memory, embeddings: opts.embeddings, cache: answerCache<SearchAnswer>() });
  return {
    summaries,
    context,
    search,
    close: async () => {
      await Promise.all([context.close(), search.close()]);
    },
  };
}
