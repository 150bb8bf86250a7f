import type { DuckDBConnection } from '@duckdb/node-api';
import type { z } from 'zod';
import { AeternaError, type GraphChanges, type graphOpDraftSchema } from '../protocol/index.js';
import { doubles, duckRows, duckRun, inList, list, type DuckParams } from './duck.js';
import { edgeIdFor, nodeIdFor } from './ids.js';
import { DUCKDB_SCHEMA, SNAPSHOT_TABLES, type GraphBatch, type GraphOp } from './schema.js';

/**
 * Label embeddings for semantic search: derived per process, never logged or snapshotted, and
 * recomputed when a label or the model changes.
 */
export const EMBEDDINGS_TABLE = 'graph_node_embeddings';

/**
 * The projection's tables plus what only this process needs. Single-column ART indexes serve the
 * traversal's id lookups (see `expand` in traverse.ts): DuckDB uses an index only for a filter on
 * its leading column alone, and the primary keys lead with tenant_id. Measured on 100k nodes / 1M
 * edges, they turn 10-20 ms scans into 1-3 ms lookups for small id lists.
 */
const PROJECTION_DDL = [
  ...DUCKDB_SCHEMA,
  'CREATE INDEX IF NOT EXISTS graph_nodes_id ON graph_nodes (id)',
  'CREATE INDEX IF NOT EXISTS graph_edges_source ON graph_edges (source)',
  'CREATE INDEX IF NOT EXISTS graph_edges_target ON graph_edges (target)',
  `CREATE TABLE IF NOT EXISTS ${EMBEDDINGS_TABLE} (
    tenant_id VARCHAR NOT NULL,
    node_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    vector FLOAT[] NOT NULL,
    PRIMARY KEY (tenant_id, node_id, model)
  )`,
];

export async function prepareProjection(conn: DuckDBConnection): Promise<void> {
  for (const ddl of PROJECTION_DDL) await conn.run(ddl);
}

export interface ProjectionPosition {
  seq: number;
  /** Seq of the newest purge applied (0 if none): a delta snapshot must not span it. */
  purgedSeq: number;
}

export async function readPosition(conn: DuckDBConnection, tenantId: string): Promise<ProjectionPosition | undefined> {
  const [row] = await duckRows<{ seq: bigint; purged_seq: bigint }>(conn, 'SELECT seq, purged_seq FROM graph_positions WHERE tenant_id = $tenant', {
    tenant: tenantId,
  });
  return row ? { seq: Number(row.seq), purgedSeq: Number(row.purged_seq) } : undefined;
}

export async function writePosition(conn: DuckDBConnection, tenantId: string, position: ProjectionPosition): Promise<void> {
  await duckRun(
    conn,
    `INSERT INTO graph_positions (tenant_id, seq, purged_seq) VALUES ($tenant, $seq::BIGINT, $purged::BIGINT)
     ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, purged_seq = excluded.purged_seq`,
    { tenant: tenantId, seq: position.seq, purged: position.purgedSeq },
  );
}

/** Forgets everything this process projected for the tenant (its position included). */
export async function wipeTenant(conn: DuckDBConnection, tenantId: string): Promise<void> {
  for (const table of [...SNAPSHOT_TABLES, EMBEDDINGS_TABLE, 'graph_positions']) {
    await duckRun(conn, `DELETE FROM ${table} WHERE tenant_id = $tenant`, { tenant: tenantId });
  }
}

type NodeUpsert = Extract<GraphOp, { op: 'node.upsert' }>;
type EdgeUpsert = Extract<GraphOp, { op: 'edge.upsert' }>;
export type OpDraft = z.infer<typeof graphOpDraftSchema>;
type NodeDraft = Extract<OpDraft, { op: 'node.upsert' }>;
type EdgeDraft = Extract<OpDraft, { op: 'edge.upsert' }>;

type ElementChanges = { [K in keyof GraphChanges['nodes']]: Set<string> };

export class ChangeSet {
  readonly nodes: ElementChanges = { upserted: new Set(), deleted: new Set(), invalidated: new Set(), purged: new Set() };
  readonly edges: ElementChanges = { upserted: new Set(), deleted: new Set(), invalidated: new Set(), purged: new Set() };

  add(element: 'node' | 'edge', change: keyof ElementChanges, ids: Iterable<string>): void {
    const set = (element === 'node' ? this.nodes : this.edges)[change];
    for (const id of ids) set.add(id);
  }

  isEmpty(): boolean {
    return [this.nodes, this.edges].every((e) => Object.values(e).every((s) => s.size === 0));
  }

  toChanges(): GraphChanges {
    const lists = (e: ElementChanges) => ({
      upserted: [...e.upserted],
      deleted: [...e.deleted],
      invalidated: [...e.invalidated],
      purged: [...e.purged],
    });
    return { nodes: lists(this.nodes), edges: lists(this.edges) };
  }
}

/** Consecutive upserts of one element type with distinct ids: each run is one set-based statement. */
type Run<N, E, O> = { kind: 'node.upsert'; ops: N[] } | { kind: 'edge.upsert'; ops: E[] } | { kind: 'one'; op: O };

function runsOf<T extends { op: string; id?: string }, N extends T, E extends T>(ops: readonly T[]): Run<N, E, Exclude<T, N | E>>[] {
  const runs: Run<N, E, Exclude<T, N | E>>[] = [];
  let current: { kind: 'node.upsert' | 'edge.upsert'; ops: T[]; ids: Set<string> } | undefined;
  for (const op of ops) {
    if (op.op !== 'node.upsert' && op.op !== 'edge.upsert') {
      current = undefined;
      runs.push({ kind: 'one', op: op as Exclude<T, N | E> });
      continue;
    }
    const id = op.id as string;
    if (!current || current.kind !== op.op || current.ids.has(id)) {
      current = { kind: op.op, ops: [], ids: new Set() };
      // The run's ops array is shared, so ops pushed below land in the run.
      runs.push({ kind: current.kind, ops: current.ops } as Run<N, E, Exclude<T, N | E>>);
    }
    current.ops.push(op);
    current.ids.add(id);
  }
  return runs;
}

const ids = (rows: { id: string }[]): string[] => rows.map((r) => r.id);

/**
 * Applies one batch's operations to a tenant's rows. Deterministic: every time comes from the op
 * or the batch (`at`), so every process replaying the log builds the same projection. The caller
 * owns the transaction. Every touched row gets `updated_seq = seq`, including an element whose
 * set of source links changed: that is what lets a delta snapshot carry link removals.
 */
export class BatchApplier {
  readonly changes = new ChangeSet();
  purged = false;

  constructor(
    private readonly conn: DuckDBConnection,
    private readonly tenantId: string,
    private readonly seq: number,
    private readonly at: string,
  ) {}

  private params(extra: DuckParams = {}): DuckParams {
    return { tenant: this.tenantId, seq: this.seq, at: this.at, ...extra };
  }

  async apply(op: GraphOp): Promise<void> {
    switch (op.op) {
      case 'node.upsert':
        return this.upsertNodes([op]);
      case 'edge.upsert':
        return void (await this.upsertEdges([op]));
      case 'node.delete':
        return this.deleteNode(op.id);
      case 'edge.delete':
        return this.deleteEdges(`id = $id`, { id: op.id });
      case 'invalidate':
        return this.invalidate(op.element, op.id, op.validTo);
      case 'cascade':
        return this.cascade(op.memoryId);
      case 'unlink':
        return this.unlink(op.memoryId, op.element, op.id);
      case 'purge':
        return this.purge(op.before);
    }
  }

  async upsertNodes(ops: readonly NodeUpsert[]): Promise<void> {
    const rows = await duckRows<{ id: string }>(
      this.conn,
      `INSERT INTO graph_nodes (tenant_id, id, label, kind, properties, source_memory_id, valid_from, valid_to, created_at, deleted_at, updated_seq)
       SELECT $tenant, u.id, u.label, u.kind, u.properties::JSON, u.src, u.vf::TIMESTAMPTZ, u.vt::TIMESTAMPTZ, $at::TIMESTAMPTZ, NULL, $seq::BIGINT
         FROM (SELECT unnest($ids::VARCHAR[]) AS id, unnest($labels::VARCHAR[]) AS label, unnest($kinds::VARCHAR[]) AS kind,
                      unnest($props::VARCHAR[]) AS properties, unnest($srcs::VARCHAR[]) AS src,
                      unnest($vfs::VARCHAR[]) AS vf, unnest($vts::VARCHAR[]) AS vt) u
       ON CONFLICT (tenant_id, id) DO UPDATE SET
         label = excluded.label, kind = excluded.kind, properties = excluded.properties,
         source_memory_id = CASE WHEN graph_nodes.deleted_at IS NULL THEN COALESCE(graph_nodes.source_memory_id, excluded.source_memory_id) ELSE excluded.source_memory_id END,
         valid_from = excluded.valid_from, valid_to = excluded.valid_to,
         created_at = CASE WHEN graph_nodes.deleted_at IS NULL THEN graph_nodes.created_at ELSE excluded.created_at END,
         deleted_at = NULL, updated_seq = excluded.updated_seq
       RETURNING id`,
      this.params({
        ids: list(ops.map((o) => o.id)),
        labels: list(ops.map((o) => o.label)),
        kinds: list(ops.map((o) => o.kind)),
        props: list(ops.map((o) => JSON.stringify(o.properties))),
        srcs: list(ops.map((o) => o.sourceMemoryId)),
        vfs: list(ops.map((o) => o.validFrom)),
        vts: list(ops.map((o) => o.validTo)),
      }),
    );
    this.changes.add('node', 'upserted', ids(rows));
    await this.link('node', ops);
  }

  /** Returns the rows as stored: an existing edge keeps its ends, which the caller may check. */
  async upsertEdges(ops: readonly EdgeUpsert[]): Promise<{ id: string; source: string; target: string }[]> {
    // An edge's ends never change (they are indexed, and the id names them), so they are set only on insert.
    const rows = await duckRows<{ id: string; source: string; target: string }>(
      this.conn,
      `INSERT INTO graph_edges (tenant_id, id, source, target, relation, weight, properties, source_memory_id, valid_from, valid_to, created_at, deleted_at, updated_seq)
       SELECT $tenant, u.id, u.source, u.target, u.relation, u.weight, u.properties::JSON, u.src, u.vf::TIMESTAMPTZ, u.vt::TIMESTAMPTZ, $at::TIMESTAMPTZ, NULL, $seq::BIGINT
         FROM (SELECT unnest($ids::VARCHAR[]) AS id, unnest($sources::VARCHAR[]) AS source, unnest($targets::VARCHAR[]) AS target,
                      unnest($relations::VARCHAR[]) AS relation, unnest($weights::DOUBLE[]) AS weight,
                      unnest($props::VARCHAR[]) AS properties, unnest($srcs::VARCHAR[]) AS src,
                      unnest($vfs::VARCHAR[]) AS vf, unnest($vts::VARCHAR[]) AS vt) u
       ON CONFLICT (tenant_id, id) DO UPDATE SET
         relation = excluded.relation, weight = excluded.weight, properties = excluded.properties,
         source_memory_id = CASE WHEN graph_edges.deleted_at IS NULL THEN COALESCE(graph_edges.source_memory_id, excluded.source_memory_id) ELSE excluded.source_memory_id END,
         valid_from = excluded.valid_from, valid_to = excluded.valid_to,
         created_at = CASE WHEN graph_edges.deleted_at IS NULL THEN graph_edges.created_at ELSE excluded.created_at END,
         deleted_at = NULL, updated_seq = excluded.updated_seq
       RETURNING id, source, target`,
      this.params({
        ids: list(ops.map((o) => o.id)),
        sources: list(ops.map((o) => o.source)),
        targets: list(ops.map((o) => o.target)),
        relations: list(ops.map((o) => o.relation)),
        weights: doubles(ops.map((o) => o.weight)),
        props: list(ops.map((o) => JSON.stringify(o.properties))),
        srcs: list(ops.map((o) => o.sourceMemoryId)),
        vfs: list(ops.map((o) => o.validFrom)),
        vts: list(ops.map((o) => o.validTo)),
      }),
    );
    this.changes.add('edge', 'upserted', ids(rows));
    await this.link('edge', ops);
    return rows;
  }

  private async link(element: 'node' | 'edge', ops: readonly { id: string; sourceMemoryId: string | null }[]): Promise<void> {
    const linked = ops.filter((o) => o.sourceMemoryId !== null);
    if (linked.length === 0) return;
    await duckRun(
      this.conn,
      `INSERT INTO graph_element_sources (tenant_id, element, element_id, memory_id, updated_seq)
       SELECT $tenant, $element, u.id, u.memory, $seq::BIGINT FROM (SELECT unnest($ids::VARCHAR[]) AS id, unnest($memories::VARCHAR[]) AS memory) u
       ON CONFLICT DO UPDATE SET updated_seq = excluded.updated_seq`,
      this.params({ element, ids: list(linked.map((o) => o.id)), memories: list(linked.map((o) => o.sourceMemoryId)) }),
    );
  }

  private async deleteNode(id: string): Promise<void> {
    const rows = await duckRows<{ id: string }>(
      this.conn,
      `UPDATE graph_nodes SET deleted_at = $at::TIMESTAMPTZ, updated_seq = $seq::BIGINT
        WHERE tenant_id = $tenant AND id = $id AND deleted_at IS NULL RETURNING id`,
      this.params({ id }),
    );
    this.changes.add('node', 'deleted', ids(rows));
    await this.deleteEdges('(source = $id OR target = $id)', { id });
  }

  /** Soft-deletes the live edges matching `where` (over graph_edges columns). */
  private async deleteEdges(where: string, extra: DuckParams): Promise<void> {
    const rows = await duckRows<{ id: string }>(
      this.conn,
      `UPDATE graph_edges SET deleted_at = $at::TIMESTAMPTZ, updated_seq = $seq::BIGINT
        WHERE tenant_id = $tenant AND deleted_at IS NULL AND ${where} RETURNING id`,
      this.params(extra),
    );
    this.changes.add('edge', 'deleted', ids(rows));
  }

  private async invalidate(element: 'node' | 'edge', id: string, validTo: string): Promise<void> {
    const table = element === 'node' ? 'graph_nodes' : 'graph_edges';
    const rows = await duckRows<{ id: string }>(
      this.conn,
      `UPDATE ${table} SET valid_to = $validTo::TIMESTAMPTZ, updated_seq = $seq::BIGINT
        WHERE tenant_id = $tenant AND id = $id AND deleted_at IS NULL RETURNING id`,
      this.params({ id, validTo }),
    );
    this.changes.add(element, 'invalidated', ids(rows));
  }

  /**
   * The memory is gone: its links go, and what it supported that no other memory still supports
   * is soft-deleted, with the edges of every node that goes. Elements that never had a source
   * (written through the API) are not touched.
   */
  private async cascade(memoryId: string): Promise<void> {
    const unlinked = await duckRows<{ element: 'node' | 'edge'; element_id: string }>(
      this.conn,
      'DELETE FROM graph_element_sources WHERE tenant_id = $tenant AND memory_id = $memory RETURNING element, element_id',
      this.params({ memory: memoryId }),
    );
    for (const element of ['node', 'edge'] as const) {
      const affected = unlinked.filter((u) => u.element === element).map((u) => u.element_id);
      if (affected.length === 0) continue;
      const table = element === 'node' ? 'graph_nodes' : 'graph_edges';
      const params = this.params({ element });
      const within = inList('id', affected, params, 'e');
      const orphaned = await duckRows<{ id: string }>(
        this.conn,
        `UPDATE ${table} SET deleted_at = $at::TIMESTAMPTZ, updated_seq = $seq::BIGINT
          WHERE tenant_id = $tenant AND deleted_at IS NULL AND ${within}
            AND NOT EXISTS (SELECT 1 FROM graph_element_sources s
                             WHERE s.tenant_id = $tenant AND s.element = $element AND s.element_id = ${table}.id)
          RETURNING id`,
        params,
      );
      this.changes.add(element, 'deleted', ids(orphaned));
      // Survivors lost a link: bump them so a delta snapshot re-carries their remaining links.
      await duckRun(this.conn, `UPDATE ${table} SET updated_seq = $seq::BIGINT WHERE tenant_id = $tenant AND ${within}`, params);
      if (element === 'node' && orphaned.length > 0) {
        const edgeParams: DuckParams = {};
        const from = inList('source', ids(orphaned), edgeParams, 's');
        const to = inList('target', ids(orphaned), edgeParams, 't');
        await this.deleteEdges(`(${from} OR ${to})`, edgeParams);
      }
    }
  }

  /** One memory stops supporting one element; the element's changed link set is a change to it. */
  private async unlink(memoryId: string, element: 'node' | 'edge', id: string): Promise<void> {
    const gone = await duckRows<{ element_id: string }>(
      this.conn,
      `DELETE FROM graph_element_sources
        WHERE tenant_id = $tenant AND element = $element AND element_id = $id AND memory_id = $memory RETURNING element_id`,
      this.params({ element, id, memory: memoryId }),
    );
    if (gone.length === 0) return;
    const table = element === 'node' ? 'graph_nodes' : 'graph_edges';
    await duckRun(this.conn, `UPDATE ${table} SET updated_seq = $seq::BIGINT WHERE tenant_id = $tenant AND id = $id`, this.params({ id }));
    this.changes.add(element, 'upserted', [id]);
  }

  /** Hard-deletes what was soft-deleted before `before`, with its links and derived embeddings. */
  private async purge(before: string): Promise<void> {
    const params = this.params({ before });
    const goneNodes = 'SELECT id FROM graph_nodes WHERE tenant_id = $tenant AND deleted_at < $before::TIMESTAMPTZ';
    const goneEdges = `SELECT id FROM graph_edges WHERE tenant_id = $tenant
      AND (deleted_at < $before::TIMESTAMPTZ OR source IN (${goneNodes}) OR target IN (${goneNodes}))`;
    await duckRun(
      this.conn,
      `DELETE FROM graph_element_sources WHERE tenant_id = $tenant
        AND ((element = 'node' AND element_id IN (${goneNodes})) OR (element = 'edge' AND element_id IN (${goneEdges})))`,
      params,
    );
    const edges = await duckRows<{ id: string }>(this.conn, `DELETE FROM graph_edges WHERE tenant_id = $tenant AND id IN (${goneEdges}) RETURNING id`, params);
    const nodes = await duckRows<{ id: string }>(this.conn, `DELETE FROM graph_nodes WHERE tenant_id = $tenant AND id IN (${goneNodes}) RETURNING id`, params);
    await duckRun(
      this.conn,
      `DELETE FROM ${EMBEDDINGS_TABLE} WHERE tenant_id = $tenant
        AND node_id NOT IN (SELECT id FROM graph_nodes WHERE tenant_id = $tenant)`,
      { tenant: this.tenantId },
    );
    this.changes.add('edge', 'purged', ids(edges));
    this.changes.add('node', 'purged', ids(nodes));
    this.purged = true;
  }
}

/** Replays a logged batch (no validation: the log is the truth). */
export async function replayBatch(conn: DuckDBConnection, batch: GraphBatch): Promise<BatchApplier> {
  const applier = new BatchApplier(conn, batch.tenantId, batch.seq, batch.at);
  for (const run of runsOf<GraphOp, NodeUpsert, EdgeUpsert>(batch.ops)) {
    if (run.kind === 'node.upsert') await applier.upsertNodes(run.ops);
    else if (run.kind === 'edge.upsert') await applier.upsertEdges(run.ops);
    else await applier.apply(run.op);
  }
  return applier;
}

function notFound(element: 'node' | 'edge', id: string, extra: Record<string, unknown> = {}): AeternaError {
  return new AeternaError('NOT_FOUND', `${element} ${id} not found`, { element, id, ...extra });
}

function checkValidity(element: 'node' | 'edge', id: string, validFrom: string, validTo: string | null): void {
  if (validTo !== null && validTo <= validFrom) {
    throw new AeternaError('INVALID_ARGUMENT', `${element} ${id}: validTo ${validTo} is not after validFrom ${validFrom}`, {
      field: 'validTo',
      id,
    });
  }
}

interface LiveRow {
  id: string;
  properties: string;
  valid_from: Date;
  valid_to: Date | null;
}

interface StoredRow {
  valid_from: Date;
  deleted_at: Date | null;
}

/**
 * Turns a writer's drafts into explicit ops and applies them, validating each against the state
 * the batch has built so far (so an edge may connect nodes upserted earlier in the same batch).
 * A field a draft leaves out keeps the live element's value, or gets its default on a new one.
 * Throws NOT_FOUND / CONFLICT / INVALID_ARGUMENT; the caller then rolls the transaction back.
 */
export async function applyDrafts(
  conn: DuckDBConnection,
  batch: Omit<GraphBatch, 'ops'>,
  drafts: readonly OpDraft[],
  defaultSource: string | null,
): Promise<{ ops: GraphOp[]; applier: BatchApplier }> {
  const applier = new BatchApplier(conn, batch.tenantId, batch.seq, batch.at);
  const tenant = { tenant: batch.tenantId };
  const ops: GraphOp[] = [];
  const live = async (table: 'graph_nodes' | 'graph_edges', idList: string[], columns: string) => {
    const params: DuckParams = { ...tenant };
    const where = inList('id', idList, params, 'i');
    return duckRows<LiveRow & Record<string, unknown>>(conn, `SELECT ${columns} FROM ${table} WHERE tenant_id = $tenant AND deleted_at IS NULL AND ${where}`, params);
  };
  const source = (d: { sourceMemoryId?: string | null | undefined }) => (d.sourceMemoryId === undefined ? defaultSource : d.sourceMemoryId);
  const validity = (d: { validFrom?: string | undefined; validTo?: string | null | undefined }, existing: LiveRow | undefined) => ({
    validFrom: d.validFrom ?? existing?.valid_from.toISOString() ?? batch.at,
    validTo: d.validTo !== undefined ? d.validTo : (existing?.valid_to?.toISOString() ?? null),
  });
  const existingProps = (existing: LiveRow | undefined) => (existing ? (JSON.parse(existing.properties) as Record<string, unknown>) : {});

  for (const run of runsOf<OpDraft, NodeDraft, EdgeDraft>(drafts.map(withId))) {
    if (run.kind === 'node.upsert') {
      const current = new Map((await live('graph_nodes', run.ops.map((d) => d.id as string), 'id, properties, valid_from, valid_to')).map((r) => [r.id, r]));
      const resolved = run.ops.map((d): NodeUpsert => {
        const id = d.id as string;
        const existing = current.get(id);
        const op: NodeUpsert = {
          op: 'node.upsert',
          id,
          label: d.label,
          kind: d.kind,
          properties: d.properties ?? existingProps(existing),
          sourceMemoryId: source(d),
          ...validity(d, existing),
        };
        checkValidity('node', id, op.validFrom, op.validTo);
        return op;
      });
      await applier.upsertNodes(resolved);
      ops.push(...resolved);
    } else if (run.kind === 'edge.upsert') {
      const ends = [...new Set(run.ops.flatMap((d) => [d.source, d.target]))];
      const liveEnds = new Set((await live('graph_nodes', ends, 'id')).map((r) => r.id));
      for (const d of run.ops) {
        for (const field of ['source', 'target'] as const) {
          if (!liveEnds.has(d[field])) {
            throw new AeternaError('NOT_FOUND', `node ${d[field]} not found: edge ${d.id} needs a live ${field}`, {
              element: 'node',
              id: d[field],
              field,
              edge: d.id,
            });
          }
        }
      }
      // Found through the source index: an edge of the same id with other ends is not found here,
      // and the upsert below, which never changes ends, reports it.
      const params: DuckParams = { ...tenant };
      const columns = 'id, tenant_id, weight, properties, valid_from, valid_to, deleted_at';
      const stored = await duckRows<LiveRow & { weight: number; deleted_at: Date | null }>(
        conn,
        `WITH hit AS MATERIALIZED (SELECT ${columns} FROM graph_edges WHERE ${inList('source', [...new Set(run.ops.map((d) => d.source))], params, 's')})
         SELECT ${columns} FROM hit WHERE tenant_id = $tenant AND ${inList('id', run.ops.map((d) => d.id as string), params, 'i')}`,
        params,
      );
      const current = new Map(stored.map((r) => [r.id, r]));
      const resolved = run.ops.map((d): EdgeUpsert => {
        const id = d.id as string;
        const row = current.get(id);
        const existing = row && row.deleted_at === null ? row : undefined;
        const op: EdgeUpsert = {
          op: 'edge.upsert',
          id,
          source: d.source,
          target: d.target,
          relation: d.relation,
          weight: d.weight ?? (existing ? Number(existing.weight) : 1),
          properties: d.properties ?? existingProps(existing),
          sourceMemoryId: source(d),
          ...validity(d, existing),
        };
        checkValidity('edge', id, op.validFrom, op.validTo);
        return op;
      });
      const written = new Map((await applier.upsertEdges(resolved)).map((r) => [r.id, r]));
      for (const op of resolved) {
        const row = written.get(op.id);
        if (row && (row.source !== op.source || row.target !== op.target)) {
          throw new AeternaError('CONFLICT', `edge ${op.id} connects ${row.source} → ${row.target}; an edge's ends cannot change`, {
            id: op.id,
            source: row.source,
            target: row.target,
          });
        }
      }
      ops.push(...resolved);
    } else {
      const op = await resolveOne(run.op, batch.at, async (table, id) => {
        const [row] = await duckRows<StoredRow>(conn, `SELECT valid_from, deleted_at FROM ${table} WHERE tenant_id = $tenant AND id = $id`, { ...tenant, id });
        return row;
      });
      await applier.apply(op);
      ops.push(op);
    }
  }
  return { ops, applier };
}

/** The id a draft's upsert gets when it names none: the same entity or fact always gets the same id. */
function withId(d: OpDraft): OpDraft {
  if (d.op === 'node.upsert' && d.id === undefined) return { ...d, id: nodeIdFor(d.kind, d.label) };
  if (d.op === 'edge.upsert' && d.id === undefined) return { ...d, id: edgeIdFor(d.source, d.relation, d.target) };
  return d;
}

async function resolveOne(
  d: Exclude<OpDraft, NodeDraft | EdgeDraft>,
  at: string,
  rowOf: (table: 'graph_nodes' | 'graph_edges', id: string) => Promise<StoredRow | undefined>,
): Promise<GraphOp> {
  switch (d.op) {
    case 'node.delete':
    case 'edge.delete': {
      const element = d.op === 'node.delete' ? 'node' : 'edge';
      // Deleting what is already deleted changes nothing (a retried job); an unknown id is a mistake.
      if (!(await rowOf(element === 'node' ? 'graph_nodes' : 'graph_edges', d.id))) throw notFound(element, d.id);
      return d;
    }
    case 'invalidate': {
      const row = await rowOf(d.element === 'node' ? 'graph_nodes' : 'graph_edges', d.id);
      if (!row) throw notFound(d.element, d.id);
      const validTo = d.validTo ?? at;
      if (row.deleted_at === null) checkValidity(d.element, d.id, row.valid_from.toISOString(), validTo);
      return { op: 'invalidate', element: d.element, id: d.id, validTo };
    }
    case 'cascade':
    case 'unlink':
    case 'purge':
      return d;
  }
}
