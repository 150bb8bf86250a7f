import { normaliseLabel } from '../ids.js';
import {
  CO_OCCURRENCE,
  type EntityRef,
  type ExtractedEntity,
  type ExtractedRelation,
  type Extraction,
  type ExtractionLimits,
} from './types.js';

/** What an extractor found before normalisation: one entity per mention, in text order. */
export interface RawExtraction {
  entities: { label: string; kind: string; properties?: Record<string, unknown> | undefined }[];
  relations: {
    source: EntityRef;
    target: EntityRef;
    relation: string;
    weight: number;
    properties?: Record<string, unknown> | undefined;
  }[];
}

const KIND = /^[a-z][a-z0-9_]{0,39}$/;
const RELATION = /^[a-z][a-z0-9_]{0,63}$/;

/** "Works On", "works-on", "WORKS ON" → "works_on"; undefined when nothing usable is left. */
export function snakeCase(value: string, max: number): string | undefined {
  const s = value
    .normalize('NFKC')
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return s.length > 0 && s.length <= max && /^[a-z]/.test(s) ? s : undefined;
}

export function isValidKind(kind: string): boolean {
  return KIND.test(kind);
}

export function isValidRelation(relation: string): boolean {
  return RELATION.test(relation);
}

/** Spacing inside a label carries no meaning; anything else (case included) is kept for display. */
export function cleanLabel(label: string): string {
  return label.normalize('NFKC').replace(/\s+/g, ' ').trim();
}

export function keyOf(ref: EntityRef): string {
  return `${ref.kind}\u0000${normaliseLabel(ref.label)}`;
}

interface Tally {
  entity: ExtractedEntity;
  first: number;
}

/**
 * The normalisation both extractors share: labels cleaned and bounded, entities deduplicated by
 * (kind, normalised label) with their mentions counted and the first spelling kept, relations
 * deduplicated (highest weight wins), self-loops dropped, a co-occurrence dropped where the same
 * pair has a stated relation, co-occurrences given one direction (so "A … B" and "B … A" are one
 * edge), and both lists capped: the most-mentioned entities and the heaviest relations stay.
 * Pure and order-preserving, so the same raw input always gives the same extraction.
 */
export function finaliseExtraction(raw: RawExtraction, limits: ExtractionLimits): Extraction {
  const tallies = new Map<string, Tally>();
  let order = 0;
  const note = (ref: EntityRef, properties: Record<string, unknown> | undefined, mention: boolean): string | undefined => {
    const label = cleanLabel(ref.label);
    // Control characters (NUL above all) cannot be stored and never belong in a name.
    if (label === '' || label.length > limits.maxLabelChars || /\p{Cc}/u.test(label) || !isValidKind(ref.kind)) return undefined;
    const key = keyOf({ label, kind: ref.kind });
    const known = tallies.get(key);
    if (known) {
      if (mention) known.entity.mentions += 1;
      if (properties && !known.entity.properties) known.entity.properties = properties;
    } else {
      tallies.set(key, { entity: { label, kind: ref.kind, mentions: 1, ...(properties ? { properties } : {}) }, first: order++ });
    }
    return key;
  };
  for (const e of raw.entities) note(e, e.properties, true);

  // Ends a relation names but the entity list forgot still become entities (LLM replies do this).
  const relations = raw.relations.flatMap((r) => {
    const source = note(r.source, undefined, false);
    const target = note(r.target, undefined, false);
    if (source === undefined || target === undefined || source === target) return [];
    if (!isValidRelation(r.relation) || !Number.isFinite(r.weight)) return [];
    return [{ source, target, relation: r.relation, weight: Math.min(1, Math.max(0, r.weight)), properties: r.properties }];
  });

  const kept = [...tallies.entries()]
    .sort(([, a], [, b]) => b.entity.mentions - a.entity.mentions || a.first - b.first)
    .slice(0, limits.maxEntities)
    .sort(([, a], [, b]) => a.first - b.first);
  const entities = new Map(kept.map(([key, t]) => [key, t.entity]));
  const refOf = (key: string): EntityRef => {
    const e = entities.get(key)!;
    return { label: e.label, kind: e.kind };
  };

  const stated = new Set<string>();
  for (const r of relations) {
    if (r.relation !== CO_OCCURRENCE) stated.add([r.source, r.target].sort().join('\u0001'));
  }
  const byId = new Map<string, ExtractedRelation & { rank: number }>();
  for (const [rank, r] of relations.entries()) {
    if (!entities.has(r.source) || !entities.has(r.target)) continue;
    let { source, target } = r;
    if (r.relation === CO_OCCURRENCE) {
      if (stated.has([source, target].sort().join('\u0001'))) continue;
      if (source > target) [source, target] = [target, source];
    }
    const id = `${source}\u0001${r.relation}\u0001${target}`;
    const known = byId.get(id);
    if (known) {
      known.weight = Math.max(known.weight, r.weight);
      continue;
    }
    byId.set(id, { source: refOf(source), target: refOf(target), relation: r.relation, weight: r.weight, ...(r.properties ? { properties: r.properties } : {}), rank });
  }
  const out = [...byId.values()]
    .sort((a, b) => b.weight - a.weight || a.rank - b.rank)
    .slice(0, limits.maxRelations)
    .map(({ rank: _rank, ...r }) => r);
  return { entities: [...entities.values()], relations: out };
}
