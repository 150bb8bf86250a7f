import type { GraphEdge, GraphNode } from './schema.js';

/** DuckDB rows as `getRowObjectsJS` returns them. */
export interface NodeRow {
  tenant_id: string;
  id: string;
  label: string;
  kind: string;
  properties: string;
  source_memory_id: string | null;
  valid_from: Date;
  valid_to: Date | null;
  created_at: Date;
  deleted_at: Date | null;
}

export interface EdgeRow extends Omit<NodeRow, 'label' | 'kind'> {
  source: string;
  target: string;
  relation: string;
  weight: number;
}

export const NODE_COLUMNS = 'tenant_id, id, label, kind, properties, source_memory_id, valid_from, valid_to, created_at, deleted_at';
export const EDGE_COLUMNS = 'tenant_id, id, source, target, relation, weight, properties, source_memory_id, valid_from, valid_to, created_at, deleted_at';

/** `alias.` before every column, for joins. */
export const columnsOf = (columns: string, alias: string): string =>
  columns
    .split(', ')
    .map((c) => `${alias}.${c}`)
    .join(', ');

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** The columns nodes and edges share, as the wire shape has them. */
function elementFields(row: NodeRow | EdgeRow) {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    properties: JSON.parse(row.properties) as Record<string, unknown>,
    sourceMemoryId: row.source_memory_id,
    validFrom: row.valid_from.toISOString(),
    validTo: iso(row.valid_to),
    createdAt: row.created_at.toISOString(),
    deletedAt: iso(row.deleted_at),
  };
}

export function toNode(row: NodeRow): GraphNode {
  return { ...elementFields(row), label: row.label, kind: row.kind };
}

export function toEdge(row: EdgeRow): GraphEdge {
  return { ...elementFields(row), source: row.source, target: row.target, relation: row.relation, weight: Number(row.weight) };
}

/**
 * The row existed and held at `$at` (a TIMESTAMPTZ parameter, see `instant`): created and not yet
 * deleted, and inside its validity. The one predicate serves "as of" and "now" queries alike;
 * the store picks `$at`.
 */
export function visibleAt(alias: string): string {
  return `(${alias}.created_at <= $at AND (${alias}.deleted_at IS NULL OR ${alias}.deleted_at > $at)
    AND ${alias}.valid_from <= $at AND (${alias}.valid_to IS NULL OR ${alias}.valid_to > $at))`;
}
