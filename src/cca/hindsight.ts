import type { HindsightConfig } from '../config.js';
import { contentHash, type EmbeddingService } from '../embed/index.js';
import { EventLog, type CommitSignal } from '../events/index.js';
import type { MemoryService } from '../memory/index.js';
import {
  AeternaError,
  EVENT_TYPES,
  hindsightQuerySchema,
  hindsightReportSchema,
  hindsightResolveSchema,
  parseInput,
  type Actor,
  type HindsightMatch,
  type HindsightPatternEventData,
  type HindsightPromotion,
  type HindsightQueryResult,
  type HindsightReportResult,
  type HindsightResolutionStats,
  type HindsightResolveResult,
} from '../protocol/index.js';
import { newId, type Db, type Sql } from '../store/index.js';
import { actorOf, type TenantContext } from '../tenancy/index.js';
import { cleanTags } from './notes.js';
import { capUtf8, redactText } from './redact.js';
import { errorSignature, type ErrorSignature } from './signature.js';

/** Recorded as the author of promoted team memories and their `hindsight.pattern` events. */
export const HINDSIGHT_ACTOR: Actor = { userId: 'system', agentId: 'hindsight' };

/** A stored report keeps this much of a stack trace: the signature only needs its top frames. */
const MAX_STORED_STACK_BYTES = 16 * 1024;
/** Resolutions listed per pattern in a match. */
const RESOLUTIONS_PER_MATCH = 5;
const DAY_MS = 86_400_000;

export interface HindsightServiceOptions {
  db: Db;
  embeddings: EmbeddingService;
  memory: MemoryService;
  config: HindsightConfig;
  commits?: CommitSignal;
}

interface PatternRow {
  id: string;
  error_type: string;
  signature: string;
  occurrences: number;
  first_seen_at: Date;
  last_seen_at: Date;
  last_resolved_at: Date | null;
  promoted_memory_id: string | null;
  promoted_team_id: string | null;
  promoted_at: Date | null;
}

interface OutcomeGroupRow {
  pattern_id: string;
  resolution: string;
  successes: number;
  failures: number;
  last_used_at: Date;
}

interface PromotionDraft {
  teamId: string;
  content: string;
  tags: string[];
  resolution: string;
}

/** (successes + 1) / (tries + 2), Laplace's rule of succession: little evidence stays near 0.5. */
export function successRate(successes: number, tries: number): number {
  return (successes + 1) / (tries + 2);
}

/** Halves every `halfLifeDays` since `at`; 1 for anything in the future. */
export function recency(at: Date, now: number, halfLifeDays: number): number {
  return 0.5 ** (Math.max(0, now - at.getTime()) / DAY_MS / halfLifeDays);
}

function normaliseResolution(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function promotion(row: Pick<PatternRow, 'promoted_memory_id' | 'promoted_team_id' | 'promoted_at'>): HindsightPromotion | null {
  return row.promoted_memory_id && row.promoted_team_id && row.promoted_at
    ? { memoryId: row.promoted_memory_id, teamId: row.promoted_team_id, promotedAt: row.promoted_at.toISOString() }
    : null;
}

/**
 * Hindsight learning: errors are reported, normalised into signatures (signature.ts) and counted
 * per pattern; resolutions are reported with their outcome; queries return the patterns most
 * likely to help, each with its resolutions best first.
 *
 * Ranking: score = successRate × similarity × recency, where
 *   successRate = (successes + 1) / (resolution outcomes + 2) over all of the pattern's outcomes
 *                 (an untried pattern scores 0.5, 3 of 3 successes 0.8, 0 of 3 0.2),
 *   similarity  = cosine of the signature embeddings (1 for the same signature),
 *   recency     = 0.5 ^ (days since the pattern was last seen or resolved / halfLifeDays).
 *
 * Promotion: once a pattern has been seen `promoteAfter` times (3) and has a resolution that
 * succeeded, its best resolution becomes one team-layer memory, once, with a `hindsight.pattern`
 * event. The team is the one the promoting call names (`teamId`), else the last one any report or
 * resolution of the pattern named, else the configured default team: memories of a team layer
 * need a team id, and the token carries none.
 */
export class HindsightService {
  constructor(private readonly opts: HindsightServiceOptions) {}

  async report(ctx: TenantContext, raw: unknown): Promise<HindsightReportResult> {
    const input = parseInput(hindsightReportSchema, raw, 'hindsight report');
    // Redacted first: the signature is stored and embedded, so a secret must not reach it.
    const message = redactText(input.message).text;
    const stack = input.stack === undefined ? undefined : redactText(input.stack).text;
    const sig = errorSignature({ errorType: input.errorType, message, stack }, this.opts.config.stackFrames);
    const vector = await this.embed(ctx.tenantId, sig);
    const context = input.context === undefined ? null : redactText(JSON.stringify(input.context)).text;
    const { embeddings } = this.opts;

    const reported = await this.opts.db.withTenant(ctx.tenantId, async (sql) => {
      const res = await sql.query<{ id: string; occurrences: number }>(
        `INSERT INTO hindsight_patterns (tenant_id, id, signature_hash, body_hash, signature, error_type, message, frames, embedding, embedding_model, team_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::real[], $10, $11)
         ON CONFLICT (tenant_id, signature_hash) DO UPDATE SET
           occurrences = hindsight_patterns.occurrences + 1, last_seen_at = now(),
           embedding = EXCLUDED.embedding, embedding_model = EXCLUDED.embedding_model,
           team_id = COALESCE(EXCLUDED.team_id, hindsight_patterns.team_id)
         RETURNING id, occurrences`,
        [ctx.tenantId, newId(), sig.hash, sig.bodyHash, sig.text, sig.errorType, sig.message, sig.frames, Array.from(vector), embeddings.model, input.teamId ?? null],
      );
      const pattern = res.rows[0] as { id: string; occurrences: number };
      await sql.query(
        `INSERT INTO hindsight_occurrences (tenant_id, id, pattern_id, error_type, message, stack, context, team_id, actor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          ctx.tenantId,
          newId(),
          pattern.id,
          input.errorType,
          message,
          stack === undefined ? null : capUtf8(stack, MAX_STORED_STACK_BYTES).text,
          context,
          input.teamId ?? null,
          JSON.stringify(actorOf(ctx)),
        ],
      );
      // Earlier sightings of this very signature are an exact match; others must be similar.
      const exact = pattern.occurrences > 1 ? [pattern.id] : [];
      const matches = await this.matches(sql, ctx.tenantId, vector, exact, this.opts.config.queryLimit, pattern.occurrences > 1 ? undefined : pattern.id);
      return { pattern, matches };
    });
    const promoted = await this.maybePromote(ctx.tenantId, reported.pattern.id);
    return {
      patternId: reported.pattern.id,
      signature: sig.text,
      isNew: reported.pattern.occurrences === 1,
      occurrences: reported.pattern.occurrences,
      matches: reported.matches,
      promoted,
    };
  }

  async query(ctx: TenantContext, raw: unknown): Promise<HindsightQueryResult> {
    const input = parseInput(hindsightQuerySchema, raw, 'hindsight query');
    const message = redactText(input.message).text;
    const stack = input.stack === undefined ? undefined : redactText(input.stack).text;
    const sig = errorSignature({ errorType: input.errorType, message, stack }, this.opts.config.stackFrames);
    const vector = await this.embed(ctx.tenantId, sig);
    const patterns = await this.opts.db.withTenant(ctx.tenantId, async (sql) => {
      // Without a type the signature is compared by its body (message and frames) alone.
      const exact = await sql.query<{ id: string }>(
        `SELECT id FROM hindsight_patterns WHERE tenant_id = $1 AND ${sig.errorType === '' ? 'body_hash' : 'signature_hash'} = $2`,
        [ctx.tenantId, sig.errorType === '' ? sig.bodyHash : sig.hash],
      );
      return this.matches(sql, ctx.tenantId, vector, exact.rows.map((r) => r.id), input.limit ?? this.opts.config.queryLimit);
    });
    return { signature: sig.text, patterns };
  }

  async resolve(ctx: TenantContext, raw: unknown): Promise<HindsightResolveResult> {
    const input = parseInput(hindsightResolveSchema, raw, 'hindsight resolution');
    const resolution = normaliseResolution(redactText(input.resolution).text);
    const recorded = await this.opts.db.withTenant(ctx.tenantId, async (sql) => {
      const found = await sql.query(
        `UPDATE hindsight_patterns SET last_resolved_at = now(), team_id = COALESCE($3, team_id) WHERE tenant_id = $1 AND id = $2 RETURNING id`,
        [ctx.tenantId, input.patternId, input.teamId ?? null],
      );
      if (found.rows.length === 0) {
        throw new AeternaError('NOT_FOUND', `hindsight pattern ${input.patternId} not found`, { patternId: input.patternId });
      }
      const outcomeId = newId();
      await sql.query(
        `INSERT INTO hindsight_outcomes (tenant_id, id, pattern_id, resolution, resolution_hash, success, team_id, actor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [ctx.tenantId, outcomeId, input.patternId, resolution, contentHash(resolution.toLowerCase()), input.success, input.teamId ?? null, JSON.stringify(actorOf(ctx))],
      );
      const stats = await sql.query<{ attempts: number; successes: number }>(
        `SELECT count(*)::int AS attempts, (count(*) FILTER (WHERE success))::int AS successes
           FROM hindsight_outcomes WHERE tenant_id = $1 AND pattern_id = $2`,
        [ctx.tenantId, input.patternId],
      );
      return { outcomeId, ...(stats.rows[0] as { attempts: number; successes: number }) };
    });
    const promoted = input.success ? await this.maybePromote(ctx.tenantId, input.patternId) : null;
    return {
      patternId: input.patternId,
      outcomeId: recorded.outcomeId,
      success: input.success,
      attempts: recorded.attempts,
      successes: recorded.successes,
      successRate: successRate(recorded.successes, recorded.attempts),
      promoted,
    };
  }

  private async embed(tenantId: string, sig: ErrorSignature): Promise<Float32Array> {
    const [vector] = await this.opts.embeddings.embed(tenantId, [sig.text]);
    if (!vector) throw new AeternaError('UNAVAILABLE', 'embedder returned no vector');
    return vector;
  }

  /**
   * The `exact` patterns (similarity 1) and those whose signature embedding is at least the
   * configured similarity, among the `scanLimit` most recently seen, ranked and cut to `limit`.
   */
  private async matches(sql: Sql, tenantId: string, vector: Float32Array, exact: string[], limit: number, excludeId?: string): Promise<HindsightMatch[]> {
    const { config, embeddings } = this.opts;
    // Stored and query vectors are L2-normalised (every embedder normalises), so the dot product is the cosine.
    const similar = await sql.query<{ id: string; similarity: number }>(
      `SELECT id, similarity FROM (
         SELECT id, (SELECT sum(a * b) FROM unnest(embedding, $2::real[]) AS t(a, b)) AS similarity
           FROM hindsight_patterns
          WHERE tenant_id = $1 AND embedding_model = $3 AND cardinality(embedding) = $4
          ORDER BY last_seen_at DESC LIMIT $5) recent
        WHERE similarity >= $6 ORDER BY similarity DESC LIMIT $7`,
      [tenantId, Array.from(vector), embeddings.model, vector.length, config.scanLimit, config.similarity, Math.max(limit * 4, 20)],
    );
    const similarity = new Map<string, number>();
    for (const row of similar.rows) if (row.id !== excludeId) similarity.set(row.id, Math.min(1, Number(row.similarity)));
    for (const id of exact) similarity.set(id, 1);
    if (similarity.size === 0) return [];
    const ids = [...similarity.keys()];
    const patterns = await sql.query<PatternRow>(
      `SELECT id, error_type, signature, occurrences, first_seen_at, last_seen_at, last_resolved_at, promoted_memory_id, promoted_team_id, promoted_at
         FROM hindsight_patterns WHERE tenant_id = $1 AND id = ANY($2::uuid[])`,
      [tenantId, ids],
    );
    const outcomes = await sql.query<OutcomeGroupRow>(
      `SELECT pattern_id, (array_agg(resolution ORDER BY created_at DESC))[1] AS resolution,
              (count(*) FILTER (WHERE success))::int AS successes, (count(*) FILTER (WHERE NOT success))::int AS failures,
              max(created_at) AS last_used_at
         FROM hindsight_outcomes WHERE tenant_id = $1 AND pattern_id = ANY($2::uuid[])
        GROUP BY pattern_id, resolution_hash`,
      [tenantId, ids],
    );
    const byPattern = new Map<string, OutcomeGroupRow[]>();
    for (const row of outcomes.rows) byPattern.set(row.pattern_id, [...(byPattern.get(row.pattern_id) ?? []), row]);
    const exactIds = new Set(exact);
    const now = Date.now();
    return patterns.rows
      .map((p): HindsightMatch => {
        const groups = byPattern.get(p.id) ?? [];
        const successes = groups.reduce((n, g) => n + g.successes, 0);
        const attempts = groups.reduce((n, g) => n + g.successes + g.failures, 0);
        const rate = successRate(successes, attempts);
        const sim = similarity.get(p.id) ?? 0;
        const touched = p.last_resolved_at && p.last_resolved_at > p.last_seen_at ? p.last_resolved_at : p.last_seen_at;
        const resolutions = groups
          .map((g): HindsightResolutionStats => ({
            resolution: g.resolution,
            successes: g.successes,
            failures: g.failures,
            successRate: successRate(g.successes, g.successes + g.failures),
            lastUsedAt: g.last_used_at.toISOString(),
          }))
          .sort((a, b) => b.successRate - a.successRate || b.successes - a.successes || b.lastUsedAt.localeCompare(a.lastUsedAt))
          .slice(0, RESOLUTIONS_PER_MATCH);
        return {
          patternId: p.id,
          errorType: p.error_type,
          signature: p.signature,
          exact: exactIds.has(p.id),
          similarity: sim,
          occurrences: p.occurrences,
          firstSeenAt: p.first_seen_at.toISOString(),
          lastSeenAt: p.last_seen_at.toISOString(),
          attempts,
          successes,
          successRate: rate,
          score: rate * sim * recency(touched, now, this.opts.config.halfLifeDays),
          resolutions,
          promoted: promotion(p),
        };
      })
      .sort((a, b) => b.score - a.score || b.similarity - a.similarity || a.patternId.localeCompare(b.patternId))
      .slice(0, limit);
  }

  /**
   * Promotes the pattern if it now qualifies and nobody has yet; returns the promotion this call
   * made, or null. The draft (team and text) is stored before the memory is added, so concurrent
   * promoters add the same text (one memory, deduplicated) and only the one that marks the
   * pattern appends the event.
   */
  private async maybePromote(tenantId: string, patternId: string): Promise<HindsightPromotion | null> {
    const { config, db, memory } = this.opts;
    const draft = await db.withTenant(tenantId, async (sql) => {
      const res = await sql.query<{ occurrences: number; promoted_at: Date | null; promotion_draft: PromotionDraft | null; team_id: string | null; signature: string; error_type: string }>(
        'SELECT occurrences, promoted_at, promotion_draft, team_id, signature, error_type FROM hindsight_patterns WHERE tenant_id = $1 AND id = $2',
        [tenantId, patternId],
      );
      const p = res.rows[0];
      if (!p || p.promoted_at || p.occurrences < config.promoteAfter) return undefined;
      if (p.promotion_draft) return p.promotion_draft;
      const best = await sql.query<{ resolution: string }>(
        `SELECT (array_agg(resolution ORDER BY created_at DESC))[1] AS resolution
           FROM hindsight_outcomes WHERE tenant_id = $1 AND pattern_id = $2
          GROUP BY resolution_hash HAVING count(*) FILTER (WHERE success) > 0
          ORDER BY (count(*) FILTER (WHERE success) + 1)::float8 / (count(*) + 2) DESC, count(*) FILTER (WHERE success) DESC, max(created_at) DESC
          LIMIT 1`,
        [tenantId, patternId],
      );
      const resolution = best.rows[0]?.resolution;
      if (resolution === undefined) return undefined;
      const proposed: PromotionDraft = {
        teamId: p.team_id ?? config.defaultTeamId,
        // No counts or times in the text: concurrent promoters must propose the same content.
        content: `Known error pattern: ${p.signature}\nResolution that worked: ${resolution}`,
        tags: cleanTags(['hindsight', 'error-pattern', p.error_type]),
        resolution,
      };
      const stored = await sql.query<{ promotion_draft: PromotionDraft }>(
        `UPDATE hindsight_patterns SET promotion_draft = COALESCE(promotion_draft, $3) WHERE tenant_id = $1 AND id = $2 RETURNING promotion_draft`,
        [tenantId, patternId, JSON.stringify(proposed)],
      );
      return stored.rows[0]?.promotion_draft ?? proposed;
    });
    if (!draft) return null;

    const ctx: TenantContext = { tenantId, ...HINDSIGHT_ACTOR, roles: ['developer'] };
    const added = await memory.add(ctx, {
      layer: 'team',
      teamId: draft.teamId,
      content: draft.content,
      tags: draft.tags,
      importance: 0.7,
      metadata: { kind: 'hindsight', patternId },
    });
    const promoted = await db.withTenant(tenantId, async (sql) => {
      const res = await sql.query<{ promoted_at: Date; occurrences: number; signature: string; error_type: string }>(
        `UPDATE hindsight_patterns SET promoted_memory_id = $3, promoted_team_id = $4, promoted_at = now()
          WHERE tenant_id = $1 AND id = $2 AND promoted_at IS NULL
          RETURNING promoted_at, occurrences, signature, error_type`,
        [tenantId, patternId, added.memory.id, draft.teamId],
      );
      const row = res.rows[0];
      if (!row) return null;
      const data: HindsightPatternEventData = {
        layer: 'team',
        scopeId: draft.teamId,
        patternId,
        memoryId: added.memory.id,
        errorType: row.error_type,
        signature: row.signature,
        occurrences: row.occurrences,
        resolution: draft.resolution,
      };
      await EventLog.append(sql, tenantId, { type: EVENT_TYPES.hindsightPattern, actor: HINDSIGHT_ACTOR, data });
      return { memoryId: added.memory.id, teamId: draft.teamId, promotedAt: row.promoted_at.toISOString() };
    });
    if (promoted) this.opts.commits?.notify(tenantId);
    return promoted;
  }
}
