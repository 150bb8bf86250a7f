import type { GraphOpDraft } from '../../protocol/index.js';
import { edgeIdFor, nodeIdFor } from '../ids.js';
import type { Extraction } from './types.js';

type NodeDraft = Extract<GraphOpDraft, { op: 'node.upsert' }>;
type EdgeDraft = Extract<GraphOpDraft, { op: 'edge.upsert' }>;

/**
 * The graph batch one memory's extraction writes (drafts for `GraphStore.write`): a node.upsert per
 * entity, then an edge.upsert per relation, so both ends exist when the edge is applied. Ids come
 * from (kind, label) and (source, relation, target) alone, so re-running the job, or another memory
 * stating the same thing, upserts the same rows; every op names the memory as a source, which is
 * what a later cascade or update of that memory goes by.
 *
 * What the ops leave out the store keeps: `validFrom` (a fact restated by a newer memory stays
 * valid since it was first stated; a new one starts at the batch's commit time) and `properties`
 * when the extractor found none (a rule-extracted mention must not wipe what the LLM or the API
 * set). `validTo: null` is explicit: a memory stating a fact again makes it valid again. A
 * per-memory count such as `mentions` is not written: the node is shared, and the next memory's
 * upsert would overwrite it.
 */
export function extractionToOps(extraction: Extraction, memory: { id: string }): GraphOpDraft[] {
  const nodes = new Map<string, NodeDraft>();
  const node = (ref: { label: string; kind: string; properties?: Record<string, unknown> | undefined }): string => {
    const id = nodeIdFor(ref.kind, ref.label);
    if (!nodes.has(id)) {
      nodes.set(id, {
        op: 'node.upsert',
        id,
        label: ref.label,
        kind: ref.kind,
        ...(ref.properties && Object.keys(ref.properties).length > 0 ? { properties: { ...ref.properties } } : {}),
        sourceMemoryId: memory.id,
        validTo: null,
      });
    }
    return id;
  };
  for (const entity of extraction.entities) node(entity);

  const edges = new Map<string, EdgeDraft>();
  for (const r of extraction.relations) {
    const source = node(r.source);
    const target = node(r.target);
    if (source === target) continue;
    const id = edgeIdFor(source, r.relation, target);
    const known = edges.get(id);
    if (known) {
      known.weight = Math.max(known.weight ?? 0, r.weight);
      continue;
    }
    edges.set(id, {
      op: 'edge.upsert',
      id,
      source,
      target,
      relation: r.relation,
      weight: r.weight,
      ...(r.properties && Object.keys(r.properties).length > 0 ? { properties: { ...r.properties } } : {}),
      sourceMemoryId: memory.id,
      validTo: null,
    });
  }
  return [...nodes.values(), ...edges.values()];
}

/**
 * An edge a memory supported before it changed and that is still valid (an invalidated one is
 * left out: invalidating it again would move its end), with every live memory that supports it.
 */
export interface SupportedEdge {
  id: string;
  sourceMemoryIds: readonly string[];
}

export interface Superseded {
  /** No longer stated by this memory and by no other: invalidate (valid_to), do not delete. */
  invalidate: string[];
  /**
   * No longer stated by this memory but still by others: the fact stays valid and only this
   * memory's source link should go (so deleting the memory later does not count it as support).
   */
  unlink: string[];
}

/**
 * On memory.updated: which of the edges this memory used to support its new text no longer
 * states. The processor reads `previous` from the element-source links of the memory (before
 * applying the new batch), runs the new extraction through `extractionToOps`, and then appends
 * `invalidateOps(result.invalidate, at)` to the batch; an edge still stated elsewhere stays valid.
 * Nodes are not invalidated: an entity that is no longer mentioned is not a fact that stopped
 * being true, and a cascade on deletion removes what only this memory produced.
 * Pure; both lists sorted, so the batch is the same on every re-run.
 */
export function supersededEdges(memoryId: string, previous: readonly SupportedEdge[], newOps: readonly GraphOpDraft[]): Superseded {
  const restated = new Set(newOps.flatMap((op) => (op.op === 'edge.upsert' && op.id !== undefined ? [op.id] : [])));
  const invalidate: string[] = [];
  const unlink: string[] = [];
  for (const edge of previous) {
    if (restated.has(edge.id)) continue;
    if (edge.sourceMemoryIds.some((m) => m !== memoryId)) unlink.push(edge.id);
    else invalidate.push(edge.id);
  }
  return { invalidate: [...new Set(invalidate)].sort(), unlink: [...new Set(unlink)].sort() };
}

/** `invalidate` ops closing these edges' validity at `at`. */
export function invalidateOps(edgeIds: readonly string[], at: string): GraphOpDraft[] {
  return edgeIds.map((id) => ({ op: 'invalidate', element: 'edge', id, validTo: at }));
}
