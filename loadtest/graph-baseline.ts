/**
 * The graph benchmark's baseline: the same traversals answered by PostgreSQL itself, over a plain
 * `bench_edges(tenant_id, source, target)` table with btree indexes on (tenant_id, source) and
 * (tenant_id, target). It answers "why DuckDB": same data, same start nodes, same algorithm
 * (shortest path is the same bidirectional level-by-level search GraphStore runs), another engine.
 *
 * It is deliberately lean, which favours PostgreSQL: ids only, no node or edge rows loaded, no
 * validity or soft-delete filters, no tenant transaction or RLS.
 */
import pg from 'pg';
import type { SyntheticGraph } from './graph-data.js';

const CHUNK = 50_000;

/** Depth ≤ 2 both ways, one statement: level 1, then what level 1 reaches that is new. */
const NEIGHBORS_2 = `
  WITH l1 AS (
    SELECT target AS id FROM bench_edges WHERE tenant_id = $1 AND source = $2
    UNION SELECT source FROM bench_edges WHERE tenant_id = $1 AND target = $2
  ), l1x AS (SELECT id FROM l1 WHERE id <> $2),
  l2 AS (
    SELECT e.target AS id FROM bench_edges e JOIN l1x ON e.tenant_id = $1 AND e.source = l1x.id
    UNION SELECT e.source FROM bench_edges e JOIN l1x ON e.tenant_id = $1 AND e.target = l1x.id
  )
  SELECT id, 1 AS depth FROM l1x
  UNION ALL SELECT id, 2 FROM l2 WHERE id <> $2 AND id NOT IN (SELECT id FROM l1x)
  ORDER BY depth, id LIMIT $3`;

interface Side {
  depth: Map<string, number>;
  frontier: string[];
  level: number;
  /** Column the frontier matches: forwards along out-edges, backwards along in-edges. */
  from: 'source' | 'target';
}

export class PgBaseline {
  private constructor(
    private readonly pool: pg.Pool,
    readonly loadSeconds: number,
    readonly tableBytes: number,
  ) {}

  /** Copies every tenant's queried edges into bench_edges, then indexes and analyses it. */
  static async create(url: string, tenants: readonly { tenantId: string; graph: SyntheticGraph }[]): Promise<PgBaseline> {
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    pool.on('error', () => undefined);
    const started = performance.now();
    try {
      await pool.query('DROP TABLE IF EXISTS bench_edges');
      await pool.query('CREATE TABLE bench_edges (tenant_id text NOT NULL, source text NOT NULL, target text NOT NULL)');
      for (const { tenantId, graph } of tenants) {
        for (let from = 0; from < graph.edgeCount; from += CHUNK) {
          const to = Math.min(graph.edgeCount, from + CHUNK);
          const sources: string[] = [];
          const targets: string[] = [];
          for (let e = from; e < to; e++) {
            sources.push(graph.ids[graph.source[e] as number] as string);
            targets.push(graph.ids[graph.target[e] as number] as string);
          }
          await pool.query('INSERT INTO bench_edges SELECT $1, unnest($2::text[]), unnest($3::text[])', [tenantId, sources, targets]);
        }
      }
      await pool.query('CREATE INDEX bench_edges_source ON bench_edges (tenant_id, source)');
      await pool.query('CREATE INDEX bench_edges_target ON bench_edges (tenant_id, target)');
      await pool.query('VACUUM ANALYZE bench_edges');
      const size = await pool.query<{ bytes: string }>("SELECT pg_total_relation_size('bench_edges') AS bytes");
      return new PgBaseline(pool, (performance.now() - started) / 1000, Number(size.rows[0]?.bytes ?? 0));
    } catch (err) {
      await pool.end();
      throw err;
    }
  }

  /** Node ids within 2 hops either way, nearest first, at most `limit`. */
  async neighbors2(tenantId: string, id: string, limit: number): Promise<number> {
    return (await this.pool.query(NEIGHBORS_2, [tenantId, id, limit])).rowCount ?? 0;
  }

  /** Shortest out-path length within maxDepth, as traverse.ts's shortestPath finds it; undefined when none. */
  async pathLength(tenantId: string, from: string, to: string, maxDepth: number): Promise<number | undefined> {
    if (from === to) return 0;
    const fwd: Side = { depth: new Map([[from, 0]]), frontier: [from], level: 0, from: 'source' };
    const bwd: Side = { depth: new Map([[to, 0]]), frontier: [to], level: 0, from: 'target' };
    while (fwd.level + bwd.level < maxDepth && fwd.frontier.length > 0 && bwd.frontier.length > 0) {
      const [grow, other] = fwd.frontier.length <= bwd.frontier.length ? [fwd, bwd] : [bwd, fwd];
      const reach = grow.from === 'source' ? 'target' : 'source';
      const rows = await this.pool.query<{ id: string }>(
        `SELECT DISTINCT ${reach} AS id FROM bench_edges WHERE tenant_id = $1 AND ${grow.from} = ANY($2::text[])`,
        [tenantId, grow.frontier],
      );
      grow.level += 1;
      const next: string[] = [];
      let best: number | undefined;
      for (const { id } of rows.rows) {
        if (grow.depth.has(id)) continue;
        grow.depth.set(id, grow.level);
        next.push(id);
        const there = other.depth.get(id);
        if (there !== undefined) best = Math.min(best ?? Infinity, grow.level + there);
      }
      grow.frontier = next;
      if (best !== undefined) return best;
    }
    return undefined;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
