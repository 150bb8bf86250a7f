/**
 * The graph's shapes: the operations recorded in PostgreSQL's `graph_events` log (the source of
 * truth) and the DuckDB tables each process projects them into. Shared by the store (which writes
 * and queries) and the snapshotter (which copies the tables to and from Parquet).
 */

// Nodes and edges are wire shapes too, so they live in the protocol; re-exported here for the graph's own code.
import type { GraphEdge, GraphNode } from '../protocol/index.js';
export type { GraphEdge, GraphNode };

/** What an upsert op records of a node or edge: the element minus what the log row or projection supplies. */
type GraphElementFields<T> = Omit<T, 'tenantId' | 'createdAt' | 'deletedAt'>;

/**
 * One operation in a `graph_events` batch. Every time in an op is fixed when the batch is written,
 * so every process that replays the log builds the same projection.
 */
export type GraphOp =
  | ({ op: 'node.upsert' } & GraphElementFields<GraphNode>)
  | ({ op: 'edge.upsert' } & GraphElementFields<GraphEdge>)
  /** Soft delete; a node's incident edges go with it. */
  | { op: 'node.delete'; id: string }
  | { op: 'edge.delete'; id: string }
  /** A newer fact contradicts this one: it stays, but stops being valid at `validTo`. */
  | { op: 'invalidate'; element: 'node' | 'edge'; id: string; validTo: string }
  /** The memory is gone: drop its source links; what no other memory supports is soft-deleted. */
  | { op: 'cascade'; memoryId: string }
  /**
   * The memory no longer states this element, but others still do: only its source link goes, so
   * a later cascade of the other memories is not blocked by a stale link. The element stays.
   */
  | { op: 'unlink'; memoryId: string; element: 'node' | 'edge'; id: string }
  /** Hard-delete rows soft-deleted before `before` (retention). */
  | { op: 'purge'; before: string };

/** A committed batch as read back from the log. */
export interface GraphBatch {
  tenantId: string;
  seq: number;
  ops: GraphOp[];
  /** Commit time of the batch: `created_at`/`deleted_at` of what it touches. */
  at: string;
}

/**
 * DuckDB tables. Every row carries `tenant_id` (all queries filter on it) and `updated_seq`, the
 * log position of the batch that last touched it, which is what a delta snapshot selects on.
 * `element_sources` links nodes and edges to every memory that produced them, so a cascade deletes
 * only what the deleted memory alone supported.
 */
export const DUCKDB_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS graph_nodes (
    tenant_id VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    properties JSON NOT NULL,
    source_memory_id VARCHAR,
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ,
    updated_seq BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
  )`,
  `CREATE TABLE IF NOT EXISTS graph_edges (
    tenant_id VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    relation VARCHAR NOT NULL,
    weight DOUBLE NOT NULL,
    properties JSON NOT NULL,
    source_memory_id VARCHAR,
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ,
    updated_seq BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
  )`,
  `CREATE TABLE IF NOT EXISTS graph_element_sources (
    tenant_id VARCHAR NOT NULL,
    element VARCHAR NOT NULL,
    element_id VARCHAR NOT NULL,
    memory_id VARCHAR NOT NULL,
    updated_seq BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, element, element_id, memory_id)
  )`,
  /**
   * How far this process's projection of each tenant has applied the log, and the seq of the
   * last purge (a delta snapshot must not span one: it cannot express hard deletes).
   */
  `CREATE TABLE IF NOT EXISTS graph_positions (
    tenant_id VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL,
    purged_seq BIGINT NOT NULL DEFAULT 0
  )`,
] as const;

/** The projected tables a snapshot holds, in load order. */
export const SNAPSHOT_TABLES = ['graph_nodes', 'graph_edges', 'graph_element_sources'] as const;
export type SnapshotTable = (typeof SNAPSHOT_TABLES)[number];
