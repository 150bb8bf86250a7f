import { AeternaError } from '../protocol/index.js';
import { isValidId } from '../tenancy/index.js';
import { HashingEmbedder } from './hashing.js';
import type { SemanticEntry, SemanticIndex, SemanticMatch, SemanticScope } from './types.js';

/**
 * How the semantic level finds a near-identical text without paying for its embedding: the
 * offline hashing embedder's vector of the text (local, microseconds) is its lexical sketch, and
 * two texts are near-identical when their sketches' cosine reaches the threshold (0.98).
 *
 * What that means, measured on this sketch: texts that differ only in case, punctuation,
 * whitespace, stop words ("the", "is", "her", …) or the light stemmer's inflections ("pipelines"
 * vs "pipeline") score 0.98-1.0. Replacing one content word scores ~0.88-0.92 in a 10-word
 * sentence (a miss) but ~0.98 in a 70-word paragraph and higher in longer texts (a hit): past a
 * few dozen words, a one-word edit reuses the earlier text's embedding. Word order barely counts
 * ("dog bites man" vs "man bites dog" ≈ 0.88). It is lexical, not semantic: paraphrases with other
 * words are misses. Texts with no letters, digits or pictographs have no sketch and skip the level.
 */
export const SKETCH_DIMS = 256;
const sketcher = new HashingEmbedder(SKETCH_DIMS);

/** int8 keeps a sketch at 256 bytes (Redis reads every candidate of a scope per lookup). */
function quantise(v: Float32Array): Int8Array {
  let max = 0;
  for (const x of v) max = Math.max(max, Math.abs(x));
  const out = new Int8Array(v.length);
  if (max === 0) return out;
  const scale = 127 / max;
  for (let i = 0; i < v.length; i++) out[i] = Math.round((v[i] ?? 0) * scale);
  return out;
}

/** The lexical sketches of `texts`; undefined for a text without features. */
export async function sketchTexts(texts: readonly string[]): Promise<(Int8Array | undefined)[]> {
  const vectors = await sketcher.embed(texts);
  // The hashing embedder reserves dimension 0 for featureless text: all such texts share one vector.
  return vectors.map((v) => (v[0] === 0 ? quantise(v) : undefined));
}

function squaredNorm(v: Int8Array): number {
  let sum = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i] as number;
    sum += x * x;
  }
  return sum;
}

function dot(a: Int8Array, b: Int8Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] as number) * (b[i] as number);
  return sum;
}

/** Cosine of two int8 sketches (0 when either has no direction or their sizes differ). */
export function sketchCosine(a: Int8Array, b: Int8Array): number {
  if (a.length !== b.length) return 0;
  const norms = squaredNorm(a) * squaredNorm(b);
  return norms === 0 ? 0 : dot(a, b) / Math.sqrt(norms);
}

/** A stored sketch and whatever identifies its text (a hash, or Redis's raw member). */
export interface Candidate<K> {
  key: K;
  sketch: Int8Array;
}

/**
 * The best candidate per sketch, at or above `minSimilarity`. Norms are computed once per
 * sketch and candidate: this loop is the semantic level's whole CPU cost per lookup.
 */
export function bestMatches<K>(
  sketches: readonly Int8Array[],
  candidates: Iterable<Candidate<K>>,
  minSimilarity: number,
): ({ key: K; similarity: number } | undefined)[] {
  const best: ({ key: K; similarity: number } | undefined)[] = sketches.map(() => undefined);
  const norms = sketches.map(squaredNorm);
  for (const candidate of candidates) {
    const norm = squaredNorm(candidate.sketch);
    if (norm === 0) continue;
    sketches.forEach((sketch, i) => {
      const n = (norms[i] as number) * norm;
      if (n === 0 || sketch.length !== candidate.sketch.length) return;
      const similarity = dot(sketch, candidate.sketch) / Math.sqrt(n);
      if (similarity >= minSimilarity && similarity > (best[i]?.similarity ?? -1)) best[i] = { key: candidate.key, similarity };
    });
  }
  return best;
}

/** Validated like the exact level's keys: the tenant and the model name which vector space it is. */
export function scopeKey(scope: SemanticScope): string {
  if (!isValidId(scope.tenantId)) throw new AeternaError('INVALID_ARGUMENT', 'embedding cache: invalid tenant id');
  if (scope.model === '') throw new AeternaError('INVALID_ARGUMENT', 'embedding cache: model must not be empty');
  return `t:${scope.tenantId}:emb:${scope.model}`;
}

export interface SemanticIndexOptions {
  ttlSec: number;
  /** Recent texts kept per (tenant, model): the window a lookup compares against. */
  maxPerScope: number;
  now?: () => number;
}

interface Held {
  sketch: Int8Array;
  at: number;
}

/**
 * In-process semantic level (embedded mode). Each scope keeps its newest `maxPerScope` texts in
 * insertion order; `maxEntries` bounds all scopes together, evicting from the scope written to
 * least recently, so one busy tenant cannot grow the process without limit.
 */
export class MemorySemanticIndex implements SemanticIndex {
  private readonly scopes = new Map<string, Map<string, Held>>();
  private total = 0;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: SemanticIndexOptions & { maxEntries: number }) {
    validateOptions(opts);
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 1) throw new AeternaError('INVALID_ARGUMENT', 'semantic cache maxEntries must be a positive integer');
    this.ttlMs = opts.ttlSec * 1000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.total;
  }

  async nearest(scope: SemanticScope, sketches: readonly Int8Array[], minSimilarity: number): Promise<(SemanticMatch | undefined)[]> {
    const entries = this.scopes.get(scopeKey(scope));
    if (!entries) return sketches.map(() => undefined);
    const oldest = this.now() - this.ttlMs;
    const live: Candidate<string>[] = [];
    for (const [contentHash, held] of entries) {
      if (held.at <= oldest) this.remove(entries, contentHash);
      else live.push({ key: contentHash, sketch: held.sketch });
    }
    return bestMatches(sketches, live, minSimilarity).map((m) => (m ? { contentHash: m.key, similarity: m.similarity } : undefined));
  }

  async add(scope: SemanticScope, entries: readonly SemanticEntry[]): Promise<void> {
    const key = scopeKey(scope);
    const held = this.scopes.get(key) ?? new Map<string, Held>();
    // Re-inserting moves the scope to the back: the front is the one written to least recently.
    this.scopes.delete(key);
    this.scopes.set(key, held);
    const at = this.now();
    for (const entry of entries) {
      if (held.delete(entry.contentHash)) this.total--;
      held.set(entry.contentHash, { sketch: entry.sketch.slice(), at });
      this.total++;
    }
    for (const oldest of held.keys()) {
      if (held.size <= this.opts.maxPerScope) break;
      this.remove(held, oldest);
    }
    for (const [k, scopeEntries] of this.scopes) {
      if (this.total <= this.opts.maxEntries) break;
      for (const oldest of scopeEntries.keys()) {
        if (this.total <= this.opts.maxEntries) break;
        this.remove(scopeEntries, oldest);
      }
      if (scopeEntries.size === 0) this.scopes.delete(k);
    }
  }

  async close(): Promise<void> {
    this.scopes.clear();
    this.total = 0;
  }

  private remove(entries: Map<string, Held>, contentHash: string): void {
    if (entries.delete(contentHash)) this.total--;
  }
}

export function validateOptions(opts: SemanticIndexOptions): void {
  if (!Number.isInteger(opts.ttlSec) || opts.ttlSec < 1) throw new AeternaError('INVALID_ARGUMENT', 'semantic cache ttlSec must be a positive integer');
  if (!Number.isInteger(opts.maxPerScope) || opts.maxPerScope < 1) throw new AeternaError('INVALID_ARGUMENT', 'semantic cache maxPerScope must be a positive integer');
}
