import type { DuckDBConnection } from '@duckdb/node-api';
import type { z } from 'zod';
import type { GraphConfig } from '../config.js';
import type { EmbeddingService } from '../embed/index.js';
import { EventLog, type CommitSignal } from '../events/index.js';
import type { Logger } from '../obs/index.js';
import {
  AeternaError,
  EVENT_TYPES,
  GRAPH_EVENT_ID_CAP,
  graphNeighborsSchema,
  graphNodeIdSchema,
  graphNodeSchema,
  graphPathSchema,
  graphRelatedSchema,
  graphSearchSchema,
  graphUpsertEdgeSchema,
  graphUpsertNodeSchema,
  graphWriteOptionsSchema,
  graphWriteSchema,
  parseInput,
  type Actor,
  type GraphChangedData,
  type GraphChanges,
  type GraphEdge,
  type GraphNeighborsResult,
  type GraphNode,
  type GraphNodeResult,
  type GraphPathResult,
  type GraphRelatedResult,
  type GraphSearchResult,
  type GraphWriteOptions,
  type GraphWriteResult,
} from '../protocol/index.js';
import type { Db } from '../store/index.js';
import { assertId } from '../tenancy/index.js';
import { DuckPool, inTransaction } from './duck.js';
import { edgeIdFor, nodeIdFor } from './ids.js';
import { GraphLog } from './log.js';
import { KeyedMutex } from './mutex.js';
import {
  ChangeSet,
  applyDrafts,
  prepareProjection,
  readPosition,
  replayBatch,
  wipeTenant,
  writePosition,
  type OpDraft,
  type ProjectionPosition,
} from './projection.js';
import { memorySupport, nodeWithDegree, textSearch, type SupportedElement } from './queries.js';
import type { GraphBatch } from './schema.js';
import { fillEmbeddings, semanticSearch } from './semantic.js';
import type { GraphSnapshotRestorer } from './snapshot/index.js';
import { loadEdges, loadNodes, neighbors, related, requireNode, shortestPath, type View } from './traverse.js';

export interface GraphStoreOptions {
  db: Db;
  config: GraphConfig;
  log: Logger;
  /** Told after every committed graph write (it also appends a graph.changed event). */
  commits?: CommitSignal;
  /** Rebuilds a tenant from snapshots on its first use in this process; without it, the whole log is replayed. */
  snapshots?: GraphSnapshotRestorer;
  /** Enables `search({semantic: true})`. */
  embeddings?: EmbeddingService;
}

/** Who reads. Authorisation (roles) is the caller's: routes check it, workers act for the system. */
export interface GraphReadContext {
  tenantId: string;
}

/** Who writes: recorded in the log and as the actor of the graph.changed event. */
export interface GraphWriteContext {
  tenantId: string;
  actor: Actor;
  traceId?: string;
}

/** The actor of graph writes nobody asked for (cascades, purges). */
export const GRAPH_SYSTEM_ACTOR: Actor = { userId: 'system', agentId: 'graph' };

/** Batches read from the log per PostgreSQL query while catching up. */
const TAIL_PAGE = 500;
/** One write's ops, serialised, at most this big: the log row and the event stay reasonable. */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;

interface TenantState extends ProjectionPosition {
  /** Commit time (ms) of the newest batch applied here: "now" never lags it, whatever this host's clock says. */
  lastAt: number;
}

/** Thrown inside the write transaction to roll it back when the batch changed nothing. */
class NothingToWrite extends Error {}

const emptyChanges = (): GraphChanges => new ChangeSet().toChanges();

type WriteOptions = z.infer<typeof graphWriteOptionsSchema>;

function changedData(seq: number, changes: GraphChanges, opts: WriteOptions): GraphChangedData {
  let truncated = false;
  const cap = (ids: string[]) => {
    if (ids.length > GRAPH_EVENT_ID_CAP) truncated = true;
    return ids.slice(0, GRAPH_EVENT_ID_CAP);
  };
  const data: GraphChangedData = {
    graphSeq: seq,
    nodes: { upserted: cap(changes.nodes.upserted), deleted: cap(changes.nodes.deleted), invalidated: cap(changes.nodes.invalidated) },
    edges: { upserted: cap(changes.edges.upserted), deleted: cap(changes.edges.deleted), invalidated: cap(changes.edges.invalidated) },
  };
  if (changes.nodes.purged.length > 0 || changes.edges.purged.length > 0) {
    data.purged = { nodes: changes.nodes.purged.length, edges: changes.edges.purged.length };
  }
  if (truncated) data.truncated = true;
  if (opts.sourceMemory) {
    data.sourceMemoryId = opts.sourceMemory.id;
    data.layer = opts.sourceMemory.layer;
    data.scopeId = opts.sourceMemory.scopeId;
  }
  if (opts.jobKey !== undefined) data.jobKey = opts.jobKey;
  return data;
}

/**
 * The knowledge graph. PostgreSQL's `graph_events` is the source of truth: each write is one
 * batch of ops, committed with a gap-free per-tenant seq and a `graph.changed` event. Every
 * process keeps its own DuckDB projection of the log and answers queries from it; before each
 * query it applies whatever batches other processes committed since (one cheap query when there
 * are none), so every process reads every committed write. A tenant is loaded on first use:
 * from snapshots when a restorer is given, then the log's tail.
 *
 * Methods parse their raw input with the zod schemas in src/protocol/graph.ts, so routes can
 * pass request bodies straight through. They do not check roles; the caller does.
 */
export class GraphStore {
  private readonly mutex = new KeyedMutex();
  private readonly tenants = new Map<string, TenantState>();
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;

  private constructor(
    private readonly opts: GraphStoreOptions,
    private readonly pool: DuckPool,
  ) {}

  static async open(opts: GraphStoreOptions): Promise<GraphStore> {
    const pool = await DuckPool.open(opts.config.duckdbPath);
    try {
      await pool.use(prepareProjection);
    } catch (err) {
      pool.close();
      throw err;
    }
    return new GraphStore(opts, pool);
  }

  /** Waits for running calls, then closes DuckDB. Later calls fail with UNAVAILABLE. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    this.pool.close();
  }

  // ---------------------------------------------------------------------------------------------
  // Queries

  /** A node and its degree. `raw` is `{id, asOf?}` or just the id. */
  async node(ctx: GraphReadContext, raw: unknown): Promise<GraphNodeResult> {
    const input = parseInput(graphNodeSchema, typeof raw === 'string' ? { id: raw } : raw, 'graph node query');
    return this.read(ctx, input.asOf, (view) => nodeWithDegree(view, input.id));
  }

  async neighbors(ctx: GraphReadContext, raw: unknown): Promise<GraphNeighborsResult> {
    const input = parseInput(graphNeighborsSchema, raw, 'graph neighbors query');
    return this.read(ctx, input.asOf, async (view) =>
      neighbors(view, await requireNode(view, input.id), { depth: input.depth, direction: input.direction, relations: input.relation, limit: input.limit }),
    );
  }

  async path(ctx: GraphReadContext, raw: unknown): Promise<GraphPathResult> {
    const input = parseInput(graphPathSchema, raw, 'graph path query');
    return this.read(ctx, input.asOf, async (view): Promise<GraphPathResult> => {
      await requireNode(view, input.from, 'from');
      await requireNode(view, input.to, 'to');
      const found = await shortestPath(view, input.from, input.to, { maxDepth: input.maxDepth, direction: input.direction, relations: input.relation });
      if (!found) return { found: false, maxDepth: input.maxDepth };
      const nodes = await loadNodes(view, found.nodes);
      const edges = new Map((await loadEdges(view, found.steps)).map((e) => [e.id, e]));
      return {
        found: true,
        length: found.steps.length,
        nodes: found.nodes.map((id) => nodes.get(id) as GraphNode),
        edges: found.steps.map((s) => edges.get(s.id) as GraphEdge),
      };
    });
  }

  async related(ctx: GraphReadContext, raw: unknown): Promise<GraphRelatedResult> {
    const input = parseInput(graphRelatedSchema, raw, 'graph related query');
    return this.read(ctx, input.asOf, async (view) => {
      const node = await requireNode(view, input.id);
      return { node, related: await related(view, node.id, { hops: input.hops, limit: input.limit }) };
    });
  }

  /** Text search; with `semantic: true` and an embedding service, ranked by label embedding similarity instead. */
  async search(ctx: GraphReadContext, raw: unknown): Promise<GraphSearchResult> {
    const input = parseInput(graphSearchSchema, raw, 'graph search');
    const embeddings = input.semantic ? this.opts.embeddings : undefined;
    if (!embeddings) return this.read(ctx, input.asOf, (view) => textSearch(view, input));
    return this.read(
      ctx,
      input.asOf,
      (view) => semanticSearch(view, embeddings, input),
      async (view) => void (await fillEmbeddings(view, embeddings, input.kind)),
    );
  }

  /** The live elements a memory supports, with all their supporting memories (for re-extraction on update). */
  async memorySupport(ctx: GraphReadContext, memoryId: string): Promise<{ nodes: SupportedElement[]; edges: SupportedElement[] }> {
    const id = parseInput(graphNodeIdSchema, memoryId, 'memory id');
    return this.read(ctx, undefined, (view) => memorySupport(view, id));
  }

  // ---------------------------------------------------------------------------------------------
  // Writes

  /**
   * Writes one batch atomically: validated against the tenant's latest graph (edge ends must be
   * live nodes, deletes and invalidations need a live element), logged, announced with a
   * `graph.changed` event, and applied to this process's projection. With `jobKey`, a batch
   * already written under that key makes this a no-op (`applied: false, duplicate: true`).
   */
  async write(ctx: GraphWriteContext, rawOps: unknown, rawOpts: unknown = {}): Promise<GraphWriteResult> {
    const tenantId = assertId('tenantId', ctx.tenantId);
    const drafts = parseInput(graphWriteSchema, rawOps, 'graph ops');
    const opts = parseInput(graphWriteOptionsSchema, rawOpts, 'graph write options');
    this.checkSizes(drafts);
    return this.track(() => this.mutex.run(tenantId, () => this.writeLocked(tenantId, ctx, drafts, opts)));
  }

  async upsertNode(ctx: GraphWriteContext, raw: unknown, opts?: GraphWriteOptions): Promise<{ node: GraphNode; seq: number }> {
    const input = parseInput(graphUpsertNodeSchema, raw, 'graph node');
    const id = input.id ?? nodeIdFor(input.kind, input.label);
    const result = await this.write(ctx, [{ op: 'node.upsert', ...input, id }], opts);
    const node = (await this.pool.use((conn) => loadNodes(this.view(conn, ctx.tenantId), [id]))).get(id);
    if (!node) throw new AeternaError('INTERNAL', `node ${id} missing after its write`);
    return { node, seq: result.seq };
  }

  async upsertEdge(ctx: GraphWriteContext, raw: unknown, opts?: GraphWriteOptions): Promise<{ edge: GraphEdge; seq: number }> {
    const input = parseInput(graphUpsertEdgeSchema, raw, 'graph edge');
    const id = input.id ?? edgeIdFor(input.source, input.relation, input.target);
    const result = await this.write(ctx, [{ op: 'edge.upsert', ...input, id }], opts);
    const [edge] = await this.pool.use((conn) => loadEdges(this.view(conn, ctx.tenantId), [{ id, from: input.source }]));
    if (!edge) throw new AeternaError('INTERNAL', `edge ${id} missing after its write`);
    return { edge, seq: result.seq };
  }

  /** A newer fact contradicts this one: it stays, valid until `validTo` (default: now). */
  async invalidate(ctx: GraphWriteContext, element: 'node' | 'edge', id: string, validTo?: string): Promise<GraphWriteResult> {
    return this.write(ctx, [{ op: 'invalidate', element, id, ...(validTo === undefined ? {} : { validTo }) }]);
  }

  /** Soft-deletes the node and its edges; NOT_FOUND for an unknown id, a no-op (`applied: false`) when already deleted. */
  async deleteNode(ctx: GraphWriteContext, id: string): Promise<GraphWriteResult> {
    return this.write(ctx, [{ op: 'node.delete', id }]);
  }

  /** The memory was deleted: soft-delete what it alone supported. Idempotent per job key. */
  async cascadeMemory(tenantId: string, memoryId: string, jobKey?: string, actor: Actor = GRAPH_SYSTEM_ACTOR): Promise<GraphWriteResult> {
    return this.write({ tenantId, actor }, [{ op: 'cascade', memoryId }], jobKey === undefined ? {} : { jobKey });
  }

  /** Hard-deletes what was soft-deleted more than `retentionDays` before `now`. */
  async purgeExpired(tenantId: string, now: Date = new Date(), actor: Actor = GRAPH_SYSTEM_ACTOR): Promise<GraphWriteResult> {
    const before = new Date(now.getTime() - this.opts.config.retentionDays * 86_400_000).toISOString();
    return this.write({ tenantId, actor }, [{ op: 'purge', before }]);
  }

  // ---------------------------------------------------------------------------------------------
  // Projection access (snapshots)

  /**
   * Catches the tenant's projection up with the log, then runs `fn` on a connection while holding
   * the tenant's projection lock: nothing changes the tenant's rows until it returns. `fn` must
   * not use the Db (a write waiting for this lock may hold it) and must end any transaction it opens.
   */
  async withProjection<T>(tenantId: string, fn: (conn: DuckDBConnection, position: ProjectionPosition) => Promise<T>): Promise<T> {
    const tenant = assertId('tenantId', tenantId);
    return this.track(() =>
      this.mutex.run(tenant, async () => {
        const state = await this.catchUp(tenant);
        return this.pool.use((conn) => fn(conn, { seq: state.seq, purgedSeq: state.purgedSeq }));
      }),
    );
  }

  /** Catches the tenant up and says where its projection stands. */
  async sync(tenantId: string): Promise<ProjectionPosition> {
    return this.withProjection(tenantId, async (_conn, position) => position);
  }

  // ---------------------------------------------------------------------------------------------

  private view(conn: DuckDBConnection, tenantId: string, at?: string): View {
    const lastAt = this.tenants.get(tenantId)?.lastAt ?? 0;
    return { conn, tenantId, at: at ?? new Date(Math.max(Date.now(), lastAt)).toISOString() };
  }

  /**
   * Catches up under the tenant's lock (plus `prepare`, for derived data a query needs), then
   * runs the query outside it: DuckDB gives the query a consistent snapshot while later
   * batches apply.
   */
  private read<T>(ctx: GraphReadContext, asOf: string | undefined, query: (view: View) => Promise<T>, prepare?: (view: View) => Promise<void>): Promise<T> {
    const tenantId = assertId('tenantId', ctx.tenantId);
    return this.track(async () => {
      await this.mutex.run(tenantId, async () => {
        await this.catchUp(tenantId);
        if (prepare) await this.pool.use((conn) => prepare(this.view(conn, tenantId, asOf)));
      });
      return this.pool.use((conn) => query(this.view(conn, tenantId, asOf)));
    });
  }

  private track<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new AeternaError('UNAVAILABLE', 'the graph store is closed'));
    const running = work();
    this.inflight.add(running);
    void running.finally(() => this.inflight.delete(running)).catch(() => undefined);
    return running;
  }

  private checkSizes(drafts: readonly OpDraft[]): void {
    const max = this.opts.config.maxPropertiesBytes;
    drafts.forEach((d, i) => {
      if ((d.op !== 'node.upsert' && d.op !== 'edge.upsert') || d.properties === undefined) return;
      const bytes = Buffer.byteLength(JSON.stringify(d.properties));
      if (bytes > max) {
        throw new AeternaError('PAYLOAD_TOO_LARGE', `ops.${i}.properties is ${bytes} bytes; the limit is ${max}`, {
          field: `ops.${i}.properties`,
          maxBytes: max,
        });
      }
    });
    const total = Buffer.byteLength(JSON.stringify(drafts));
    if (total > MAX_BATCH_BYTES) {
      throw new AeternaError('PAYLOAD_TOO_LARGE', `the ops are ${total} bytes; the limit is ${MAX_BATCH_BYTES}`, { field: 'ops', maxBytes: MAX_BATCH_BYTES });
    }
  }

  /** The tenant's position here; on first use, from graph_positions or else restored from snapshots. */
  private async state(tenantId: string): Promise<TenantState> {
    const known = this.tenants.get(tenantId);
    if (known) return known;
    const position = await this.pool.use(async (conn) => {
      const stored = await readPosition(conn, tenantId);
      if (stored) return stored;
      await inTransaction(conn, () => wipeTenant(conn, tenantId));
      let restored: ProjectionPosition = { seq: 0, purgedSeq: 0 };
      if (this.opts.snapshots) {
        try {
          restored = await this.opts.snapshots.restore(conn, tenantId);
        } catch (err) {
          this.opts.log.error({ err, tenantId }, 'graph snapshot restore failed; replaying the whole log');
          await inTransaction(conn, () => wipeTenant(conn, tenantId));
        }
      }
      await writePosition(conn, tenantId, restored);
      return restored;
    });
    const state = { ...position, lastAt: 0 };
    this.tenants.set(tenantId, state);
    return state;
  }

  /** Applies the log's tail through a fresh tenant transaction per page. Caller holds the tenant lock. */
  private async catchUp(tenantId: string): Promise<TenantState> {
    const state = await this.state(tenantId);
    await this.applyTail(tenantId, state, (after) => this.opts.db.withTenant(tenantId, (sql) => GraphLog.tail(sql, tenantId, after, TAIL_PAGE)), (fn) =>
      this.pool.use(fn),
    );
    return state;
  }

  /**
   * Applies batches after the state's seq, each in one DuckDB transaction with the position, so
   * a batch lands wholly or not at all. A projection ahead of the log (the database was reset)
   * is wiped and rebuilt from the log alone.
   */
  private async applyTail(
    tenantId: string,
    state: TenantState,
    read: (after: number) => Promise<{ head: number; batches: GraphBatch[] }>,
    withConn: <T>(fn: (conn: DuckDBConnection) => Promise<T>) => Promise<T>,
  ): Promise<void> {
    for (;;) {
      const { head, batches } = await read(state.seq);
      if (head < state.seq) {
        this.opts.log.warn(
          { tenantId, projectionSeq: state.seq, logHead: head },
          `graph projection of ${tenantId} is at seq ${state.seq} but the log ends at ${head} (database reset?): rebuilding it from the log`,
        );
        await withConn((conn) =>
          inTransaction(conn, async () => {
            await wipeTenant(conn, tenantId);
            await writePosition(conn, tenantId, { seq: 0, purgedSeq: 0 });
          }),
        );
        Object.assign(state, { seq: 0, purgedSeq: 0, lastAt: 0 });
        continue;
      }
      if (batches.length === 0) return;
      await withConn(async (conn) => {
        for (const batch of batches) {
          if (batch.seq !== state.seq + 1) {
            this.opts.log.error({ tenantId, expected: state.seq + 1, found: batch.seq }, 'graph log has a gap: batches are missing');
            throw new AeternaError('UNAVAILABLE', `the graph log of this tenant is missing batches ${state.seq + 1}..${batch.seq - 1}`);
          }
          const purgedSeq = await inTransaction(conn, async () => {
            const applier = await replayBatch(conn, batch);
            const position = { seq: batch.seq, purgedSeq: applier.purged ? batch.seq : state.purgedSeq };
            await writePosition(conn, tenantId, position);
            return position.purgedSeq;
          });
          Object.assign(state, { seq: batch.seq, purgedSeq, lastAt: Math.max(state.lastAt, Date.parse(batch.at)) });
        }
      });
      if (state.seq >= head) return;
    }
  }

  private async writeLocked(tenantId: string, ctx: GraphWriteContext, drafts: OpDraft[], opts: WriteOptions): Promise<GraphWriteResult> {
    const state = await this.state(tenantId);
    return this.pool.use(async (conn) => {
      let duckTx = false;
      let outcome: { seq: number; at: string; purgedSeq: number; changes: GraphChanges } | { duplicate: number };
      try {
        outcome = await this.opts.db.withTenant(tenantId, async (sql) => {
          await GraphLog.lock(sql, tenantId);
          if (opts.jobKey !== undefined) {
            const seq = await GraphLog.seqOfJob(sql, tenantId, opts.jobKey);
            if (seq !== undefined) return { duplicate: seq };
          }
          // Under the lock: validation sees every batch committed before this one.
          await this.applyTail(tenantId, state, (after) => GraphLog.tail(sql, tenantId, after, TAIL_PAGE), (fn) => fn(conn));
          const { seq, at } = await GraphLog.next(sql, tenantId);
          if (seq !== state.seq + 1) throw new AeternaError('INTERNAL', `graph log head ${seq - 1} does not match the projection at ${state.seq}`);
          await conn.run('BEGIN TRANSACTION');
          duckTx = true;
          const { ops, applier } = await applyDrafts(conn, { tenantId, seq, at }, drafts, opts.sourceMemory?.id ?? null);
          // Upserts always change something; a cascade, purge or repeated delete may find nothing to do.
          if (applier.changes.isEmpty()) throw new NothingToWrite();
          const purgedSeq = applier.purged ? seq : state.purgedSeq;
          await writePosition(conn, tenantId, { seq, purgedSeq });
          const changes = applier.changes.toChanges();
          await GraphLog.append(sql, { tenantId, seq, at, ops }, ctx.actor, opts.jobKey);
          await EventLog.append(sql, tenantId, {
            type: EVENT_TYPES.graphChanged,
            actor: ctx.actor,
            data: changedData(seq, changes, opts),
            ...(ctx.traceId ? { traceId: ctx.traceId } : {}),
          });
          return { seq, at, purgedSeq, changes };
        });
      } catch (err) {
        if (duckTx) await conn.run('ROLLBACK').catch(() => undefined);
        if (err instanceof NothingToWrite) return { applied: false, seq: state.seq, changes: emptyChanges() };
        throw err;
      }
      if ('duplicate' in outcome) return { applied: false, seq: Math.max(state.seq, outcome.duplicate), changes: emptyChanges(), duplicate: true };
      try {
        await conn.run('COMMIT');
        Object.assign(state, { seq: outcome.seq, purgedSeq: outcome.purgedSeq, lastAt: Math.max(state.lastAt, Date.parse(outcome.at)) });
      } catch (err) {
        // Committed in the log, not here: forget the cached position so the next call re-reads it and replays.
        this.tenants.delete(tenantId);
        this.opts.log.error({ err, tenantId, seq: outcome.seq }, 'graph batch committed but its local apply failed; it will be replayed from the log');
      }
      this.opts.commits?.notify(tenantId);
      return { applied: true, seq: outcome.seq, changes: outcome.changes };
    });
  }
}

