import { describe, expect, it } from 'vitest';
import { extractByRules, extractionToOps, invalidateOps, supersededEdges, type Extraction } from '../../src/graph/extract/index.js';
import { edgeIdFor, nodeIdFor } from '../../src/graph/ids.js';
import type { GraphOpDraft } from '../../src/protocol/index.js';

const LATER = '2025-03-02T08:30:00.000Z';

const extraction: Extraction = {
  entities: [
    { label: 'Jane Doe', kind: 'person', mentions: 2, properties: { role: 'lead' } },
    { label: 'Apollo', kind: 'project', mentions: 1 },
  ],
  relations: [
    { source: { label: 'Jane Doe', kind: 'person' }, target: { label: 'Apollo', kind: 'project' }, relation: 'manages', weight: 1 },
    // An end missing from `entities` still gets its node, before the edge that needs it.
    { source: { label: 'Apollo', kind: 'project' }, target: { label: 'Redis', kind: 'technology' }, relation: 'uses', weight: 0.8 },
  ],
};

function edgeIds(ops: readonly GraphOpDraft[]): string[] {
  return ops.flatMap((op) => (op.op === 'edge.upsert' && op.id !== undefined ? [op.id] : []));
}

describe('extractionToOps', () => {
  it('upserts a node per entity, then an edge per relation, all sourced to the memory', () => {
    const jane = nodeIdFor('person', 'Jane Doe');
    const apollo = nodeIdFor('project', 'Apollo');
    const redis = nodeIdFor('technology', 'Redis');
    const common = { sourceMemoryId: 'mem-1', validTo: null };
    expect(extractionToOps(extraction, { id: 'mem-1' })).toEqual([
      { op: 'node.upsert', id: jane, label: 'Jane Doe', kind: 'person', properties: { role: 'lead' }, ...common },
      { op: 'node.upsert', id: apollo, label: 'Apollo', kind: 'project', ...common },
      { op: 'node.upsert', id: redis, label: 'Redis', kind: 'technology', ...common },
      { op: 'edge.upsert', id: edgeIdFor(jane, 'manages', apollo), source: jane, target: apollo, relation: 'manages', weight: 1, ...common },
      { op: 'edge.upsert', id: edgeIdFor(apollo, 'uses', redis), source: apollo, target: redis, relation: 'uses', weight: 0.8, ...common },
    ]);
  });

  it('leaves validFrom, and properties it has none of, to the store, so a restated fact keeps its history', () => {
    for (const op of extractionToOps(extraction, { id: 'mem-1' })) {
      expect(op).not.toHaveProperty('validFrom');
      if ('properties' in op) expect(Object.keys(op.properties ?? {})).not.toHaveLength(0);
    }
  });

  it('is pure: same input, same ops, and the extraction is left as it was', () => {
    const before = structuredClone(extraction);
    const ops = extractionToOps(extraction, { id: 'mem-1' });
    expect(extractionToOps(extraction, { id: 'mem-1' })).toEqual(ops);
    expect(extraction).toEqual(before);
    const first = ops[0];
    if (first?.op === 'node.upsert' && first.properties) first.properties.role = 'changed';
    expect(extraction.entities[0]?.properties).toEqual({ role: 'lead' });
  });

  it('gives two memories stating the same fact the same node and edge ids', () => {
    const a = extractionToOps(extractByRules('Jane Doe manages Apollo.'), { id: 'mem-a' });
    const b = extractionToOps(extractByRules('Since May, JANE DOE manages the Apollo project.'), { id: 'mem-b' });
    expect(b.map((op) => ('id' in op ? op.id : ''))).toEqual(a.map((op) => ('id' in op ? op.id : '')));
  });

  it('writes one edge for a relation listed twice, with the higher weight', () => {
    const twice: Extraction = { entities: [], relations: [extraction.relations[1]!, { ...extraction.relations[1]!, weight: 0.95 }] };
    const edges = extractionToOps(twice, { id: 'm' }).filter((op) => op.op === 'edge.upsert');
    expect(edges).toHaveLength(1);
    expect(edges[0]).toMatchObject({ weight: 0.95 });
  });
});

describe('supersededEdges on memory.updated', () => {
  it('invalidates what only this memory stated, unlinks what others still state, keeps what it restates', () => {
    const v1 = extractionToOps(extractByRules('Apollo uses Redis. Apollo depends on Kafka. Jane owns Apollo.'), { id: 'mem-1' });
    const [uses, dependsOn, owns] = edgeIds(v1);
    const v2 = extractionToOps(extractByRules('Apollo uses Redis.'), { id: 'mem-1' });

    const result = supersededEdges(
      'mem-1',
      [
        { id: uses!, sourceMemoryIds: ['mem-1'] },
        { id: dependsOn!, sourceMemoryIds: ['mem-1'] },
        { id: owns!, sourceMemoryIds: ['mem-1', 'mem-7'] },
      ],
      v2,
    );
    expect(result).toEqual({ invalidate: [dependsOn], unlink: [owns] });
    expect(invalidateOps(result.invalidate, LATER)).toEqual([{ op: 'invalidate', element: 'edge', id: dependsOn, validTo: LATER }]);
  });

  it('sees a changed relation between the same entities as a new edge and the old one superseded', () => {
    const before = edgeIds(extractionToOps(extractByRules('Buildkite uses Jenkins.'), { id: 'm' }));
    const after = extractionToOps(extractByRules('Buildkite replaced Jenkins.'), { id: 'm' });
    const { invalidate } = supersededEdges('m', before.map((id) => ({ id, sourceMemoryIds: ['m'] })), after);
    expect(invalidate).toEqual(before);
    expect(edgeIds(after)).not.toContain(before[0]);
  });

  it('is empty when nothing changed, and sorted and deduplicated otherwise', () => {
    const ops = extractionToOps(extraction, { id: 'm' });
    const previous = edgeIds(ops).map((id) => ({ id, sourceMemoryIds: ['m'] }));
    expect(supersededEdges('m', previous, ops)).toEqual({ invalidate: [], unlink: [] });
    expect(supersededEdges('m', [{ id: 'e-b', sourceMemoryIds: ['m'] }, { id: 'e-a', sourceMemoryIds: ['m'] }, { id: 'e-b', sourceMemoryIds: ['m'] }], [])).toEqual({
      invalidate: ['e-a', 'e-b'],
      unlink: [],
    });
  });
});
