// The knowledge graph's public face: other folders import only from here.
export { GraphStore, GRAPH_SYSTEM_ACTOR, type GraphStoreOptions, type GraphReadContext, type GraphWriteContext } from './store.js';
export type { ProjectionPosition } from './projection.js';
export type { SupportedElement } from './queries.js';
export { RELATED_HOP_DECAY, RELATED_MAX_NODES } from './traverse.js';
export { DUCKDB_SCHEMA, SNAPSHOT_TABLES, type GraphBatch, type GraphEdge, type GraphNode, type GraphOp, type SnapshotTable } from './schema.js';
export { edgeIdFor, nodeIdFor, normaliseLabel } from './ids.js';
export * from './snapshot/index.js';
export * from './extract/index.js';
export { GraphApi, graphSnapshotSchema, snapshotGraph } from './api.js';
