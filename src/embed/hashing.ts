import { AeternaError } from '../protocol/index.js';
import type { Embedder } from './types.js';
import { normalizeInPlace } from './vectors.js';

/**
 * Feature weights. Unigrams carry the meaning; bigrams reward shared phrasing ("deploy pipeline");
 * character trigrams let misspellings and word forms the stemmer misses still overlap, but are
 * many per word, so each one weighs little.
 */
const UNIGRAM_WEIGHT = 1.0;
const BIGRAM_WEIGHT = 0.5;
const TRIGRAM_WEIGHT = 0.25;

/**
 * Similarities are the plain cosine of these features: no constant offset. Changing one of a
 * sentence's ~10 content words therefore costs about a tenth of the similarity (≈0.88-0.92), so at
 * the default dedup threshold (0.95) only near-verbatim repeats merge (case, punctuation, spacing,
 * a typo, a plural). Inflating every score to push one-word edits over 0.95 was tried and dropped:
 * it put unrelated texts at ~0.65, which made `threshold` meaningless and let importance outrank
 * relevance in search.
 */

/** Dropped from unigrams and bigrams: frequent enough to make every pair of texts look alike. */
const STOP_WORDS = new Set(
  (
    'a an the and or but if of in on at to for from by with about as into onto than then so ' +
    'is are was were be been being am do does did doing have has had having ' +
    'it its this that these those there here ' +
    'i me my we us our you your he him his she her they them their ' +
    'what which who whom whose how when where why ' +
    'can could will would shall should may might must just also very too'
  ).split(' '),
);

/**
 * Scripts written without spaces become one token per character (as CJK search analyzers do);
 * otherwise a whole sentence would be one "word". Letter runs exclude them so "abc漢字" splits.
 */
const SPACELESS = String.raw`\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}`;
const TOKEN = new RegExp(
  String.raw`[${SPACELESS}]|(?:(?![${SPACELESS}])[\p{L}\p{M}\p{N}])+|\p{Extended_Pictographic}`,
  'gu',
);
const APOSTROPHES = /['’]/g;
const VOWEL = /[aeiouy]/;

function hasVowel(stem: string): boolean {
  return VOWEL.test(stem);
}

/** "running" → "runn" → "run", but "falling" keeps its "ll" (Porter's rule). */
function undouble(stem: string): string {
  const last = stem.at(-1);
  return stem.length > 2 && last === stem.at(-2) && last !== undefined && !'lsz'.includes(last) ? stem.slice(0, -1) : stem;
}

/**
 * A deliberately light English stemmer: enough that "uses", "use", "used" and "using" meet (all
 * become "us"), cheap, and harmless on other languages, whose words rarely end in these ASCII
 * suffixes. Words of three letters or fewer are only stripped of a final "e".
 */
function stem(word: string): string {
  let w = word;
  if (w.length > 3) {
    if (w.endsWith('ies') && w.length > 4) w = `${w.slice(0, -3)}y`;
    else if (w.endsWith('sses')) w = w.slice(0, -2);
    else if (/(?:[sxz]|ch|sh)es$/.test(w)) w = w.slice(0, -2);
    else if (w.endsWith('s') && !/(?:ss|us|is)$/.test(w)) w = w.slice(0, -1);
    else if (w.endsWith('ing') && hasVowel(w.slice(0, -3))) w = undouble(w.slice(0, -3));
    else if (w.endsWith('ed') && !w.endsWith('eed') && hasVowel(w.slice(0, -2))) w = undouble(w.slice(0, -2));
    else if (w.endsWith('ly') && w.length > 5 && !w.endsWith('ily')) w = w.slice(0, -2);
  }
  return w.length >= 3 && w.endsWith('e') ? w.slice(0, -1) : w;
}

/** FNV-1a over UTF-16 code units, then murmur3's finaliser so every output bit depends on every input bit. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Offline, deterministic embeddings by signed feature hashing: no model download, microseconds per
 * text. Quality is lexical (shared words and word forms), not semantic; point AETERNA_EMBED_URL
 * at a real model for that.
 */
export class HashingEmbedder implements Embedder {
  readonly model: string;
  readonly dims: number;

  constructor(dims = 384) {
    if (!Number.isInteger(dims) || dims < 8 || dims > 4096) {
      throw new AeternaError('INVALID_ARGUMENT', `hashing embedder dims must be an integer in [8, 4096], got ${dims}`);
    }
    this.dims = dims;
    this.model = `aeterna-hash-v1-${dims}`;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    return texts.map((text) => this.embedOne(text));
  }

  /** The unit vector of the text's features alone, or undefined when it has none. */
  private featureVector(text: string): Float32Array | undefined {
    const v = new Float32Array(this.dims);
    let any = false;
    const add = (feature: string, weight: number): void => {
      const h = hash32(feature);
      // Dimension 0 is reserved for featureless text; the top bit picks the sign so collisions cancel on average.
      const index = 1 + ((h & 0x7fffffff) % (this.dims - 1));
      v[index] = (v[index] ?? 0) + (h & 0x80000000 ? -weight : weight);
      any = true;
    };

    const words = text.normalize('NFKC').toLowerCase().replace(APOSTROPHES, '').match(TOKEN) ?? [];
    const content = words.filter((w) => !STOP_WORDS.has(w));
    // A text of nothing but stop words ("to be or not to be") still deserves its own vector.
    const trigramSource = content.length > 0 ? content : words;
    for (const word of trigramSource) {
      const marked = `<${word}>`;
      for (let i = 0; i + 3 <= marked.length; i++) add(`c:${marked.slice(i, i + 3)}`, TRIGRAM_WEIGHT);
    }
    const stems = content.map(stem);
    stems.forEach((s, i) => {
      add(`u:${s}`, UNIGRAM_WEIGHT);
      const next = stems[i + 1];
      if (next !== undefined) add(`b:${s} ${next}`, BIGRAM_WEIGHT);
    });
    return any && normalizeInPlace(v) ? v : undefined;
  }

  private embedOne(text: string): Float32Array {
    const features = this.featureVector(text);
    if (features) return features;
    // No letters, digits or pictographs (empty, punctuation): one shared valid unit vector.
    const out = new Float32Array(this.dims);
    out[0] = 1;
    return out;
  }
}
