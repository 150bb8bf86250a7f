import { z } from 'zod';
import { ID_PATTERN } from '../../tenancy/index.js';
import { SNAPSHOT_TABLES, type SnapshotTable } from '../schema.js';

/**
 * Layout of one tenant's snapshots in a store:
 *
 *   {tenant}/full-{seq}/manifest.json                 a whole projection at `seq`
 *   {tenant}/delta-{fromSeq}-{seq}/manifest.json      rows changed in (fromSeq, seq]
 *   {tenant}/{kind…}/{table}.{writeId}.parquet        the tables, named in the manifest
 *
 * Seqs are zero-padded to 16 digits (every safe integer fits) so keys sort in log order. The
 * manifest is written after every file it names: a folder without one is an unfinished write.
 * Files carry a per-write id so two processes snapshotting the same seq never overwrite each
 * other's files; whichever manifest lands last names a consistent set.
 */
export const MANIFEST_FORMAT = 1;
export const MANIFEST_NAME = 'manifest.json';
const SEQ_DIGITS = 16;

export type SnapshotKind = 'full' | 'delta';

const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const fileEntry = z.object({
  key: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().min(0),
  rows: z.number().int().min(0),
});

const tableFiles = z.object(
  Object.fromEntries(SNAPSHOT_TABLES.map((table) => [table, fileEntry])) as Record<SnapshotTable, typeof fileEntry>,
);

export const manifestSchema = z
  .object({
    format: z.literal(MANIFEST_FORMAT),
    tenantId: z.string().regex(ID_PATTERN),
    kind: z.enum(['full', 'delta']),
    fromSeq: seq,
    seq,
    purgedSeq: seq,
    createdAt: z.string().datetime({ offset: true }),
    files: tableFiles,
  })
  .refine((m) => m.fromSeq <= m.seq && m.purgedSeq <= m.seq, 'fromSeq and purgedSeq must not exceed seq')
  .refine((m) => m.kind === 'delta' || m.fromSeq === 0, 'a full snapshot starts at seq 0')
  // A delta cannot carry hard deletes, so one that spans a purge would resurrect purged rows.
  .refine((m) => m.kind === 'full' || m.purgedSeq <= m.fromSeq, 'a delta must not span a purge');

export type SnapshotManifest = z.infer<typeof manifestSchema>;
export type SnapshotFile = SnapshotManifest['files'][SnapshotTable];

/** A snapshot folder found by listing, before its manifest is read. */
export interface SnapshotRef {
  kind: SnapshotKind;
  fromSeq: number;
  seq: number;
  /** `{tenant}/{name}`: the folder every key of this snapshot starts with. */
  dir: string;
  /** Whether its manifest exists, i.e. the write finished. */
  committed: boolean;
  /** Every key in the folder, manifest included. */
  keys: string[];
}

const pad = (n: number): string => String(n).padStart(SEQ_DIGITS, '0');

export function snapshotDir(tenantId: string, kind: SnapshotKind, fromSeq: number, toSeq: number): string {
  return kind === 'full' ? `${tenantId}/full-${pad(toSeq)}` : `${tenantId}/delta-${pad(fromSeq)}-${pad(toSeq)}`;
}

export function manifestKey(dir: string): string {
  return `${dir}/${MANIFEST_NAME}`;
}

const FOLDER = /^(?:full-(\d{16})|delta-(\d{16})-(\d{16}))$/;

/**
 * Groups a tenant's listed keys into snapshot folders, in seq order (fulls before deltas of the
 * same seq). Folders whose names do not parse are not ours and are left alone.
 */
export function groupSnapshots(tenantId: string, keys: readonly string[]): SnapshotRef[] {
  const byDir = new Map<string, SnapshotRef>();
  const tenantPrefix = `${tenantId}/`;
  for (const key of keys) {
    if (!key.startsWith(tenantPrefix)) continue;
    const rest = key.slice(tenantPrefix.length);
    const slash = rest.indexOf('/');
    if (slash < 0) continue;
    const folder = rest.slice(0, slash);
    const match = FOLDER.exec(folder);
    if (!match) continue;
    const dir = `${tenantPrefix}${folder}`;
    let ref = byDir.get(dir);
    if (!ref) {
      const kind: SnapshotKind = match[1] !== undefined ? 'full' : 'delta';
      const fromSeq = kind === 'full' ? 0 : Number(match[2]);
      const toSeq = Number(kind === 'full' ? match[1] : match[3]);
      ref = { kind, fromSeq, seq: toSeq, dir, committed: false, keys: [] };
      byDir.set(dir, ref);
    }
    ref.keys.push(key);
    if (rest.slice(slash + 1) === MANIFEST_NAME) ref.committed = true;
  }
  return [...byDir.values()].sort((a, b) => a.seq - b.seq || (a.kind === b.kind ? a.fromSeq - b.fromSeq : a.kind === 'full' ? -1 : 1));
}
