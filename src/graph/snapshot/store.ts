import { AeternaError } from '../../protocol/index.js';

/** What `put` stores: bytes in memory, or a local file streamed from disk (Parquet can be large). */
export type SnapshotBody = Uint8Array | { file: string };

/**
 * Where snapshots live: a directory (embedded mode) or an S3-compatible bucket (cluster mode).
 * Keys are '/'-separated paths of plain segments (see assertKey). Every `put` is atomic: a reader
 * sees the whole object or none of it, which is what makes "manifest written last" a commit point.
 */
export interface SnapshotStore {
  /** Names the destination in log lines (never includes credentials). */
  readonly description: string;
  put(key: string, body: SnapshotBody): Promise<void>;
  /** The object's bytes, or null when there is none. */
  get(key: string): Promise<Uint8Array | null>;
  /** Copies the object to a local file; false (and no file) when there is none. */
  getToFile(key: string, file: string): Promise<boolean>;
  /** Every key that starts with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  /** Idempotent: deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;

/**
 * Keys are built by the snapshotter from validated tenant ids and fixed names, never from user
 * input; checking them anyway means a bug cannot turn a key into `../` outside the store's root.
 * Segments start with a letter or digit, so no key is a dot-file: the directory store keeps its
 * temp files under dot names, where listing never mistakes them for objects.
 */
export function assertKey(key: string): string {
  const segments = key.split('/');
  if (!segments.every((s) => SEGMENT.test(s) && s !== '..' && s !== '.')) {
    throw new AeternaError('INVALID_ARGUMENT', 'invalid snapshot key', { key });
  }
  return key;
}

/** A prefix is a key with an optional trailing '/' (or empty: everything). */
export function assertPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  assertKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}
