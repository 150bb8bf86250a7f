import { z } from 'zod';
import type { TieringConfig } from '../config.js';
import { contentHash } from '../embed/index.js';
import { EventLog, type CommitSignal } from '../events/index.js';
import { countTokens, truncateToTokens, type Logger } from '../obs/index.js';
import { AeternaError, EVENT_TYPES, parseInput, type Actor, type Layer, type Tier } from '../protocol/index.js';
import type { Db, Sql } from '../store/index.js';
import { actorOf, assertId, requirePermission, type TenantContext } from '../tenancy/index.js';
import type { VectorIndex } from '../vector/index.js';
import { batchTime, coldMonth, coldPrefix, parseColdKey, type ColdRow, type ColdStore } from './cold-store.js';

/**
 * Tiers, and exactly how they are decided (all numbers from TieringConfig, defaults in brackets):
 *
 * - last activity = the later of `last_accessed_at` (a get or a search hit) and `updated_at`
 *   (which is `created_at` until the first update): writing a memory is using it.
 * - idle = now - last activity.
 * - accesses per day = access_count / days since created_at (at least 1 day): the memory's
 *   average use over its life. It is what the table stores (no per-access history), it needs no
 *   extra write on the read path, and it decays by itself as a memory sits unused. Accesses per
 *   week = 7 x that.
 *
 *   idle <= hotDays [7]                                        hot
 *   hotDays < idle <= coldDays [90]:  per day < warmMaxPerDay [1]     warm, else hot
 *   idle > coldDays:                  per week < coldMaxPerWeek [1]   cold,
 *                                     else per day < warmMaxPerDay     warm, else hot
 *
 * Boundaries belong to the hotter tier: idle exactly 7 days is hot, exactly 90 days is warm,
 * exactly 1 access a day is not "under 1 a day". Rates are compared by cross-multiplying whole
 * milliseconds, so a boundary is never missed by a rounding error.
 */
export type TierPolicy = Pick<TieringConfig, 'hotDays' | 'coldDays' | 'warmMaxPerDay' | 'coldMaxPerWeek'>;

export interface TierInput {
  accessCount: number;
  lastAccessedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;

export function lastActivity(m: Pick<TierInput, 'lastAccessedAt' | 'updatedAt'>): Date {
  return m.lastAccessedAt && m.lastAccessedAt > m.updatedAt ? m.lastAccessedAt : m.updatedAt;
}

/** Whether the memory was used fewer than `max` times per `periodMs` over its life (at least a day). */
function usedLessThan(m: TierInput, now: Date, max: number, periodMs: number): boolean {
  const lifeMs = Math.max(DAY_MS, now.getTime() - m.createdAt.getTime());
  return m.accessCount * periodMs < max * lifeMs;
}

export function classifyTier(m: TierInput, now: Date, policy: TierPolicy): Tier {
  const idleMs = now.getTime() - lastActivity(m).getTime();
  if (idleMs <= policy.hotDays * DAY_MS) return 'hot';
  const warmRate = usedLessThan(m, now, policy.warmMaxPerDay, DAY_MS);
  if (idleMs <= policy.coldDays * DAY_MS) return warmRate ? 'warm' : 'hot';
  if (usedLessThan(m, now, policy.coldMaxPerWeek, WEEK_MS)) return 'cold';
  return warmRate ? 'warm' : 'hot';
}

/**
 * What a cold stub keeps as content: at most `maxTokens` tokens and at most half the content's,
 * then an ellipsis, so a stub never holds the whole text however short the memory.
 */
export function previewOf(content: string, maxTokens: number): string {
  const budget = Math.min(maxTokens, Math.floor(countTokens(content) / 2));
  return `${truncateToTokens(content, budget)}…`;
}

/** Recorded as the actor of tier changes the periodic sweep makes on nobody's behalf. */
export const TIERING_ACTOR: Actor = { userId: 'system', agentId: 'tiering' };

/** A cold memory's stub, as far as restoring it needs. */
export interface ColdStub {
  id: string;
  layer: Layer;
  scopeId: string;
  contentHash: string;
  version: number;
  coldKey: string | null;
}

/** What MemoryService needs to bring a cold memory back on access, inside its own transaction. */
export interface ColdRestorer {
  /**
   * Makes the (row-locked) stub whole again from its archive, marks it warm and appends
   * `memory.tiered`, all in `sql`'s transaction: if anything fails, nothing changed.
   */
  restoreLocked(sql: Sql, tenantId: string, stub: ColdStub, actor: Actor, traceId?: string): Promise<void>;
}

export const tieringRunSchema = z
  .object({
    /** Classify and count only: no tier marks, no moves, no restores. Query strings say "true". */
    dryRun: z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]).default(false),
  })
  .strict();

export interface TieringReport {
  tenantId: string;
  dryRun: boolean;
  /** Live memories looked at. */
  scanned: number;
  /** What the rules say each of them is now (before the moves the run could not finish). */
  classified: Record<Tier, number>;
  /** Tier changes made, by target: `cold` counts memories moved to the archive. */
  moved: Record<Tier, number>;
  /** Stubs brought back because they are no longer cold (a search hit used them). */
  restored: number;
  /** Cold candidates that changed while being archived; they stay live and are looked at next run. */
  skipped: number;
  /** Cold candidates over `maxPerRun`, left for the next run. */
  deferred: number;
  /** Archive files written. */
  batches: string[];
  /** Archive files of failed moves that were removed (nothing referred to them). */
  orphansRemoved: number;
  /** Archive files that could not be restored from (damaged or unreachable); their stubs stay stubs. */
  failures: { key: string; code: string; message: string }[];
  ms: number;
}

export interface TierStats {
  tenantId: string;
  tiers: Record<Tier, { memories: number; contentBytes: number }>;
  archive: { files: number; referencedFiles: number };
  policy: TierPolicy;
}

export interface TieringServiceOptions {
  db: Db;
  vectors: VectorIndex;
  cold: ColdStore;
  config: TieringConfig;
  log: Logger;
  /** Told after every committed tier change, so the relay delivers `memory.tiered` promptly. */
  commits?: CommitSignal;
}

interface ClassifyRow {
  id: string;
  layer: Layer;
  scope_id: string;
  tier: Tier;
  access_count: number;
  last_accessed_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

type BigIntText = string | number | bigint;

interface ExportRow extends ClassifyRow {
  tenant_id: string;
  content: string;
  metadata: string;
  tags: string[];
  importance: number | string;
  embedding_model: string | null;
  content_hash: string;
  version: number;
  last_accessed_us: BigIntText | null;
  created_by: string;
  created_us: BigIntText;
  updated_us: BigIntText;
}

interface StubRow {
  id: string;
  layer: Layer;
  scope_id: string;
  content_hash: string;
  version: number;
  cold_key: string | null;
}

const CLASSIFY_COLUMNS = 'id, layer, scope_id, tier, access_count, last_accessed_at, created_at, updated_at';
/** Microseconds as whole numbers: extract() is numeric on PostgreSQL 14+, so nothing is rounded. */
const micros = (column: string) => `(extract(epoch FROM ${column}) * 1000000)::bigint AS ${column.replace(/_at$/, '')}_us`;
const EXPORT_COLUMNS = `${CLASSIFY_COLUMNS}, tenant_id, content, metadata::text AS metadata, tags, importance, embedding_model,
  content_hash, version, created_by::text AS created_by, ${micros('last_accessed_at')}, ${micros('created_at')}, ${micros('updated_at')}`;

const toInput = (r: ClassifyRow): TierInput => ({ accessCount: r.access_count, lastAccessedAt: r.last_accessed_at, createdAt: r.created_at, updatedAt: r.updated_at });
const emptyCounts = (): Record<Tier, number> => ({ hot: 0, warm: 0, cold: 0 });
const elapsedMs = (since: number): number => Math.round(performance.now() - since);

function toColdRow(r: ExportRow, embedding: Float32Array | undefined): ColdRow {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    layer: r.layer,
    scopeId: r.scope_id,
    content: r.content,
    metadata: r.metadata,
    tags: r.tags,
    importance: Number(r.importance),
    embeddingModel: r.embedding_model,
    embedding: embedding ?? null,
    contentHash: r.content_hash,
    version: r.version,
    accessCount: r.access_count,
    lastAccessedUs: r.last_accessed_us === null ? null : BigInt(r.last_accessed_us),
    createdBy: r.created_by,
    createdUs: BigInt(r.created_us),
    updatedUs: BigInt(r.updated_us),
  };
}

const toStub = (r: StubRow): ColdStub => ({ id: r.id, layer: r.layer, scopeId: r.scope_id, contentHash: r.content_hash, version: r.version, coldKey: r.cold_key });

/**
 * Hot / warm / cold storage of memories. A run classifies every live memory of a tenant, marks
 * hot and warm in the `tier` column, moves cold ones out of the table into Parquet (ColdStore),
 * and brings back stubs that are in use again. Every tier change appends `memory.tiered`.
 *
 * Crash safety, both ways: a move writes the archive and its manifest and reads them back
 * before one transaction swaps the row for its stub (re-checking, under row locks, that the row
 * is still the version archived and still cold); a restore reads and verifies the archive
 * before one transaction makes the row whole. A crash between the steps leaves the memory whole
 * in the table (and an archive file nothing refers to, removed by a later run), or still a stub
 * with its archive: never in neither place.
 */
export class TieringService implements ColdRestorer {
  private readonly running = new Map<string, Promise<TieringReport>>();

  constructor(private readonly opts: TieringServiceOptions) {}

  get policy(): TierPolicy {
    const { hotDays, coldDays, warmMaxPerDay, coldMaxPerWeek } = this.opts.config;
    return { hotDays, coldDays, warmMaxPerDay, coldMaxPerWeek };
  }

  /** `POST /v1/admin/tiering/run`: tiers the caller's tenant now (admin role). */
  async runFor(ctx: TenantContext, raw: unknown): Promise<TieringReport> {
    requirePermission(ctx, 'jobs:manage');
    const input = parseInput(tieringRunSchema, raw ?? {}, 'tiering run');
    return this.run(ctx.tenantId, { dryRun: input.dryRun, actor: actorOf(ctx) });
  }

  /** `GET /v1/admin/tiering/stats` (admin role). */
  async statsFor(ctx: TenantContext): Promise<TierStats> {
    requirePermission(ctx, 'jobs:manage');
    return this.stats(ctx.tenantId);
  }

  /**
   * One tiering run over a tenant. A second call for a tenant whose run is under way in this
   * process joins that run instead of racing it (across processes, races only waste work: the
   * row locks of the stub transaction let one move win).
   */
  run(tenantId: string, opts: { dryRun?: boolean; actor?: Actor } = {}): Promise<TieringReport> {
    const tenant = assertId('tenantId', tenantId);
    const dryRun = opts.dryRun ?? false;
    const key = `${tenant}/${dryRun}`;
    const current = this.running.get(key);
    if (current) return current;
    const started = this.runTenant(tenant, dryRun, opts.actor ?? TIERING_ACTOR).finally(() => this.running.delete(key));
    this.running.set(key, started);
    return started;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.running.values());
    await this.opts.cold.close();
  }

  /** Restores these cold memories (no access counted), to warm; returns how many were restored. */
  async restore(tenantId: string, ids: readonly string[], actor: Actor = TIERING_ACTOR): Promise<number> {
    return this.restoreStubs(assertId('tenantId', tenantId), ids.map((id) => ({ id, to: 'warm' as const })), actor);
  }

  async restoreLocked(sql: Sql, tenantId: string, stub: ColdStub, actor: Actor, traceId?: string): Promise<void> {
    if (!stub.coldKey) throw new AeternaError('INTERNAL', `memory ${stub.id} is marked cold but names no archive`, { id: stub.id });
    const archived = await this.opts.cold.read(tenantId, stub.coldKey, [stub.id]);
    await this.makeWhole(sql, tenantId, stub.coldKey, [{ stub, to: 'warm' }], archived, actor, traceId);
  }

  async stats(tenantId: string): Promise<TierStats> {
    const tenant = assertId('tenantId', tenantId);
    const [rows, referenced] = await this.opts.db.withTenant(tenant, async (sql) => [
      (await sql.query<{ tier: Tier; memories: BigIntText; content_bytes: BigIntText | null }>(
        `SELECT tier, count(*) AS memories, sum(octet_length(content)) AS content_bytes FROM memories
          WHERE tenant_id = $1 AND deleted_at IS NULL GROUP BY tier`,
        [tenant],
      )).rows,
      (await sql.query<{ n: BigIntText }>('SELECT count(DISTINCT cold_key) AS n FROM memories WHERE tenant_id = $1 AND cold_key IS NOT NULL', [tenant])).rows[0]?.n ?? 0,
    ] as const);
    const tiers: TierStats['tiers'] = { hot: { memories: 0, contentBytes: 0 }, warm: { memories: 0, contentBytes: 0 }, cold: { memories: 0, contentBytes: 0 } };
    for (const r of rows) tiers[r.tier] = { memories: Number(r.memories), contentBytes: Number(r.content_bytes ?? 0) };
    const files = (await this.opts.cold.list(tenant)).filter((k) => parseColdKey(tenant, k)?.kind === 'manifest').length;
    return { tenantId: tenant, tiers, archive: { files, referencedFiles: Number(referenced) }, policy: this.policy };
  }

  /**
   * Removes archive files no stub refers to (soft-deleted stubs count: their content lives
   * there) once older than `orphanGraceSec`, so a move still between its two steps is never cut.
   */
  async removeOrphans(tenantId: string): Promise<number> {
    const tenant = assertId('tenantId', tenantId);
    const graceMs = this.opts.config.orphanGraceSec * 1000;
    const batches = new Set<string>();
    for (const key of await this.opts.cold.list(tenant)) {
      const parsed = parseColdKey(tenant, key);
      if (!parsed || Date.now() - batchTime(parsed.batchId).getTime() < graceMs) continue;
      batches.add(`${coldPrefix(tenant)}${parsed.month}/${parsed.batchId}.parquet`);
    }
    if (batches.size === 0) return 0;
    const keys = [...batches];
    const used = await this.opts.db.withTenant(tenant, async (sql) =>
      new Set(
        (await sql.query<{ cold_key: string }>('SELECT DISTINCT cold_key FROM memories WHERE tenant_id = $1 AND cold_key = ANY($2::text[])', [tenant, keys])).rows.map(
          (r) => r.cold_key,
        ),
      ),
    );
    let removed = 0;
    for (const key of keys) {
      if (used.has(key)) continue;
      await this.opts.cold.deleteBatch(tenant, key);
      removed += 1;
    }
    if (removed > 0) this.opts.log.info({ tenantId: tenant, removed }, 'tiering: removed archive files no memory refers to');
    return removed;
  }

  private async runTenant(tenant: string, dryRun: boolean, actor: Actor): Promise<TieringReport> {
    const started = performance.now();
    const { batchSize, maxPerRun } = this.opts.config;
    const report: TieringReport = {
      tenantId: tenant,
      dryRun,
      scanned: 0,
      classified: emptyCounts(),
      moved: emptyCounts(),
      restored: 0,
      skipped: 0,
      deferred: 0,
      batches: [],
      orphansRemoved: 0,
      failures: [],
      ms: 0,
    };
    const coldByMonth = new Map<string, string[]>();
    let coldCandidates = 0;
    const warmAgain: { id: string; to: Tier }[] = [];

    // Pass 1, a page at a time: classify, mark hot/warm now, collect what must move.
    let cursor = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const { rows, now } = await this.opts.db.withTenant(tenant, async (sql) => {
        const page = await sql.query<ClassifyRow & { now: Date }>(
          `SELECT ${CLASSIFY_COLUMNS}, now() AS now FROM memories
            WHERE tenant_id = $1 AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3`,
          [tenant, cursor, batchSize],
        );
        return { rows: page.rows, now: page.rows[0]?.now ?? new Date() };
      });
      if (rows.length === 0) break;
      cursor = (rows[rows.length - 1] as ClassifyRow).id;
      report.scanned += rows.length;
      const marks: { row: ClassifyRow; to: Tier }[] = [];
      for (const row of rows) {
        const to = classifyTier(toInput(row), now, this.policy);
        report.classified[to] += 1;
        if (to === row.tier) continue;
        if (row.tier === 'cold') {
          warmAgain.push({ id: row.id, to });
        } else if (to === 'cold') {
          if (coldCandidates >= maxPerRun) {
            report.deferred += 1;
            continue;
          }
          coldCandidates += 1;
          const month = coldMonth(lastActivity(toInput(row)));
          const ids = coldByMonth.get(month) ?? [];
          ids.push(row.id);
          coldByMonth.set(month, ids);
        } else {
          marks.push({ row, to });
        }
      }
      if (!dryRun && marks.length > 0) {
        const changed = await this.write(tenant, (sql) => this.mark(sql, tenant, marks, actor));
        for (const to of changed) report.moved[to] += 1;
      }
      if (rows.length < batchSize) break;
    }
    if (dryRun) {
      report.ms = elapsedMs(started);
      return report;
    }

    // Pass 2: cold moves, one archive file per month and batch.
    for (const [month, ids] of coldByMonth) {
      for (let i = 0; i < ids.length; i += batchSize) {
        const outcome = await this.moveToCold(tenant, month, ids.slice(i, i + batchSize), actor);
        report.moved.cold += outcome.moved;
        report.skipped += outcome.skipped;
        if (outcome.key) report.batches.push(outcome.key);
      }
    }

    // Pass 3: stubs in use again (a search hit counts as an access) come back.
    report.restored = await this.restoreStubs(tenant, warmAgain, actor, report.failures);

    report.orphansRemoved = await this.removeOrphans(tenant);
    report.ms = elapsedMs(started);
    this.opts.log.info(
      { tenantId: tenant, scanned: report.scanned, moved: report.moved, restored: report.restored, skipped: report.skipped, deferred: report.deferred, ms: report.ms },
      'tiering run finished',
    );
    return report;
  }

  /** hot <-> warm: a column change, guarded so a concurrent change of tier wins. */
  private async mark(sql: Sql, tenant: string, marks: readonly { row: ClassifyRow; to: Tier }[], actor: Actor): Promise<Tier[]> {
    const res = await sql.query<{ id: string; layer: Layer; scope_id: string; from_tier: Tier; to_tier: Tier }>(
      `UPDATE memories m SET tier = c.to_tier, tiered_at = now()
         FROM unnest($2::uuid[], $3::text[], $4::text[]) AS c(id, from_tier, to_tier)
        WHERE m.tenant_id = $1 AND m.id = c.id AND m.tier = c.from_tier AND m.deleted_at IS NULL
        RETURNING m.id, m.layer, m.scope_id, c.from_tier, c.to_tier`,
      [tenant, marks.map((m) => m.row.id), marks.map((m) => m.row.tier), marks.map((m) => m.to)],
    );
    for (const r of res.rows) await this.emitTiered(sql, tenant, { id: r.id, layer: r.layer, scopeId: r.scope_id }, r.from_tier, r.to_tier, actor);
    return res.rows.map((r) => r.to_tier);
  }

  /**
   * Archive, verify, then swap rows for stubs in one transaction. Rows that changed since they
   * were archived (new version, accessed again, deleted) keep their place in the table; a file
   * no stub ended up referring to is removed at once.
   */
  private async moveToCold(tenant: string, month: string, ids: readonly string[], actor: Actor): Promise<{ moved: number; skipped: number; key?: string }> {
    const { db, vectors, cold, config } = this.opts;
    const { rows, embeddings, now } = await db.withTenant(tenant, async (sql) => {
      const res = await sql.query<ExportRow & { now: Date }>(
        `SELECT ${EXPORT_COLUMNS}, now() AS now FROM memories
          WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND tier <> 'cold' AND deleted_at IS NULL ORDER BY id`,
        [tenant, [...ids]],
      );
      return { rows: res.rows, embeddings: await vectors.vectorsOf(sql, res.rows.map((r) => r.id)), now: res.rows[0]?.now ?? new Date() };
    });
    const archivable = rows.filter((r) => {
      if (classifyTier(toInput(r), now, this.policy) !== 'cold') return false;
      if (contentHash(r.content) === r.content_hash) return true;
      // Restoring checks content against this hash; a row that fails it now would be stuck cold.
      this.opts.log.warn({ tenantId: tenant, id: r.id }, 'tiering: content does not match content_hash; memory left in the live table');
      return false;
    });
    const skippedBefore = ids.length - archivable.length;
    if (archivable.length === 0) return { moved: 0, skipped: skippedBefore };

    const batch = await cold.write(tenant, month, archivable.map((r) => toColdRow(r, embeddings.get(r.id))));
    const archived = new Map(archivable.map((r) => [r.id, r]));
    // No clean-up when this transaction fails: a COMMIT whose reply was lost may have landed, and
    // then stubs refer to the file. An unreferenced file is removed by removeOrphans, which checks.
    const moved = await this.write(tenant, async (sql) => {
      const locked = await sql.query<ClassifyRow & { version: number; content_hash: string; now: Date }>(
        `SELECT ${CLASSIFY_COLUMNS}, version, content_hash, now() AS now FROM memories
          WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND tier <> 'cold' AND deleted_at IS NULL ORDER BY id FOR UPDATE`,
        [tenant, [...archived.keys()]],
      );
      const stubs = locked.rows.filter((r) => {
        const was = archived.get(r.id);
        return was !== undefined && was.version === r.version && was.content_hash === r.content_hash && classifyTier(toInput(r), r.now, this.policy) === 'cold';
      });
      if (stubs.length === 0) return 0;
      await sql.query(
        `UPDATE memories m SET content = s.preview, metadata = '{}'::jsonb, tier = 'cold', cold_key = $2, tiered_at = now()
           FROM unnest($3::uuid[], $4::text[]) AS s(id, preview)
          WHERE m.tenant_id = $1 AND m.id = s.id`,
        [tenant, batch.key, stubs.map((r) => r.id), stubs.map((r) => previewOf((archived.get(r.id) as ExportRow).content, config.previewTokens))],
      );
      for (const r of stubs) await this.emitTiered(sql, tenant, { id: r.id, layer: r.layer, scopeId: r.scope_id }, r.tier, 'cold', actor);
      return stubs.length;
    });
    if (moved === 0) await this.dropUnused(tenant, batch.key);
    return { moved, skipped: skippedBefore + archivable.length - moved, ...(moved > 0 ? { key: batch.key } : {}) };
  }

  /** Best effort: a file that failed to be removed is an orphan the next run's sweep removes. */
  private async dropUnused(tenant: string, key: string): Promise<void> {
    await this.opts.cold.deleteBatch(tenant, key).catch((err: unknown) => this.opts.log.warn({ err, tenantId: tenant, key }, 'tiering: could not remove an unused archive file'));
  }

  /**
   * Restores stubs grouped by archive file: one download, one verification and one transaction
   * per file (a file holds at most batchSize memories, so a transaction does too).
   */
  private async restoreStubs(
    tenant: string,
    wanted: readonly { id: string; to: Tier }[],
    actor: Actor,
    failures?: TieringReport['failures'],
  ): Promise<number> {
    if (wanted.length === 0) return 0;
    const target = new Map(wanted.map((w) => [w.id, w.to === 'cold' ? 'warm' : w.to]));
    const stubs = await this.opts.db.withTenant(tenant, async (sql) =>
      (await sql.query<StubRow>(
        `SELECT id, layer, scope_id, content_hash, version, cold_key FROM memories
          WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND tier = 'cold' AND deleted_at IS NULL`,
        [tenant, [...target.keys()]],
      )).rows,
    );
    const byKey = new Map<string, string[]>();
    for (const s of stubs) {
      if (!s.cold_key) continue;
      byKey.set(s.cold_key, [...(byKey.get(s.cold_key) ?? []), s.id]);
    }
    let restored = 0;
    for (const [key, ids] of byKey) {
      let archived: Map<string, ColdRow>;
      try {
        archived = await this.opts.cold.read(tenant, key, ids);
      } catch (err) {
        // One damaged file must not stop a sweep; without a failure list (a direct call) it is the caller's error.
        if (!failures) throw err;
        const e = err instanceof AeternaError ? err : new AeternaError('INTERNAL', (err as Error).message, { key });
        failures.push({ key, code: e.code, message: e.message });
        this.opts.log.error({ err, tenantId: tenant, key }, 'tiering: could not restore from an archive file; its stubs stay cold');
        continue;
      }
      restored += await this.write(tenant, async (sql) => {
        // Under lock: only stubs that are still stubs of this file (a get may have restored one).
        const locked = await sql.query<StubRow>(
          `SELECT id, layer, scope_id, content_hash, version, cold_key FROM memories
            WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND tier = 'cold' AND cold_key = $3 AND deleted_at IS NULL ORDER BY id FOR UPDATE`,
          [tenant, ids, key],
        );
        const items = locked.rows.map((r) => ({ stub: toStub(r), to: (target.get(r.id) ?? 'warm') as Exclude<Tier, 'cold'> }));
        await this.makeWhole(sql, tenant, key, items, archived, actor);
        return items.length;
      });
    }
    return restored;
  }

  /** Puts archived content and metadata back on locked stubs, after checking each is the same memory and version. */
  private async makeWhole(
    sql: Sql,
    tenant: string,
    key: string,
    items: readonly { stub: ColdStub; to: Exclude<Tier, 'cold'> }[],
    archived: ReadonlyMap<string, ColdRow>,
    actor: Actor,
    traceId?: string,
  ): Promise<void> {
    if (items.length === 0) return;
    const rows = items.map(({ stub }) => {
      const row = archived.get(stub.id);
      if (!row) throw new AeternaError('INTERNAL', `cold archive ${key}: does not hold memory ${stub.id}`, { key, id: stub.id });
      if (row.contentHash !== stub.contentHash || row.version !== stub.version) {
        throw new AeternaError('INTERNAL', `cold archive ${key}: holds another version of memory ${stub.id}`, {
          key,
          id: stub.id,
          archivedVersion: row.version,
          version: stub.version,
        });
      }
      return row;
    });
    await sql.query(
      `UPDATE memories m SET content = s.content, metadata = s.metadata::jsonb, tier = s.tier, cold_key = NULL, tiered_at = now()
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS s(id, content, metadata, tier)
        WHERE m.tenant_id = $1 AND m.id = s.id AND m.tier = 'cold'`,
      [tenant, rows.map((r) => r.id), rows.map((r) => r.content), rows.map((r) => r.metadata), items.map((i) => i.to)],
    );
    for (const { stub, to } of items) await this.emitTiered(sql, tenant, stub, 'cold', to, actor, traceId);
  }

  private async emitTiered(sql: Sql, tenant: string, m: { id: string; layer: Layer; scopeId: string }, from: Tier, to: Tier, actor: Actor, traceId?: string): Promise<void> {
    await EventLog.append(sql, tenant, {
      type: EVENT_TYPES.memoryTiered,
      actor,
      data: { id: m.id, layer: m.layer, scopeId: m.scopeId, from, to },
      ...(traceId ? { traceId } : {}),
    });
  }

  /** A tier-changing transaction, then the commit signal (never before COMMIT). */
  private async write<T>(tenant: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    const result = await this.opts.db.withTenant(tenant, fn);
    this.opts.commits?.notify(tenant);
    return result;
  }
}
