import type { SnapshotStoreConfig } from '../../config.js';
import { DirectorySnapshotStore } from './directory-store.js';
import { S3SnapshotStore } from './s3-store.js';
import type { SnapshotStore } from './store.js';

/** The store config.graph.snapshots names: a directory (embedded default) or an S3-compatible bucket. */
export function createSnapshotStore(config: SnapshotStoreConfig): SnapshotStore {
  return config.kind === 'dir' ? new DirectorySnapshotStore(config.dir) : new S3SnapshotStore(config);
}
