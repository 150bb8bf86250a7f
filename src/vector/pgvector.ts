import { parsePgVector, toPgVector } from '../embed/index.js';
import type { DbCapabilities, PrepareHook, Sql } from '../store/index.js';
import { filterSql } from './filter.js';
import type { VectorHit, VectorIndex, VectorSearchQuery } from './types.js';

/**
 * The embedding column is an untyped `vector`, so one schema serves every model's dimension count.
 * The HNSW index is an expression index on `embedding::vector(dims)`, partial on that dimension
 * count, so changing models adds an index instead of breaking inserts; queries repeat the exact
 * expression and predicate so the planner can use it.
 */
function indexName(dims: number): string {
  return `memories_embedding_hnsw_${dims}`;
}

export function preparePgvector(dims: number): PrepareHook {
  return async (owner: Sql, capabilities: DbCapabilities) => {
    if (!capabilities.pgvector) return;
    await owner.query(
      `CREATE INDEX IF NOT EXISTS ${indexName(dims)} ON memories
         USING hnsw ((embedding::vector(${dims})) vector_cosine_ops)
         WHERE vector_dims(embedding) = ${dims} AND deleted_at IS NULL`,
    );
  };
}

export class PgvectorIndex implements VectorIndex {
  readonly name = 'pgvector-hnsw' as const;

  constructor(
    readonly dims: number,
    /** How far HNSW looks per query; higher finds more at some cost. */
    private readonly efSearch = 100,
  ) {
    if (!Number.isInteger(dims) || dims < 1 || dims > 16000) throw new Error(`invalid vector dims ${dims}`);
  }

  async upsert(sql: Sql, id: string, vector: Float32Array, model: string): Promise<void> {
    await sql.query('UPDATE memories SET embedding = $2::vector, embedding_model = $3 WHERE id = $1', [
      id,
      toPgVector(vector),
      model,
    ]);
  }

  async search(sql: Sql, query: VectorSearchQuery): Promise<VectorHit[]> {
    // Row-level security and the scope filter remove rows after HNSW picks them; iterative scan
    // keeps walking the graph until enough rows survive, instead of returning too few.
    await sql.query(
      `SELECT set_config('hnsw.iterative_scan', 'strict_order', true), set_config('hnsw.ef_search', $1, true)`,
      [String(this.efSearch)],
    );
    const params: unknown[] = [toPgVector(query.vector)];
    const where = filterSql(query.filter, query.model, params);
    params.push(query.limit);
    const d = this.dims;
    const res = await sql.query<{ id: string; distance: number }>(
      `SELECT id, (embedding::vector(${d})) <=> $1::vector(${d}) AS distance
         FROM memories
        WHERE vector_dims(embedding) = ${d} AND ${where}
        ORDER BY (embedding::vector(${d})) <=> $1::vector(${d})
        LIMIT $${params.length}`,
      params,
    );
    return res.rows.map((r) => ({ id: r.id, similarity: 1 - Number(r.distance) }));
  }

  async vectorsOf(sql: Sql, ids: readonly string[]): Promise<Map<string, Float32Array>> {
    if (ids.length === 0) return new Map();
    const res = await sql.query<{ id: string; embedding: string }>(
      'SELECT id, embedding::text AS embedding FROM memories WHERE id = ANY($1::uuid[]) AND embedding IS NOT NULL',
      [[...ids]],
    );
    return new Map(res.rows.map((r) => [r.id, parsePgVector(r.embedding)]));
  }
}
