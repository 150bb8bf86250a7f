import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import { cosine, openCacheRedis } from '../embed/index.js';
import { AeternaError, scopeOfEventData } from '../protocol/index.js';
import { EventLog } from '../events/index.js';
import type { Db, Sql } from '../store/index.js';
import { isValidId } from '../tenancy/index.js';

/** Memory events after a fence read per check; more than this and the answer is simply stale. */
const FENCE_PAGE = 200;

/** A memory an answer was built from, at the version it was read. */
export interface AnswerSource {
  id: string;
  version: number;
  /**
   * For answers built from summaries: the summariser of the stored summaries used, null when they
   * were made on the fly. Summaries arriving (or being remade) for the same content then
   * invalidate the answer too. Undefined: not checked.
   */
  summarizer?: string | null;
}

/** What a lookup compares: the query an answer answered, as an embedding. Small, so a scan is cheap. */
export interface AnswerEntry {
  id: string;
  vector: Float32Array;
  createdAt: number;
  expiresAt: number;
}

/**
 * The scopes an answer searched and the tenant's event-log position just before it searched
 * them. A memory written in one of those scopes after that position (a new memory that might now
 * match, an edit, a delete, a tier move, feedback that re-ranks) makes the answer stale. Seqs
 * commit in order (the counter row is locked until commit), so a write the search could not see
 * always has a seq above the position.
 */
export interface AnswerFence {
  seq: number;
  /** The stream's epoch: a database reset starts seqs again, and an answer from before it is void. */
  epoch: string | null;
  scopes: { layer: string; scopeId?: string }[];
}

/** What is fetched for the one entry that matched: the answer and what it depends on. */
export interface CachedAnswer<T> {
  value: T;
  sources: AnswerSource[];
  fence?: AnswerFence;
}

/**
 * Where answers live, grouped in partitions: one per (tenant, kind of answer, effective scope).
 * Every failure of a store is a miss or a dropped write, never an error for the caller.
 */
export interface AnswerStore<T> {
  /** The partition's entries (expired ones may be included; the cache filters them). */
  list(tenantId: string, partition: string): Promise<AnswerEntry[]>;
  /** An entry's answer; undefined when it is gone. */
  value(tenantId: string, partition: string, id: string): Promise<T | undefined>;
  put(tenantId: string, partition: string, entry: AnswerEntry, value: T, maxPerPartition: number): Promise<void>;
  remove(tenantId: string, partition: string, id: string): Promise<void>;
  close(): Promise<void>;
}

/** Partition names are ours (hex digests), tenant ids follow the id rule: nothing can alias another tenant. */
function checkKey(tenantId: string, partition: string): void {
  if (!isValidId(tenantId)) throw new AeternaError('INVALID_ARGUMENT', 'answer cache: invalid tenant id');
  if (!/^[a-z0-9.-]{1,128}$/.test(partition)) throw new AeternaError('INVALID_ARGUMENT', 'answer cache: invalid partition');
}

/**
 * In-process answers (embedded mode): an LRU over all partitions, bounded by `maxEntries`. A Map
 * iterates in insertion order, so re-inserting what is read keeps the least recently used first.
 */
export class MemoryAnswerStore<T> implements AnswerStore<T> {
  private readonly partitions = new Map<string, Map<string, { entry: AnswerEntry; value: T }>>();
  private count = 0;

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.count;
  }

  async list(tenantId: string, partition: string): Promise<AnswerEntry[]> {
    const entries = this.touch(tenantId, partition);
    return entries ? [...entries.values()].map((e) => e.entry) : [];
  }

  async value(tenantId: string, partition: string, id: string): Promise<T | undefined> {
    const entries = this.touch(tenantId, partition);
    const found = entries?.get(id);
    if (!entries || !found) return undefined;
    // A hit makes the answer recent: a partition drops its least recently used answer first.
    entries.delete(id);
    entries.set(id, found);
    return found.value;
  }

  async put(tenantId: string, partition: string, entry: AnswerEntry, value: T, maxPerPartition: number): Promise<void> {
    if (this.maxEntries === 0) return;
    const entries = this.touch(tenantId, partition) ?? new Map<string, { entry: AnswerEntry; value: T }>();
    this.partitions.set(`${tenantId}/${partition}`, entries);
    if (!entries.has(entry.id)) this.count++;
    entries.set(entry.id, { entry, value });
    while (entries.size > maxPerPartition) this.dropOldest(`${tenantId}/${partition}`, entries);
    while (this.count > this.maxEntries) {
      const [key, oldest] = this.partitions.entries().next().value as [string, Map<string, { entry: AnswerEntry; value: T }>];
      this.dropOldest(key, oldest);
    }
  }

  async remove(tenantId: string, partition: string, id: string): Promise<void> {
    checkKey(tenantId, partition);
    const key = `${tenantId}/${partition}`;
    const entries = this.partitions.get(key);
    if (entries?.delete(id)) this.count--;
    if (entries?.size === 0) this.partitions.delete(key);
  }

  async close(): Promise<void> {
    this.partitions.clear();
    this.count = 0;
  }

  /** The partition, moved to the most recently used end. */
  private touch(tenantId: string, partition: string): Map<string, { entry: AnswerEntry; value: T }> | undefined {
    checkKey(tenantId, partition);
    const key = `${tenantId}/${partition}`;
    const entries = this.partitions.get(key);
    if (entries) {
      this.partitions.delete(key);
      this.partitions.set(key, entries);
    }
    return entries;
  }

  private dropOldest(key: string, entries: Map<string, unknown>): void {
    const [oldest] = entries.keys();
    if (oldest !== undefined && entries.delete(oldest)) this.count--;
    if (entries.size === 0) this.partitions.delete(key);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Answers shared by every node (cluster mode), tenant first like every key:
 * `t:{tenant}:answers:{partition}` is a hash of the partition's entries (id → msgpack of vector and
 * times, ~1.6 KiB at 384 dimensions), scanned on lookup, and `t:{tenant}:answers:{partition}:{id}`
 * holds one answer with its sources, fetched only for the entry that matched, so a lookup never
 * moves every cached context. Both
 * expire `ttlSec` after their last write; each entry also carries its own expiry.
 */
export class RedisAnswerStore<T> implements AnswerStore<T> {
  private readonly client: Redis;
  // moreTypes: the default encoder does not round-trip a Float32Array.
  private readonly packr = new Packr({ moreTypes: true });
  private errorCount = 0;

  constructor(private readonly opts: { url: string; ttlSec: number }) {
    this.client = openCacheRedis(opts.url, () => this.errorCount++);
  }

  get errors(): number {
    return this.errorCount;
  }

  /** The partition's index key; an answer's key is this plus `:{id}`. */
  static key(tenantId: string, partition: string): string {
    checkKey(tenantId, partition);
    return `t:${tenantId}:answers:${partition}`;
  }

  async list(tenantId: string, partition: string): Promise<AnswerEntry[]> {
    return this.safely([], async () => {
      const raw = await this.client.hgetallBuffer(RedisAnswerStore.key(tenantId, partition));
      return Object.values(raw).flatMap((buf) => this.decode<AnswerEntry>(buf) ?? []);
    });
  }

  async value(tenantId: string, partition: string, id: string): Promise<T | undefined> {
    return this.safely(undefined, async () => {
      const buf = await this.client.getBuffer(`${RedisAnswerStore.key(tenantId, partition)}:${answerId(id)}`);
      return buf ? this.decode<T>(buf) : undefined;
    });
  }

  async put(tenantId: string, partition: string, entry: AnswerEntry, value: T, maxPerPartition: number): Promise<void> {
    const index = RedisAnswerStore.key(tenantId, partition);
    await this.safely(undefined, async () => {
      const replies = await this.client
        .multi()
        .set(`${index}:${answerId(entry.id)}`, this.packr.pack(value), 'EX', this.opts.ttlSec)
        .hset(index, entry.id, this.packr.pack(entry))
        .expire(index, this.opts.ttlSec)
        .hlen(index)
        .exec();
      const size = replies?.[3]?.[1];
      if (typeof size !== 'number' || size <= maxPerPartition) return;
      const oldest = (await this.list(tenantId, partition)).sort((a, b) => a.createdAt - b.createdAt).slice(0, size - maxPerPartition);
      if (oldest.length === 0) return;
      await this.client
        .multi()
        .hdel(index, ...oldest.map((e) => e.id))
        .del(...oldest.map((e) => `${index}:${answerId(e.id)}`))
        .exec();
    });
  }

  async remove(tenantId: string, partition: string, id: string): Promise<void> {
    const index = RedisAnswerStore.key(tenantId, partition);
    await this.safely(undefined, async () => {
      await this.client.multi().hdel(index, id).del(`${index}:${answerId(id)}`).exec();
    });
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      // quit fails when the connection is already gone; disconnect just stops the reconnect loop.
      this.client.disconnect();
    }
  }

  private decode<V>(buf: Buffer): V | undefined {
    try {
      return this.packr.unpack(buf) as V;
    } catch {
      return undefined;
    }
  }

  private async safely<R>(fallback: R, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch {
      this.errorCount++;
      return fallback;
    }
  }
}

/** Entry ids are UUIDs we made; anything else read back from a store must not shape a key. */
function answerId(id: string): string {
  if (!UUID.test(id)) throw new AeternaError('INVALID_ARGUMENT', 'answer cache: invalid entry id');
  return id;
}

export interface SemanticAnswerCacheOptions<T> {
  store: AnswerStore<CachedAnswer<T>>;
  db: Db;
  /** Cosine between query embeddings at or above which an answer is reused. */
  threshold: number;
  ttlSec: number;
  perPartition: number;
  now?: () => number;
}

export interface AnswerCacheStats {
  hits: number;
  misses: number;
  /** Misses where a similar answer was found but one of its sources had changed (it was dropped). */
  stale: number;
}

/**
 * Answers reused for queries that mean the same (cosine >= threshold), and never past a change to
 * what they were built from: each answer records the memories it depends on with their versions,
 * and before one is served a single SQL query checks that all of them still exist, undeleted, at
 * those versions. An edit or a delete bumps the version, so it invalidates every answer that used
 * the memory, on every node, with no invalidation messages to lose.
 *
 * Partitions are the caller's business: they must separate everything that changes what an
 * answer may contain (tenant, readable scopes, roles, parameters), so one reader's answer never
 * serves another who may not see its sources.
 */
export class SemanticAnswerCache<T> {
  private hits = 0;
  private misses = 0;
  private stale = 0;
  private readonly now: () => number;

  constructor(private readonly opts: SemanticAnswerCacheOptions<T>) {
    this.now = opts.now ?? Date.now;
  }

  /** The cached answer to a query this similar, if its sources are unchanged; a copy, safe to modify. */
  async get(tenantId: string, partition: string, vector: Float32Array): Promise<T | undefined> {
    const now = this.now();
    let best: AnswerEntry | undefined;
    let bestSimilarity = this.opts.threshold;
    for (const entry of await this.opts.store.list(tenantId, partition)) {
      if (entry.expiresAt <= now || !(entry.vector instanceof Float32Array) || entry.vector.length !== vector.length) continue;
      const similarity = cosine(vector, entry.vector);
      if (similarity >= bestSimilarity) {
        best = entry;
        bestSimilarity = similarity;
      }
    }
    if (!best) {
      this.misses++;
      return undefined;
    }
    const cached = await this.opts.store.value(tenantId, partition, best.id);
    if (cached === undefined) {
      this.misses++;
      return undefined;
    }
    if (!(await this.stillValid(tenantId, cached))) {
      await this.opts.store.remove(tenantId, partition, best.id);
      this.stale++;
      this.misses++;
      return undefined;
    }
    this.hits++;
    return structuredClone(cached.value);
  }

  /** Where the log is now: take it before computing an answer, and hand it to `set` with the answer. */
  async fence(tenantId: string, scopes: readonly { layer: string; scopeId?: string }[]): Promise<AnswerFence> {
    const head = await this.opts.db.withTenant(tenantId, (sql) => EventLog.head(sql, tenantId));
    return { seq: head.seq, epoch: head.epoch, scopes: scopes.map((s) => ({ layer: s.layer, ...(s.scopeId === undefined ? {} : { scopeId: s.scopeId }) })) };
  }

  async set(tenantId: string, partition: string, vector: Float32Array, value: T, sources: readonly AnswerSource[], fence?: AnswerFence): Promise<void> {
    const now = this.now();
    const entry: AnswerEntry = { id: randomUUID(), vector: vector.slice(), createdAt: now, expiresAt: now + this.opts.ttlSec * 1000 };
    const cached: CachedAnswer<T> = { value: structuredClone(value), sources: [...sources], ...(fence ? { fence } : {}) };
    await this.opts.store.put(tenantId, partition, entry, cached, this.opts.perPartition);
  }

  stats(): AnswerCacheStats {
    return { hits: this.hits, misses: this.misses, stale: this.stale };
  }

  close(): Promise<void> {
    return this.opts.store.close();
  }

  /** Both checks in one transaction: the sources unchanged, and nothing written in the fenced scopes since. */
  private stillValid(tenantId: string, cached: CachedAnswer<T>): Promise<boolean> {
    return this.opts.db.withTenant(tenantId, async (sql) => (await this.sourcesUnchanged(sql, tenantId, cached.sources)) && (await this.quietSince(sql, tenantId, cached.fence)));
  }

  /**
   * No memory event in the fenced scopes since the fence. One range read of the log by primary key;
   * more events than a page is treated as a change rather than read on.
   */
  private async quietSince(sql: Sql, tenantId: string, fence: AnswerFence | undefined): Promise<boolean> {
    if (fence === undefined) return true;
    if (!Number.isSafeInteger(fence.seq) || !Array.isArray(fence.scopes)) return false;
    const head = await EventLog.head(sql, tenantId);
    // No epoch is a stream that never started: a reset database and a surviving Redis look
    // exactly like an answer fenced there before, so such an answer is never trusted.
    if (head.epoch === null || head.epoch !== fence.epoch) return false;
    const res = await sql.query<{ data: unknown }>(`SELECT data FROM events WHERE tenant_id = $1 AND seq > $2 AND type LIKE 'memory.%' ORDER BY seq LIMIT $3`, [
      tenantId,
      fence.seq,
      FENCE_PAGE + 1,
    ]);
    if (res.rows.length > FENCE_PAGE) return false;
    return !res.rows.some(({ data }) => {
      const scope = scopeOfEventData(data);
      // An event that names no scope could be anywhere: it counts.
      if (scope === undefined) return true;
      return fence.scopes.some((s) => s.layer === scope.layer && (s.scopeId === undefined || s.scopeId === scope.scopeId));
    });
  }

  /** One query: do all sources still exist, undeleted, at the recorded versions (and summaries)? */
  private async sourcesUnchanged(sql: Sql, tenantId: string, sources: readonly AnswerSource[]): Promise<boolean> {
    // Entries can come back from Redis: one that is not what we wrote is stale, not an SQL error.
    const wellFormed = (s: AnswerSource) =>
      UUID.test(String(s?.id)) && Number.isInteger(s?.version) && (s.summarizer === undefined || s.summarizer === null || typeof s.summarizer === 'string');
    if (!Array.isArray(sources) || !sources.every(wellFormed)) return false;
    const unique = [...new Map(sources.map((s) => [s.id, s])).values()];
    if (unique.length === 0) return true;
    // By primary key, so the check costs the same at any tenant size.
    const res = await sql.query<{ id: string; version: number; summarizer: string | null }>(
      `SELECT m.id, m.version,
              (SELECT ms.summarizer FROM memory_summaries ms
                WHERE ms.tenant_id = m.tenant_id AND ms.memory_id = m.id AND ms.level = 'sentence' AND ms.content_hash = m.content_hash) AS summarizer
         FROM memories m
        WHERE m.id = ANY($2::uuid[]) AND m.tenant_id = $1 AND m.deleted_at IS NULL`,
      [tenantId, unique.map((s) => s.id)],
    );
    const now = new Map(res.rows.map((r) => [r.id, r]));
    return unique.every((s) => {
      const row = now.get(s.id);
      return row !== undefined && row.version === s.version && (s.summarizer === undefined || s.summarizer === row.summarizer);
    });
  }
}
