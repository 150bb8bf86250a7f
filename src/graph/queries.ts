import type { GraphNodeResult, GraphSearchMatch, GraphSearchResult } from '../protocol/index.js';
import { duckRows, instant, type DuckParams } from './duck.js';
import { NODE_COLUMNS, columnsOf, toNode, visibleAt, type NodeRow } from './rows.js';
import { requireNode, type View } from './traverse.js';

const EDGE_ENDS = 'id, tenant_id, source, target, valid_from, valid_to, created_at, deleted_at';

/** The node with its visible incident edges counted (the index lookup as in `expand`). */
export async function nodeWithDegree(view: View, id: string): Promise<GraphNodeResult> {
  const node = await requireNode(view, id);
  const params: DuckParams = { tenant: view.tenantId, at: instant(view.at), id };
  const [row] = await duckRows<{ out_degree: bigint; in_degree: bigint; total: bigint }>(
    view.conn,
    `WITH cand AS MATERIALIZED (
       SELECT ${EDGE_ENDS} FROM graph_edges WHERE source = $id
       UNION ALL SELECT ${EDGE_ENDS} FROM graph_edges WHERE target = $id)
     SELECT count(DISTINCT id) FILTER (WHERE source = $id) AS out_degree,
            count(DISTINCT id) FILTER (WHERE target = $id) AS in_degree,
            count(DISTINCT id) AS total
       FROM cand c WHERE c.tenant_id = $tenant AND ${visibleAt('c')}`,
    params,
  );
  return { node, degree: { out: Number(row?.out_degree ?? 0), in: Number(row?.in_degree ?? 0), total: Number(row?.total ?? 0) } };
}

const MATCH_BY_RANK: Record<number, GraphSearchMatch> = { 4: 'exact', 3: 'prefix', 2: 'label', 1: 'properties' };

/**
 * Case-insensitive substring search over labels and the properties' JSON text, ranked exact >
 * prefix > anywhere in the label > only in properties, then shorter labels first. `contains` and
 * `starts_with` compare plain text, so % and _ in the query match only themselves (no LIKE
 * pattern to escape).
 */
export async function textSearch(view: View, input: { q: string; limit: number; kind?: string | undefined }): Promise<GraphSearchResult> {
  const params: DuckParams = { tenant: view.tenantId, at: instant(view.at), q: input.q, limit: input.limit };
  const kindFilter = input.kind === undefined ? '' : 'AND n.kind = $kind';
  if (input.kind !== undefined) params.kind = input.kind;
  const rows = await duckRows<NodeRow & { rank: number }>(
    view.conn,
    `SELECT ${columnsOf(NODE_COLUMNS, 'n')}, CASE
         WHEN lower(n.label) = lower($q) THEN 4
         WHEN starts_with(lower(n.label), lower($q)) THEN 3
         WHEN contains(lower(n.label), lower($q)) THEN 2
         ELSE 1 END AS rank
       FROM graph_nodes n
      WHERE n.tenant_id = $tenant AND ${visibleAt('n')} ${kindFilter}
        AND (contains(lower(n.label), lower($q)) OR contains(lower(CAST(n.properties AS VARCHAR)), lower($q)))
      ORDER BY rank DESC, length(n.label), n.id
      LIMIT $limit`,
    params,
  );
  return {
    mode: 'text',
    results: rows.map((r) => ({ node: toNode(r), score: Number(r.rank) / 4, match: MATCH_BY_RANK[Number(r.rank)] ?? 'properties' })),
  };
}

export interface SupportedElement {
  id: string;
  /** Every memory that supports it, this one included, sorted. */
  sourceMemoryIds: string[];
}

/**
 * The live nodes and edges a memory supports, each with all of its supporting memories: what an
 * update of that memory compares its new extraction against.
 */
export async function memorySupport(view: View, memoryId: string): Promise<{ nodes: SupportedElement[]; edges: SupportedElement[] }> {
  const rows = await duckRows<{ element: 'node' | 'edge'; element_id: string; memories: string[] }>(
    view.conn,
    `SELECT s.element, s.element_id, list(DISTINCT all_s.memory_id ORDER BY all_s.memory_id) AS memories
       FROM graph_element_sources s
       JOIN graph_element_sources all_s ON all_s.tenant_id = s.tenant_id AND all_s.element = s.element AND all_s.element_id = s.element_id
      WHERE s.tenant_id = $tenant AND s.memory_id = $memory
        AND ((s.element = 'node' AND s.element_id IN (SELECT id FROM graph_nodes WHERE tenant_id = $tenant AND deleted_at IS NULL))
          OR (s.element = 'edge' AND s.element_id IN (SELECT id FROM graph_edges WHERE tenant_id = $tenant AND deleted_at IS NULL)))
      GROUP BY s.element, s.element_id
      ORDER BY s.element, s.element_id`,
    { tenant: view.tenantId, memory: memoryId },
  );
  const of = (element: 'node' | 'edge') =>
    rows.filter((r) => r.element === element).map((r) => ({ id: r.element_id, sourceMemoryIds: [...r.memories] }));
  return { nodes: of('node'), edges: of('edge') };
}
