import type { EmbeddingService } from '../embed/index.js';
import { AeternaError, type GraphSearchResult } from '../protocol/index.js';
import { duckRows, duckRun, floats, instant, list, vectors, type DuckParams } from './duck.js';
import { EMBEDDINGS_TABLE } from './projection.js';
import { NODE_COLUMNS, columnsOf, toNode, visibleAt, type NodeRow } from './rows.js';
import type { View } from './traverse.js';

/** Labels embedded per model call: bounded so one remote request stays small. */
const EMBED_CHUNK = 256;

/**
 * Embeds the labels of visible nodes (of `kind`, if given) that have no embedding from the
 * service's model yet, or one of an older label. Runs before a semantic search, so the first one
 * over a large graph pays for every label once; later ones only for what changed.
 */
export async function fillEmbeddings(view: View, embeddings: EmbeddingService, kind: string | undefined): Promise<number> {
  let filled = 0;
  for (;;) {
    const params: DuckParams = { tenant: view.tenantId, at: instant(view.at), model: embeddings.model, limit: EMBED_CHUNK };
    if (kind !== undefined) params.kind = kind;
    const missing = await duckRows<{ id: string; label: string }>(
      view.conn,
      `SELECT n.id, n.label FROM graph_nodes n
         LEFT JOIN ${EMBEDDINGS_TABLE} e ON e.tenant_id = n.tenant_id AND e.node_id = n.id AND e.model = $model AND e.label = n.label
        WHERE n.tenant_id = $tenant AND ${visibleAt('n')} ${kind === undefined ? '' : 'AND n.kind = $kind'} AND e.node_id IS NULL
        LIMIT $limit`,
      params,
    );
    if (missing.length === 0) return filled;
    const embedded = await embeddings.embed(view.tenantId, missing.map((m) => m.label));
    if (embedded.length !== missing.length) throw new AeternaError('UNAVAILABLE', 'embedder returned the wrong number of vectors');
    await duckRun(
      view.conn,
      `INSERT OR REPLACE INTO ${EMBEDDINGS_TABLE} (tenant_id, node_id, model, label, vector)
       SELECT $tenant, u.id, $model, u.label, u.vector
         FROM (SELECT unnest($ids::VARCHAR[]) AS id, unnest($labels::VARCHAR[]) AS label, unnest($vectors::FLOAT[][]) AS vector) u`,
      {
        tenant: view.tenantId,
        model: embeddings.model,
        ids: list(missing.map((m) => m.id)),
        labels: list(missing.map((m) => m.label)),
        vectors: vectors(embedded),
      },
    );
    filled += missing.length;
  }
}

/** Visible nodes ranked by cosine between their label's embedding and the query's. */
export async function semanticSearch(
  view: View,
  embeddings: EmbeddingService,
  input: { q: string; limit: number; kind?: string | undefined },
): Promise<GraphSearchResult> {
  const [query] = await embeddings.embed(view.tenantId, [input.q]);
  if (!query) throw new AeternaError('UNAVAILABLE', 'embedder returned no vector');
  const params: DuckParams = { tenant: view.tenantId, at: instant(view.at), model: embeddings.model, limit: input.limit, query: floats(query) };
  if (input.kind !== undefined) params.kind = input.kind;
  const rows = await duckRows<NodeRow & { similarity: number }>(
    view.conn,
    `SELECT ${columnsOf(NODE_COLUMNS, 'n')}, list_cosine_similarity(e.vector, $query::FLOAT[]) AS similarity
       FROM graph_nodes n
       JOIN ${EMBEDDINGS_TABLE} e ON e.tenant_id = n.tenant_id AND e.node_id = n.id AND e.model = $model AND e.label = n.label
      WHERE n.tenant_id = $tenant AND ${visibleAt('n')} ${input.kind === undefined ? '' : 'AND n.kind = $kind'}
      ORDER BY similarity DESC NULLS LAST, n.id
      LIMIT $limit`,
    params,
  );
  return {
    mode: 'semantic',
    results: rows.map((r) => {
      const similarity = Number(r.similarity ?? 0);
      return { node: toNode(r), score: similarity, match: 'semantic' as const, similarity };
    }),
  };
}
