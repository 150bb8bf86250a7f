/**
 * What an extractor finds in one memory's text. Entities are identified by (kind, label) — the
 * pair `nodeIdFor` hashes — so a relation names its ends the same way.
 *
 * Kinds from the rule extractor:
 * - `entity`: a proper-noun phrase or an acronym ("Acme Corp", "New York City", "AWS");
 * - `code`: an identifier, path, call or `backticked` span (parseInput, MemoryService,
 *   snake_case, src/foo.ts, pkg.module, render());
 * - `url`: an http(s) or www. address, or a bare domain (acme.com);
 * - `email`.
 * The LLM extractor adds the model's own kinds (person, organization, …), normalised to snake_case.
 */
export interface EntityRef {
  label: string;
  kind: string;
}

export interface ExtractedEntity extends EntityRef {
  properties?: Record<string, unknown>;
  /** How often the text mentions it (≥ 1). */
  mentions: number;
}

export interface ExtractedRelation {
  source: EntityRef;
  target: EntityRef;
  /** snake_case: uses, depends_on, owns, calls, imports, extends, implements, part_of, works_on, manages, reports_to, replaced, co_occurs, … */
  relation: string;
  /** 0..1; a stated relation is 1, a co-occurrence 0.3. */
  weight: number;
  properties?: Record<string, unknown>;
}

export interface Extraction {
  entities: ExtractedEntity[];
  relations: ExtractedRelation[];
}

export interface Extractor {
  /** Same text, same extraction, for the rule extractor; the LLM one is as stable as its model. */
  extract(text: string, opts?: { signal?: AbortSignal }): Promise<Extraction>;
}

/** Bounds on what one memory can add to the graph; a long memory keeps its most-mentioned parts. */
export interface ExtractionLimits {
  maxEntities: number;
  maxRelations: number;
  /** Longer labels are dropped, not cut: a cut label would name a different thing. */
  maxLabelChars: number;
  /** Co-occurrence pairs per sentence, nearest mentions first. */
  maxPairsPerSentence: number;
}

export const DEFAULT_EXTRACTION_LIMITS: ExtractionLimits = {
  maxEntities: 50,
  maxRelations: 100,
  maxLabelChars: 200,
  maxPairsPerSentence: 10,
};

export const RELATION_WEIGHT = 1;
export const CO_OCCURRENCE = 'co_occurs';
export const CO_OCCURRENCE_WEIGHT = 0.3;
