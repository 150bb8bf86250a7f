import { contentHash, cosine, type EmbeddingService } from '../embed/index.js';
import { EventLog, type CommitSignal } from '../events/index.js';
import {
  AeternaError,
  EVENT_TYPES,
  LAYERS,
  addMemorySchema,
  feedbackSchema,
  listMemoriesSchema,
  memoryIdSchema,
  parseInput,
  readEventsSchema,
  searchMemoriesSchema,
  updateMemorySchema,
  type EventEnvelope,
  type Layer,
  type Memory,
  type Tier,
} from '../protocol/index.js';
import { newId, type Db, type Sql } from '../store/index.js';
import { actorOf, requirePermission, type TenantContext } from '../tenancy/index.js';
import { binder, scopeFilterSql, type VectorIndex } from '../vector/index.js';
import { importanceAfterFeedback, rankScore } from './ranking.js';
import { layerRank, mayAccessScope, resolveReadScopes, resolveWriteScope, seesEveryUserLayer } from './scope.js';
import type { ColdRestorer } from './tiering.js';

export interface MemoryServiceOptions {
  db: Db;
  embeddings: EmbeddingService;
  vectors: VectorIndex;
  /** Content longer than this (UTF-8 bytes) is refused. */
  maxContentBytes: number;
  /** Cosine similarity at or above which an add updates the existing memory instead. */
  dedupThreshold: number;
  recencyHalfLifeDays: number;
  /** Told after every committed write, so the relay can deliver without waiting for its poll. */
  commits?: CommitSignal;
  /** Brings cold memories back when they are used; without it, using one is UNAVAILABLE. */
  cold?: ColdRestorer;
}

export interface AddResult {
  memory: Memory;
  /** True when the content matched a live memory in the same layer and scope, which was updated. */
  deduplicated: boolean;
  duplicateOf?: string;
  similarity?: number;
}

export interface SearchHit {
  memory: Memory;
  similarity: number;
  score: number;
  /** Near-identical memories of wider layers that this narrower one replaced. */
  shadowed?: string[];
}

export interface ListResult {
  items: Memory[];
  nextCursor: string | null;
}

export interface DeleteResult {
  id: string;
  deleted: true;
  alreadyDeleted: boolean;
}

export interface EventPage {
  events: EventEnvelope[];
  /** Pass as `since` to read on. */
  nextSince: number;
  head: number;
  epoch: string | null;
}

interface MemoryRow {
  id: string;
  tenant_id: string;
  layer: Layer;
  scope_id: string;
  content: string;
  metadata: Record<string, unknown>;
  tags: string[];
  importance: number;
  content_hash: string;
  version: number;
  access_count: number;
  last_accessed_at: Date | null;
  created_by: Memory['createdBy'];
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
  tier: Tier;
  cold_key: string | null;
}

const COLUMNS = `id, tenant_id, layer, scope_id, content, metadata, tags, importance, content_hash, version,
  access_count, last_accessed_at, created_by, created_at, updated_at, deleted_at, tier, cold_key`;

function toMemory(row: MemoryRow): Memory {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    layer: row.layer,
    scopeId: row.scope_id,
    content: row.content,
    metadata: row.metadata,
    tags: row.tags,
    importance: Number(row.importance),
    contentHash: row.content_hash,
    version: row.version,
    accessCount: row.access_count,
    lastAccessedAt: row.last_accessed_at ? row.last_accessed_at.toISOString() : null,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    tier: row.tier,
  };
}

function notFound(id: string): AeternaError {
  return new AeternaError('NOT_FOUND', `memory ${id} not found`, { id });
}

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!memoryIdSchema.safeParse(id).success) throw new AeternaError('INVALID_ARGUMENT', 'cursor is not valid', { field: 'cursor' });
  return id;
}

/**
 * Memories at seven layers, for one tenant at a time. Every write commits the row and its event
 * in one transaction; embeddings are computed before the transaction opens so no lock is held
 * across a model call.
 */
export class MemoryService {
  constructor(private readonly opts: MemoryServiceOptions) {}

  async add(ctx: TenantContext, raw: unknown): Promise<AddResult> {
    requirePermission(ctx, 'memory:write');
    const input = parseInput(addMemorySchema, raw, 'memory');
    this.checkContentSize(input.content);
    const scopeId = resolveWriteScope(ctx, input.layer, input);
    const [vector] = await this.opts.embeddings.embed(ctx.tenantId, [input.content]);
    if (!vector) throw new AeternaError('UNAVAILABLE', 'embedder returned no vector');
    const hash = contentHash(input.content);
    const { vectors, embeddings } = this.opts;

    return this.write(ctx, async (sql) => {
      // Serialise adds per scope so two identical concurrent adds cannot both miss each other.
      // '/' cannot occur in ids, so the key is unambiguous.
      await sql.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
        `${ctx.tenantId}/${input.layer}/${scopeId}`,
      ]);
      const twin = await this.findTwin(sql, ctx.tenantId, input.layer, scopeId, hash, vector);
      if (twin) {
        const merged = await this.mergeInto(sql, ctx, await this.thaw(sql, ctx, twin.row), input, hash, vector);
        return { memory: merged, deduplicated: true, duplicateOf: twin.row.id, similarity: twin.similarity };
      }
      const id = newId();
      const res = await sql.query<MemoryRow>(
        `INSERT INTO memories (id, tenant_id, layer, scope_id, content, metadata, tags, importance, content_hash, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${COLUMNS}`,
        [
          id,
          ctx.tenantId,
          input.layer,
          scopeId,
          input.content,
          JSON.stringify(input.metadata ?? {}),
          input.tags ?? [],
          input.importance ?? 0.5,
          hash,
          JSON.stringify(actorOf(ctx)),
        ],
      );
      await vectors.upsert(sql, id, vector, embeddings.model);
      const memory = toMemory(res.rows[0] as MemoryRow);
      await this.emit(sql, ctx, EVENT_TYPES.memoryAdded, { memory });
      return { memory, deduplicated: false };
    });
  }

  async get(ctx: TenantContext, rawId: unknown): Promise<Memory> {
    requirePermission(ctx, 'memory:read');
    const id = parseInput(memoryIdSchema, rawId, 'memory id');
    let thawed = false;
    const memory = await this.opts.db.withTenant(ctx.tenantId, async (sql) => {
      const res = await sql.query<MemoryRow>(
        `UPDATE memories SET access_count = access_count + 1, last_accessed_at = now()
          WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
            AND (layer <> 'user' OR scope_id = $3 OR $4::boolean)
          RETURNING ${COLUMNS}`,
        [id, ctx.tenantId, ctx.userId, seesEveryUserLayer(ctx)],
      );
      const row = res.rows[0];
      if (!row) throw notFound(id);
      if (row.tier !== 'cold') return toMemory(row);
      // The whole memory, restored by this access; `tier` says where this read was served from.
      thawed = true;
      return { ...toMemory(await this.thaw(sql, ctx, row)), tier: 'cold' as const };
    });
    if (thawed) this.opts.commits?.notify(ctx.tenantId);
    return memory;
  }

  /**
   * Where a memory stands now, for workers acting on an older event of it: its current version and
   * content hash, or null once it is deleted (or never existed). A system read: no roles, no access count.
   */
  async currentState(tenantId: string, id: string): Promise<{ version: number; contentHash: string } | null> {
    return this.opts.db.withTenant(tenantId, async (sql) => {
      const res = await sql.query<{ version: number; content_hash: string }>(
        'SELECT version, content_hash FROM memories WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL',
        [id, tenantId],
      );
      const row = res.rows[0];
      return row ? { version: row.version, contentHash: row.content_hash } : null;
    });
  }

  async list(ctx: TenantContext, raw: unknown): Promise<ListResult> {
    requirePermission(ctx, 'memory:read');
    const input = parseInput(listMemoriesSchema, raw, 'list query');
    const layers = input.layer ? [input.layer] : [...LAYERS];
    const scopes = resolveReadScopes(ctx, layers, input);
    const cursorId = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
    return this.opts.db.withTenant(ctx.tenantId, async (sql) => {
      const params: unknown[] = [];
      const bind = binder(params);
      const where = [`tenant_id = ${bind(ctx.tenantId)}`, 'deleted_at IS NULL', scopeFilterSql({ scopes, tags: input.tags }, bind)];
      if (cursorId) where.push(`id < ${bind(cursorId)}`);
      const res = await sql.query<MemoryRow>(
        `SELECT ${COLUMNS} FROM memories WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ${bind(input.limit + 1)}`,
        params,
      );
      const items = res.rows.slice(0, input.limit).map(toMemory);
      const last = items[items.length - 1];
      return { items, nextCursor: res.rows.length > input.limit && last ? encodeCursor(last.id) : null };
    });
  }

  async search(ctx: TenantContext, raw: unknown): Promise<{ results: SearchHit[]; model: string }> {
    requirePermission(ctx, 'memory:read');
    const input = parseInput(searchMemoriesSchema, raw, 'search');
    const scopes = resolveReadScopes(ctx, input.layers ?? [...LAYERS], input);
    const [vector] = await this.opts.embeddings.embed(ctx.tenantId, [input.query]);
    if (!vector) throw new AeternaError('UNAVAILABLE', 'embedder returned no vector');
    const { db, vectors, embeddings } = this.opts;

    const results = await db.withTenant(ctx.tenantId, async (sql) => {
      // Over-fetch so ranking and layer precedence have candidates to choose from.
      const hits = (
        await vectors.search(sql, {
          vector,
          model: embeddings.model,
          filter: { scopes, tags: input.tags },
          limit: Math.max(40, input.limit * 4),
        })
      ).filter((h) => h.similarity >= input.threshold);
      if (hits.length === 0) return [];
      const ids = hits.map((h) => h.id);
      const rows = new Map(
        (await sql.query<MemoryRow>(`SELECT ${COLUMNS} FROM memories WHERE id = ANY($1::uuid[])`, [ids])).rows.map((r) => [r.id, r]),
      );
      const now = new Date();
      const ranked = hits
        .flatMap((h) => {
          const row = rows.get(h.id);
          if (!row) return [];
          const touchedAt = row.last_accessed_at && row.last_accessed_at > row.updated_at ? row.last_accessed_at : row.updated_at;
          const score = rankScore({ similarity: h.similarity, importance: Number(row.importance), touchedAt }, now, this.opts.recencyHalfLifeDays);
          return [{ row, similarity: h.similarity, score }];
        })
        .sort((a, b) => b.score - a.score);
      const chosen = await this.applyLayerPrecedence(sql, ranked, input.limit);
      if (chosen.length > 0) {
        await sql.query('UPDATE memories SET access_count = access_count + 1, last_accessed_at = now() WHERE id = ANY($1::uuid[])', [
          chosen.map((c) => c.row.id),
        ]);
      }
      return chosen.map((c): SearchHit => ({
        memory: toMemory(c.row),
        similarity: c.similarity,
        score: c.score,
        ...(c.shadowed.length > 0 ? { shadowed: c.shadowed } : {}),
      }));
    });
    return { results, model: embeddings.model };
  }

  /**
   * Counts a read of these memories as search does (access count, last access), for answers
   * served from a cache: tiering and ranking see every access, however it was answered.
   */
  async recordAccess(ctx: TenantContext, ids: readonly string[]): Promise<void> {
    requirePermission(ctx, 'memory:read');
    const valid = ids.filter((id) => memoryIdSchema.safeParse(id).success);
    if (valid.length === 0) return;
    await this.opts.db.withTenant(ctx.tenantId, (sql) =>
      sql.query('UPDATE memories SET access_count = access_count + 1, last_accessed_at = now() WHERE id = ANY($1::uuid[]) AND tenant_id = $2 AND deleted_at IS NULL', [
        valid,
        ctx.tenantId,
      ]),
    );
  }

  async update(ctx: TenantContext, rawId: unknown, raw: unknown): Promise<Memory> {
    requirePermission(ctx, 'memory:write');
    const id = parseInput(memoryIdSchema, rawId, 'memory id');
    const input = parseInput(updateMemorySchema, raw, 'update');
    let vector: Float32Array | undefined;
    if (input.content !== undefined) {
      this.checkContentSize(input.content);
      [vector] = await this.opts.embeddings.embed(ctx.tenantId, [input.content]);
      if (!vector) throw new AeternaError('UNAVAILABLE', 'embedder returned no vector');
    }
    return this.write(ctx, async (sql) => {
      const current = await this.lockLive(sql, ctx, id);
      if (current.version !== input.version) {
        throw new AeternaError('CONFLICT', `memory ${id} is at version ${current.version}, not ${input.version}`, {
          id,
          currentVersion: current.version,
        });
      }
      const res = await sql.query<MemoryRow>(
        `UPDATE memories SET
           content = COALESCE($2, content), content_hash = COALESCE($3, content_hash),
           metadata = COALESCE($4::jsonb, metadata), tags = COALESCE($5::text[], tags),
           importance = COALESCE($6, importance), version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING ${COLUMNS}`,
        [
          id,
          input.content ?? null,
          input.content === undefined ? null : contentHash(input.content),
          input.metadata === undefined ? null : JSON.stringify(input.metadata),
          input.tags ?? null,
          input.importance ?? null,
        ],
      );
      if (vector) await this.opts.vectors.upsert(sql, id, vector, this.opts.embeddings.model);
      const memory = toMemory(res.rows[0] as MemoryRow);
      const changed = (['content', 'metadata', 'tags', 'importance'] as const).filter((k) => input[k] !== undefined);
      await this.emit(sql, ctx, EVENT_TYPES.memoryUpdated, { memory, changed });
      return memory;
    });
  }

  async delete(ctx: TenantContext, rawId: unknown): Promise<DeleteResult> {
    requirePermission(ctx, 'memory:delete');
    const id = parseInput(memoryIdSchema, rawId, 'memory id');
    return this.write(ctx, async (sql) => {
      const res = await sql.query<MemoryRow>(`SELECT ${COLUMNS} FROM memories WHERE id = $1 AND tenant_id = $2 FOR UPDATE`, [id, ctx.tenantId]);
      const row = res.rows[0];
      if (!row || !mayAccessScope(ctx, row.layer, row.scope_id)) throw notFound(id);
      if (row.deleted_at) return { id, deleted: true, alreadyDeleted: true };
      await sql.query('UPDATE memories SET deleted_at = now(), version = version + 1, updated_at = now() WHERE id = $1', [id]);
      await this.emit(sql, ctx, EVENT_TYPES.memoryDeleted, { id, layer: row.layer, scopeId: row.scope_id });
      return { id, deleted: true, alreadyDeleted: false };
    });
  }

  async feedback(ctx: TenantContext, rawId: unknown, raw: unknown): Promise<Memory> {
    requirePermission(ctx, 'memory:write');
    const id = parseInput(memoryIdSchema, rawId, 'memory id');
    const input = parseInput(feedbackSchema, raw, 'feedback');
    const score = input.score ?? (input.type === 'helpful' ? 1 : -1);
    return this.write(ctx, async (sql) => {
      const current = await this.lockLive(sql, ctx, id);
      const importance = importanceAfterFeedback(Number(current.importance), score);
      // Feedback does not bump `version`: a rating must not make a concurrent editor's write stale.
      const res = await sql.query<MemoryRow>(`UPDATE memories SET importance = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, importance]);
      const memory = toMemory(res.rows[0] as MemoryRow);
      await this.emit(sql, ctx, EVENT_TYPES.memoryFeedback, {
        memoryId: id,
        layer: memory.layer,
        scopeId: memory.scopeId,
        type: input.type,
        score,
        previousImportance: Number(current.importance),
        importance: memory.importance,
        ...(input.comment === undefined ? {} : { comment: input.comment }),
      });
      return memory;
    });
  }

  async events(ctx: TenantContext, raw: unknown): Promise<EventPage> {
    requirePermission(ctx, 'events:read');
    const input = parseInput(readEventsSchema, raw, 'events query');
    const page = await this.opts.db.withTenant(ctx.tenantId, (sql) => EventLog.read(sql, ctx.tenantId, input.since, input.limit));
    const last = page.events[page.events.length - 1];
    return { ...page, nextSince: last ? last.seq : input.since };
  }

  /** A write transaction, then the commit signal (after COMMIT: never announce what may roll back). */
  private async write<T>(ctx: TenantContext, fn: (sql: Sql) => Promise<T>): Promise<T> {
    const result = await this.opts.db.withTenant(ctx.tenantId, fn);
    this.opts.commits?.notify(ctx.tenantId);
    return result;
  }

  private checkContentSize(content: string): void {
    const bytes = Buffer.byteLength(content, 'utf8');
    if (bytes > this.opts.maxContentBytes) {
      throw new AeternaError('PAYLOAD_TOO_LARGE', `content is ${bytes} bytes; the limit is ${this.opts.maxContentBytes}`, {
        field: 'content',
        maxBytes: this.opts.maxContentBytes,
      });
    }
  }

  private emit(sql: Sql, ctx: TenantContext, type: string, data: unknown): Promise<EventEnvelope> {
    return EventLog.append(sql, ctx.tenantId, { type, actor: actorOf(ctx), data, ...(ctx.traceId ? { traceId: ctx.traceId } : {}) });
  }

  /** The live memory (a cold one restored), row-locked for the rest of the transaction; another user's private ones look absent. */
  private async lockLive(sql: Sql, ctx: TenantContext, id: string): Promise<MemoryRow> {
    const res = await sql.query<MemoryRow>(
      `SELECT ${COLUMNS} FROM memories WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL FOR UPDATE`,
      [id, ctx.tenantId],
    );
    const row = res.rows[0];
    if (!row || !mayAccessScope(ctx, row.layer, row.scope_id)) throw notFound(id);
    return this.thaw(sql, ctx, row);
  }

  /**
   * A cold stub made whole again inside the caller's transaction, before anything reads or
   * merges its content: a write to a stub would otherwise lose the archived text and metadata.
   * The row must already be locked (FOR UPDATE, or an UPDATE of it).
   */
  private async thaw(sql: Sql, ctx: TenantContext, row: MemoryRow): Promise<MemoryRow> {
    if (row.tier !== 'cold') return row;
    if (!this.opts.cold) throw new AeternaError('UNAVAILABLE', `memory ${row.id} is in cold storage and no cold store is configured`, { id: row.id });
    const stub = { id: row.id, layer: row.layer, scopeId: row.scope_id, contentHash: row.content_hash, version: row.version, coldKey: row.cold_key };
    await this.opts.cold.restoreLocked(sql, ctx.tenantId, stub, actorOf(ctx), ctx.traceId);
    const res = await sql.query<MemoryRow>(`SELECT ${COLUMNS} FROM memories WHERE id = $1`, [row.id]);
    return res.rows[0] as MemoryRow;
  }

  private async findTwin(
    sql: Sql,
    tenantId: string,
    layer: Layer,
    scopeId: string,
    hash: string,
    vector: Float32Array,
  ): Promise<{ row: MemoryRow; similarity: number } | undefined> {
    const exact = await sql.query<MemoryRow>(
      `SELECT ${COLUMNS} FROM memories
        WHERE tenant_id = $1 AND layer = $2 AND scope_id = $3 AND content_hash = $4 AND deleted_at IS NULL
        LIMIT 1 FOR UPDATE`,
      [tenantId, layer, scopeId, hash],
    );
    if (exact.rows[0]) return { row: exact.rows[0], similarity: 1 };
    const [best] = await this.opts.vectors.search(sql, {
      vector,
      model: this.opts.embeddings.model,
      filter: { scopes: [{ layer, scopeId }] },
      limit: 1,
    });
    if (!best || best.similarity < this.opts.dedupThreshold) return undefined;
    const near = await sql.query<MemoryRow>(`SELECT ${COLUMNS} FROM memories WHERE id = $1 FOR UPDATE`, [best.id]);
    return near.rows[0] ? { row: near.rows[0], similarity: best.similarity } : undefined;
  }

  /**
   * A near-duplicate add refreshes the existing memory: newest content, union of tags, merged
   * metadata, the higher importance. An exact repeat that changes nothing writes nothing.
   */
  private async mergeInto(
    sql: Sql,
    ctx: TenantContext,
    row: MemoryRow,
    input: { content: string; metadata?: Record<string, unknown>; tags?: string[]; importance?: number },
    hash: string,
    vector: Float32Array,
  ): Promise<Memory> {
    const tags = [...new Set([...row.tags, ...(input.tags ?? [])])];
    const metadata = { ...row.metadata, ...(input.metadata ?? {}) };
    const importance = Math.max(Number(row.importance), input.importance ?? 0);
    const unchanged =
      row.content_hash === hash &&
      tags.length === row.tags.length &&
      JSON.stringify(metadata) === JSON.stringify(row.metadata) &&
      importance === Number(row.importance);
    if (unchanged) return toMemory(row);
    const res = await sql.query<MemoryRow>(
      `UPDATE memories SET content = $2, content_hash = $3, tags = $4, metadata = $5, importance = $6,
         version = version + 1, updated_at = now()
       WHERE id = $1 RETURNING ${COLUMNS}`,
      [row.id, input.content, hash, tags, JSON.stringify(metadata), importance],
    );
    if (row.content_hash !== hash) await this.opts.vectors.upsert(sql, row.id, vector, this.opts.embeddings.model);
    const memory = toMemory(res.rows[0] as MemoryRow);
    await this.emit(sql, ctx, EVENT_TYPES.memoryUpdated, { memory, changed: ['content'], reason: 'deduplicated' });
    return memory;
  }

  /**
   * Walks results best first; a result near-identical to one already kept from another layer
   * collapses into it, and the narrower layer's memory is the one that stays.
   */
  private async applyLayerPrecedence<T extends { row: MemoryRow; similarity: number; score: number }>(
    sql: Sql,
    ranked: T[],
    limit: number,
  ): Promise<(T & { shadowed: string[] })[]> {
    const distinctLayers = new Set(ranked.map((r) => r.row.layer));
    const kept: (T & { shadowed: string[] })[] = [];
    if (distinctLayers.size < 2) {
      for (const r of ranked.slice(0, limit)) kept.push({ ...r, shadowed: [] });
      return kept;
    }
    const stored = await this.opts.vectors.vectorsOf(sql, ranked.map((r) => r.row.id));
    const keptVectors: (Float32Array | undefined)[] = [];
    for (const candidate of ranked) {
      const v = stored.get(candidate.row.id);
      const twinIndex = v
        ? kept.findIndex((k, i) => {
            const kv = keptVectors[i];
            return k.row.layer !== candidate.row.layer && kv !== undefined && cosine(v, kv) >= this.opts.dedupThreshold;
          })
        : -1;
      if (twinIndex < 0) {
        if (kept.length < limit) {
          kept.push({ ...candidate, shadowed: [] });
          keptVectors.push(v);
        }
        continue;
      }
      const twin = kept[twinIndex] as T & { shadowed: string[] };
      if (layerRank(candidate.row.layer) < layerRank(twin.row.layer)) {
        kept[twinIndex] = { ...candidate, shadowed: [...twin.shadowed, twin.row.id] };
        keptVectors[twinIndex] = v;
      } else {
        twin.shadowed.push(candidate.row.id);
      }
    }
    return kept;
  }
}
