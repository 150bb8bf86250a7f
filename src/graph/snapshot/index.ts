import type { DuckDBConnection } from '@duckdb/node-api';

/**
 * What the graph store calls on a tenant's first query (cold start): rebuild the tenant's rows
 * from snapshots and say which log position they reflect, so only the tail is replayed.
 */
export interface GraphSnapshotRestorer {
  restore(conn: DuckDBConnection, tenantId: string): Promise<{ seq: number; purgedSeq: number }>;
}

export { GraphSnapshotter, type GraphSnapshotterOptions, type SnapshotPosition } from './snapshotter.js';
export { MANIFEST_FORMAT, type SnapshotKind, type SnapshotManifest, type SnapshotFile } from './manifest.js';
export type { SnapshotBody, SnapshotStore } from './store.js';
export { DirectorySnapshotStore } from './directory-store.js';
export { S3SnapshotStore, type S3SnapshotStoreConfig } from './s3-store.js';
export { createSnapshotStore } from './create-store.js';
