import type { DbCapabilities } from '../store/index.js';
import { ExactScanIndex } from './exact.js';
import { PgvectorIndex } from './pgvector.js';
import type { VectorIndex } from './types.js';

export { ExactScanIndex } from './exact.js';
export { binder, scopeFilterSql, type Bind } from './filter.js';
export { PgvectorIndex, preparePgvector } from './pgvector.js';
export type { VectorFilter, VectorHit, VectorIndex, VectorSearchQuery } from './types.js';

/** pgvector where the database has it, else the exact scan over real[]. */
export function createVectorIndex(capabilities: DbCapabilities, dims: number): VectorIndex {
  return capabilities.pgvector ? new PgvectorIndex(dims) : new ExactScanIndex(dims);
}
