import type { DuckDBConnection } from '@duckdb/node-api';
import { AeternaError, type GraphDirection, type GraphEdge, type GraphNode } from '../protocol/index.js';
import { duckRows, inList, instant, type DuckParams } from './duck.js';
import { EDGE_COLUMNS, NODE_COLUMNS, toEdge, toNode, visibleAt, type EdgeRow, type NodeRow } from './rows.js';

/** Where and when a query looks: one tenant, at one instant (ISO). */
export interface View {
  conn: DuckDBConnection;
  tenantId: string;
  at: string;
}

/** An edge met while expanding a frontier, and the node it leads to. */
export interface Step {
  id: string;
  source: string;
  target: string;
  weight: number;
  from: string;
  to: string;
}

const EDGE_CORE = 'id, tenant_id, source, target, relation, weight, valid_from, valid_to, created_at, deleted_at';

/**
 * One BFS level: the edges visible at `at` that leave the frontier in `direction`. The id filter
 * runs alone inside a MATERIALIZED CTE so that DuckDB answers small frontiers from the ART index
 * on `source`/`target` (with the tenant filter beside it, it scans every edge instead); the tenant
 * and visibility filters apply to what the lookup found. Node ids repeat across tenants, so the
 * lookup may find other tenants' edges; the outer filter drops them.
 */
export async function expand(view: View, frontier: readonly string[], direction: GraphDirection, relations?: readonly string[]): Promise<Step[]> {
  if (frontier.length === 0) return [];
  const params: DuckParams = { tenant: view.tenantId, at: instant(view.at) };
  const branches: string[] = [];
  if (direction !== 'in') branches.push(`SELECT ${EDGE_CORE} FROM graph_edges WHERE ${inList('source', frontier, params, 'o')}`);
  if (direction !== 'out') branches.push(`SELECT ${EDGE_CORE} FROM graph_edges WHERE ${inList('target', frontier, params, 'i')}`);
  const relationFilter = relations && relations.length > 0 ? `AND ${inList('c.relation', relations, params, 'r')}` : '';
  // Only what the walk needs comes back: turning DuckDB values into JS costs ~2-5 µs each, which
  // on a 10k-edge level outweighs the query itself.
  // Sorting and de-duplicating (an edge both of whose ends are in the frontier comes back from
  // both branches) happen here: in SQL they cost more than the lookup itself.
  const rows = await duckRows<Omit<Step, 'from' | 'to'>>(
    view.conn,
    `WITH cand AS MATERIALIZED (${branches.join(' UNION ALL ')})
     SELECT c.id, c.source, c.target, c.weight FROM cand c
      WHERE c.tenant_id = $tenant AND ${visibleAt('c')} ${relationFilter}`,
    params,
  );
  rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const inFrontier = new Set(frontier);
  const steps: Step[] = [];
  let previous: string | undefined;
  for (const row of rows) {
    // A self-loop leads nowhere new; degree() counts it separately.
    if (row.id === previous || row.source === row.target) continue;
    previous = row.id;
    const weight = Number(row.weight);
    if (direction !== 'in' && inFrontier.has(row.source)) steps.push({ ...row, weight, from: row.source, to: row.target });
    if (direction !== 'out' && inFrontier.has(row.target)) steps.push({ ...row, weight, from: row.target, to: row.source });
  }
  return steps;
}

/**
 * Which of `ids` may a walk enter. An edge visible at `at` has both ends visible unless an end's
 * own validity or creation time excludes it: a node is deleted with its edges, and an edge needs
 * live ends to be written. So unless the tenant has a node that is invalidated, valid only in
 * the future or created after `at` (one scan, once per walk), every end of a visible edge is
 * enterable, and the per-level node lookup is skipped.
 */
export async function nodeGate(view: View): Promise<(ids: readonly string[]) => Promise<Set<string>>> {
  const [row] = await duckRows<{ hidden: boolean }>(
    view.conn,
    `SELECT EXISTS (SELECT 1 FROM graph_nodes WHERE tenant_id = $tenant
       AND ((valid_to IS NOT NULL AND valid_to <= $at) OR valid_from > $at OR created_at > $at)) AS hidden`,
    { tenant: view.tenantId, at: instant(view.at) },
  );
  return row?.hidden ? (ids) => visibleNodes(view, ids) : async (ids) => new Set(ids);
}

/** Which of `ids` are nodes visible at `at`. */
export async function visibleNodes(view: View, ids: Iterable<string>): Promise<Set<string>> {
  const list = [...new Set(ids)];
  if (list.length === 0) return new Set();
  const params: DuckParams = { tenant: view.tenantId, at: instant(view.at) };
  const rows = await duckRows<{ id: string }>(
    view.conn,
    `WITH cand AS MATERIALIZED (SELECT id, tenant_id, valid_from, valid_to, created_at, deleted_at FROM graph_nodes WHERE ${inList('id', list, params, 'n')})
     SELECT id FROM cand c WHERE c.tenant_id = $tenant AND ${visibleAt('c')}`,
    params,
  );
  return new Set(rows.map((r) => r.id));
}

export async function loadNodes(view: View, ids: Iterable<string>): Promise<Map<string, GraphNode>> {
  const list = [...new Set(ids)];
  if (list.length === 0) return new Map();
  const params: DuckParams = { tenant: view.tenantId };
  // The id lookup alone, MATERIALIZED, so it runs on the id index (as in `expand`); then the tenant's.
  const rows = await duckRows<NodeRow>(
    view.conn,
    `WITH hit AS MATERIALIZED (SELECT ${NODE_COLUMNS} FROM graph_nodes WHERE ${inList('id', list, params, 'x')})
     SELECT ${NODE_COLUMNS} FROM hit WHERE tenant_id = $tenant`,
    params,
  );
  return new Map(rows.map((r) => [r.id, toNode(r)]));
}

/**
 * Full edge rows, found through the end indexes from `from` (an end each ref knows: the node a
 * walk reached it from, or its source): an index on edge ids would cost as much memory again for
 * lookups that always know an end, and the known ends are the few frontier nodes.
 */
export async function loadEdges(view: View, refs: Iterable<{ id: string; from: string }>): Promise<GraphEdge[]> {
  const list = [...refs];
  if (list.length === 0) return [];
  const params: DuckParams = { tenant: view.tenantId };
  const ends = [...new Set(list.map((r) => r.from))];
  const rows = await duckRows<EdgeRow>(
    view.conn,
    `WITH hit AS MATERIALIZED (
       SELECT ${EDGE_COLUMNS} FROM graph_edges WHERE ${inList('source', ends, params, 's')}
       UNION ALL SELECT ${EDGE_COLUMNS} FROM graph_edges WHERE ${inList('target', ends, params, 't')})
     SELECT DISTINCT ${EDGE_COLUMNS} FROM hit WHERE tenant_id = $tenant AND ${inList('id', [...new Set(list.map((r) => r.id))], params, 'x')} ORDER BY id`,
    params,
  );
  return rows.map(toEdge);
}

/** The node, visible at `at`, or NOT_FOUND (another tenant's node is simply not there). */
export async function requireNode(view: View, id: string, field = 'id'): Promise<GraphNode> {
  const [row] = await duckRows<NodeRow>(
    view.conn,
    `WITH hit AS MATERIALIZED (SELECT ${NODE_COLUMNS} FROM graph_nodes WHERE id = $id)
     SELECT ${NODE_COLUMNS} FROM hit h WHERE h.tenant_id = $tenant AND ${visibleAt('h')}`,
    { tenant: view.tenantId, at: instant(view.at), id },
  );
  if (!row) throw new AeternaError('NOT_FOUND', `node ${id} not found`, { element: 'node', id, field });
  return toNode(row);
}

/** Nodes first reached at each level, and the steps that reached them (every one, not just the first). */
export interface Level {
  depth: number;
  reached: string[];
  steps: Step[];
}

/**
 * Breadth-first levels from `start`, at most `depth` deep, stopping early once `maxNodes` nodes
 * are reached. Each node is reached once, at its smallest depth, so cycles cannot loop. A node
 * is entered only if it is visible at the view's instant.
 */
export async function* levels(
  view: View,
  start: string,
  opts: { depth: number; direction: GraphDirection; relations?: readonly string[] | undefined; maxNodes: number },
): AsyncGenerator<Level> {
  const seen = new Set([start]);
  const enterable = await nodeGate(view);
  let frontier = [start];
  for (let depth = 1; depth <= opts.depth && frontier.length > 0 && seen.size - 1 < opts.maxNodes; depth++) {
    const steps = (await expand(view, frontier, opts.direction, opts.relations)).filter((s) => !seen.has(s.to));
    const entered = await enterable(steps.map((s) => s.to));
    const reached = [...entered].sort();
    for (const id of reached) seen.add(id);
    frontier = reached;
    yield { depth, reached, steps: steps.filter((s) => entered.has(s.to)) };
  }
}

export interface NeighborsOptions {
  depth: number;
  direction: GraphDirection;
  relations?: readonly string[] | undefined;
  limit: number;
}

export async function neighbors(view: View, start: GraphNode, opts: NeighborsOptions) {
  const depthOf = new Map<string, number>();
  const used: Step[] = [];
  // One node past the limit tells "more in reach" apart from "exactly limit".
  for await (const level of levels(view, start.id, { ...opts, maxNodes: opts.limit + 1 })) {
    for (const id of level.reached) depthOf.set(id, level.depth);
    used.push(...level.steps);
  }
  const kept = [...depthOf].slice(0, opts.limit);
  const keptIds = new Set(kept.map(([id]) => id));
  const nodes = await loadNodes(view, keptIds);
  const edges = await loadEdges(view, used.filter((s) => keptIds.has(s.to)));
  return {
    node: start,
    neighbors: kept.flatMap(([id, depth]) => {
      const node = nodes.get(id);
      return node ? [{ node, depth }] : [];
    }),
    edges,
    truncated: depthOf.size > opts.limit,
  };
}

const REVERSE: Record<GraphDirection, GraphDirection> = { out: 'in', in: 'out', both: 'both' };

interface Side {
  /** node → the step that first reached it (undefined for the side's origin). */
  parent: Map<string, Step | undefined>;
  depth: Map<string, number>;
  frontier: string[];
  level: number;
  direction: GraphDirection;
}

function side(origin: string, direction: GraphDirection): Side {
  return { parent: new Map([[origin, undefined]]), depth: new Map([[origin, 0]]), frontier: [origin], level: 0, direction };
}

/**
 * Shortest path by bidirectional BFS: each round expands one whole level of the side with the
 * smaller frontier (one query), forwards from `from` along `direction` and backwards from `to`
 * against it. The first round in which the two searches touch holds the shortest path; among its
 * meeting nodes the shortest total wins (ties by id, so the answer is deterministic).
 */
export async function shortestPath(
  view: View,
  from: string,
  to: string,
  opts: { maxDepth: number; direction: GraphDirection; relations?: readonly string[] | undefined },
): Promise<{ nodes: string[]; steps: Step[] } | undefined> {
  if (from === to) return { nodes: [from], steps: [] };
  const fwd = side(from, opts.direction);
  const bwd = side(to, REVERSE[opts.direction]);
  const enterable = await nodeGate(view);
  while (fwd.level + bwd.level < opts.maxDepth && fwd.frontier.length > 0 && bwd.frontier.length > 0) {
    const [grow, other] = fwd.frontier.length <= bwd.frontier.length ? [fwd, bwd] : [bwd, fwd];
    const steps = (await expand(view, grow.frontier, grow.direction, opts.relations)).filter((s) => !grow.parent.has(s.to));
    const entered = await enterable(steps.map((s) => s.to));
    grow.level += 1;
    const next: string[] = [];
    for (const step of steps) {
      if (!entered.has(step.to) || grow.parent.has(step.to)) continue;
      grow.parent.set(step.to, step);
      grow.depth.set(step.to, grow.level);
      next.push(step.to);
    }
    grow.frontier = next;
    const meetings = next
      .filter((id) => other.depth.has(id))
      .map((id) => ({ id, total: grow.level + (other.depth.get(id) as number) }))
      .sort((a, b) => a.total - b.total || (a.id < b.id ? -1 : 1));
    const meet = meetings[0];
    if (meet) return join(fwd, bwd, meet.id);
  }
  return undefined;
}

/** Walks the parents back from the meeting node to each origin. */
function join(fwd: Side, bwd: Side, meet: string): { nodes: string[]; steps: Step[] } {
  const head: Step[] = [];
  for (let step = fwd.parent.get(meet); step; step = fwd.parent.get(step.from)) head.unshift(step);
  const tail: Step[] = [];
  for (let step = bwd.parent.get(meet); step; step = bwd.parent.get(step.from)) tail.push(step);
  const nodes = [...head.map((s) => s.from), meet, ...tail.map((s) => s.from)];
  return { nodes, steps: [...head, ...tail] };
}

/** Each hop after the first halves a path's score: near relations outrank far ones of equal weight. */
export const RELATED_HOP_DECAY = 0.5;
/** Bounds the work of one related() call on dense graphs. */
export const RELATED_MAX_NODES = 10_000;

/**
 * Nodes within `hops` of `start` (either direction), scored by the best product of edge weights
 * over a fewest-hop path, times RELATED_HOP_DECAY per hop after the first. Best first; ties go to
 * fewer hops, then id.
 */
export async function related(view: View, start: string, opts: { hops: number; limit: number }) {
  const score = new Map<string, { score: number; hops: number }>([[start, { score: 1, hops: 0 }]]);
  for await (const level of levels(view, start, { depth: opts.hops, direction: 'both', maxNodes: RELATED_MAX_NODES })) {
    const decay = level.depth === 1 ? 1 : RELATED_HOP_DECAY;
    for (const step of level.steps) {
      const via = (score.get(step.from)?.score ?? 0) * step.weight * decay;
      const current = score.get(step.to);
      if (!current || via > current.score) score.set(step.to, { score: via, hops: level.depth });
    }
  }
  score.delete(start);
  const ranked = [...score]
    .sort(([a, x], [b, y]) => y.score - x.score || x.hops - y.hops || (a < b ? -1 : 1))
    .slice(0, opts.limit);
  const nodes = await loadNodes(view, ranked.map(([id]) => id));
  return ranked.flatMap(([id, s]) => {
    const node = nodes.get(id);
    return node ? [{ node, score: s.score, hops: s.hops }] : [];
  });
}
