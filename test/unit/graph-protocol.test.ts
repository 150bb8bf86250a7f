import { describe, expect, it } from 'vitest';
import {
  graphNeighborsSchema,
  graphNodeSchema,
  graphOpDraftSchema,
  graphPathSchema,
  graphRelatedSchema,
  graphSearchSchema,
  graphUpsertEdgeSchema,
  graphUpsertNodeSchema,
  graphWriteSchema,
} from '../../src/protocol/index.js';

const ok = <T>(schema: { safeParse(v: unknown): { success: boolean; data?: T } }, value: unknown): T => {
  const result = schema.safeParse(value);
  if (!result.success) throw new Error(`expected ${JSON.stringify(value)} to parse`);
  return result.data as T;
};
const bad = (schema: { safeParse(v: unknown): { success: boolean } }, value: unknown) => expect(schema.safeParse(value).success).toBe(false);

describe('graph query schemas', () => {
  it('fills neighbors defaults and accepts query-string numbers', () => {
    expect(ok(graphNeighborsSchema, { id: 'a' })).toEqual({ id: 'a', direction: 'both', depth: 1, limit: 100 });
    expect(ok(graphNeighborsSchema, { id: 'a', depth: '3', limit: '1000' })).toMatchObject({ depth: 3, limit: 1000 });
  });

  it.each([0, 6, -1, 1.5, 'x', null])('refuses depth %s', (depth) => {
    bad(graphNeighborsSchema, { id: 'a', depth });
    bad(graphPathSchema, { from: 'a', to: 'b', maxDepth: depth });
  });

  it('bounds limits, hops and directions', () => {
    bad(graphNeighborsSchema, { id: 'a', limit: 1001 });
    bad(graphNeighborsSchema, { id: 'a', direction: 'up' });
    bad(graphRelatedSchema, { id: 'a', hops: 4 });
    bad(graphRelatedSchema, { id: 'a', hops: 0 });
    bad(graphSearchSchema, { q: 'x', limit: 101 });
    expect(ok(graphPathSchema, { from: 'a', to: 'b' })).toMatchObject({ maxDepth: 5, direction: 'out' });
    expect(ok(graphRelatedSchema, { id: 'a' })).toMatchObject({ hops: 2, limit: 20 });
  });

  it('takes one relation or a list, as a de-duplicated list', () => {
    expect(ok(graphNeighborsSchema, { id: 'a', relation: 'uses' })).toMatchObject({ relation: ['uses'] });
    expect(ok(graphNeighborsSchema, { id: 'a', relation: ['uses', 'owns', 'uses'] })).toMatchObject({ relation: ['uses', 'owns'] });
    bad(graphNeighborsSchema, { id: 'a', relation: [] });
    bad(graphNeighborsSchema, { id: 'a', relation: 'has spaces' });
  });

  it('normalises asOf to UTC ISO and refuses times without an offset', () => {
    expect(ok(graphNodeSchema, { id: 'a', asOf: '2025-03-01T12:00:00+02:00' })).toEqual({ id: 'a', asOf: '2025-03-01T10:00:00.000Z' });
    bad(graphNodeSchema, { id: 'a', asOf: '2025-03-01 12:00' });
    bad(graphNodeSchema, { id: 'a', asOf: 'yesterday' });
  });

  it('applies the shared id rule and refuses unknown fields', () => {
    bad(graphNodeSchema, { id: "a'; DROP TABLE x" });
    bad(graphNodeSchema, { id: '-leading-dash' });
    bad(graphNodeSchema, { id: 'a'.repeat(129) });
    expect(ok(graphNodeSchema, { id: 'dropbox' })).toEqual({ id: 'dropbox' });
    bad(graphNeighborsSchema, { id: 'a', dept: 2 });
  });

  it('parses search flags from query strings', () => {
    expect(ok(graphSearchSchema, { q: '  postgres ', semantic: 'true' })).toMatchObject({ q: 'postgres', semantic: true, limit: 20 });
    expect(ok(graphSearchSchema, { q: 'x', semantic: 'false' })).toMatchObject({ semantic: false });
    bad(graphSearchSchema, { q: 'x', semantic: 'yes' });
    bad(graphSearchSchema, { q: '   ' });
    bad(graphSearchSchema, { q: 'x'.repeat(257) });
  });
});

describe('graph write schemas', () => {
  it('accepts minimal upserts and checks validity order', () => {
    expect(ok(graphUpsertNodeSchema, { label: ' Acme ', kind: 'entity' })).toEqual({ label: 'Acme', kind: 'entity' });
    expect(ok(graphUpsertEdgeSchema, { source: 'a', target: 'b', relation: 'uses' })).toEqual({ source: 'a', target: 'b', relation: 'uses' });
    bad(graphUpsertNodeSchema, { label: 'A', kind: 'k', validFrom: '2025-01-02T00:00:00Z', validTo: '2025-01-01T00:00:00Z' });
    expect(ok(graphUpsertNodeSchema, { label: 'A', kind: 'k', validTo: null })).toMatchObject({ validTo: null });
    bad(graphUpsertEdgeSchema, { source: 'a', target: 'b', relation: 'uses', weight: -1 });
    bad(graphUpsertEdgeSchema, { source: 'a', target: 'b', relation: 'uses', weight: Number.POSITIVE_INFINITY });
  });

  it('refuses properties that are not plain JSON or hold NUL', () => {
    bad(graphUpsertNodeSchema, { label: 'A', kind: 'k', properties: { n: 10n } });
    bad(graphUpsertNodeSchema, { label: 'A', kind: 'k', properties: { s: 'a\u0000b' } });
    bad(graphUpsertNodeSchema, { label: 'A', kind: 'k', properties: ['not', 'an', 'object'] });
  });

  it('knows every op and refuses others', () => {
    for (const op of [
      { op: 'node.delete', id: 'a' },
      { op: 'edge.delete', id: 'a' },
      { op: 'invalidate', element: 'edge', id: 'a' },
      { op: 'cascade', memoryId: '01900000-0000-7000-8000-000000000001' },
      { op: 'purge', before: '2025-01-01T00:00:00Z' },
    ]) {
      expect(graphOpDraftSchema.safeParse(op).success).toBe(true);
    }
    bad(graphOpDraftSchema, { op: 'node.drop', id: 'a' });
    bad(graphOpDraftSchema, { op: 'purge' });
    bad(graphWriteSchema, []);
  });
});
