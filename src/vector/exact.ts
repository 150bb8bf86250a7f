import type { Sql } from '../store/index.js';
import { filterSql } from './filter.js';
import type { VectorHit, VectorIndex, VectorSearchQuery } from './types.js';

/**
 * For PostgreSQL servers without pgvector: embeddings in a real[] column, compared by a full scan
 * of the tenant's candidate rows. Correct, and fine for thousands of memories per scope; at larger
 * sizes install pgvector or configure Qdrant.
 */
export class ExactScanIndex implements VectorIndex {
  readonly name = 'exact-scan' as const;

  constructor(readonly dims: number) {}

  async upsert(sql: Sql, id: string, vector: Float32Array, model: string): Promise<void> {
    await sql.query('UPDATE memories SET embedding = $2::real[], embedding_model = $3 WHERE id = $1', [
      id,
      Array.from(vector),
      model,
    ]);
  }

  async search(sql: Sql, query: VectorSearchQuery): Promise<VectorHit[]> {
    const params: unknown[] = [Array.from(query.vector)];
    const where = filterSql(query.filter, query.model, params);
    params.push(query.limit);
    // Stored and query vectors are L2-normalised, so the dot product is the cosine.
    const res = await sql.query<{ id: string; similarity: number }>(
      `SELECT id, (SELECT sum(a * b) FROM unnest(embedding, $1::real[]) AS t(a, b)) AS similarity
         FROM memories
        WHERE cardinality(embedding) = ${this.dims} AND ${where}
        ORDER BY similarity DESC NULLS LAST
        LIMIT $${params.length}`,
      params,
    );
    return res.rows.map((r) => ({ id: r.id, similarity: Number(r.similarity) }));
  }

  async vectorsOf(sql: Sql, ids: readonly string[]): Promise<Map<string, Float32Array>> {
    if (ids.length === 0) return new Map();
    const res = await sql.query<{ id: string; embedding: number[] }>(
      'SELECT id, embedding FROM memories WHERE id = ANY($1::uuid[]) AND embedding IS NOT NULL',
      [[...ids]],
    );
    return new Map(res.rows.map((r) => [r.id, Float32Array.from(r.embedding, Number)]));
  }
}
