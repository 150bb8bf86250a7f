import { describe, expect, it } from 'vitest';
import { contentHash, cosine, HashingEmbedder, parsePgVector, toPgVector } from '../../src/embed/index.js';

const embedder = new HashingEmbedder();

async function embedOne(text: string): Promise<Float32Array> {
  const [v] = await embedder.embed([text]);
  if (!v) throw new Error('no vector');
  return v;
}

async function similarity(a: string, b: string): Promise<number> {
  return cosine(await embedOne(a), await embedOne(b));
}

function norm(v: Float32Array): number {
  return Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));
}

/** Fifteen words each; the second of every pair changes exactly one content word, and so one fact. */
const NEAR_DUPLICATES: [string, string][] = [
  [
    'The planning meeting with the design team is scheduled for Tuesday morning in room four',
    'The planning meeting with the design team is scheduled for Wednesday morning in room four',
  ],
  [
    'Bob said the staging database should be migrated to PostgreSQL before the end of March',
    'Bob said the staging database should be migrated to PostgreSQL before the end of April',
  ],
  [
    'Alice prefers dark mode in the editor and uses a large monospace font for reviews',
    'Alice prefers light mode in the editor and uses a large monospace font for reviews',
  ],
];

describe('HashingEmbedder', () => {
  it('names its vector space by version and dimensions', () => {
    expect(embedder.model).toBe('aeterna-hash-v1-384');
    expect(embedder.dims).toBe(384);
    expect(new HashingEmbedder(64).model).toBe('aeterna-hash-v1-64');
    expect(() => new HashingEmbedder(3)).toThrow(/dims/);
  });

  it('is deterministic across calls and instances', async () => {
    const text = 'The deploy pipeline uses GitHub Actions for CI';
    const [a, b] = await embedder.embed([text, text]);
    const [c] = await new HashingEmbedder().embed([text]);
    expect(Array.from(a ?? [])).toEqual(Array.from(b ?? []));
    expect(Array.from(a ?? [])).toEqual(Array.from(c ?? []));
  });

  it('returns one unit vector of the right length per input, in order', async () => {
    const texts = ['first memory', 'second memory', 'first memory'];
    const vectors = await embedder.embed(texts);
    expect(vectors).toHaveLength(3);
    for (const v of vectors) {
      expect(v).toBeInstanceOf(Float32Array);
      expect(v).toHaveLength(384);
      expect(norm(v)).toBeCloseTo(1, 5);
    }
    expect(cosine(vectors[0] as Float32Array, vectors[2] as Float32Array)).toBeCloseTo(1, 6);
    expect(await embedder.embed([])).toEqual([]);
  });

  it.each([
    ['empty', ''],
    ['whitespace', '  \n\t '],
    ['punctuation', '?!… — ...'],
    ['stop words only', 'the of is and to'],
    ['emoji only', '🎉🚀👍🏽'],
    ['Chinese', '东京今天的天气很好'],
    ['Japanese', '東京の天気は晴れです'],
    ['Russian', 'Развёртывание использует GitHub Actions'],
    ['Arabic', 'يستخدم خط النشر'],
    ['Hindi with combining marks', 'तैनाती पाइपलाइन'],
    ['lone surrogate', 'broken \ud800 text'],
    ['very long', 'word '.repeat(20_000)],
  ])('gives a finite unit vector for %s text', async (_label, text) => {
    const v = await embedOne(text);
    expect(v).toHaveLength(384);
    expect(v.every(Number.isFinite)).toBe(true);
    expect(norm(v)).toBeCloseTo(1, 5);
  });

  it('tells apart texts that differ only in non-Latin words or emoji', async () => {
    expect(await similarity('🎉', '🚀')).toBeLessThan(0.9);
    expect(await similarity('東京の天気は晴れです', '大阪の会議は明日です')).toBeLessThan(0.9);
  });

  it('ignores case, punctuation and spacing', async () => {
    expect(await similarity('The deploy pipeline uses GitHub Actions.', '  the DEPLOY pipeline   uses github actions ')).toBeCloseTo(1, 6);
  });

  it('scores identical text 1', async () => {
    const text = 'Alice prefers dark mode in the editor';
    expect(await similarity(text, text)).toBeCloseTo(1, 6);
  });

  it('ranks a paraphrase sharing words above an unrelated memory', async () => {
    const query = 'which CI does the deploy pipeline use';
    const related = await similarity(query, 'The deploy pipeline uses GitHub Actions for CI');
    const unrelated = await similarity(query, 'Alice prefers dark mode in the editor');
    console.info(`[embed-hashing] paraphrase ${related.toFixed(4)}, unrelated ${unrelated.toFixed(4)}`);
    expect(related - unrelated).toBeGreaterThan(0.2);
  });

  it('lets word forms meet through the stemmer', async () => {
    const [use, uses, using, used] = await embedder.embed(['use', 'uses', 'using', 'used']);
    const other = await embedOne('prefer');
    for (const v of [uses, using, used]) {
      expect(cosine(use as Float32Array, v as Float32Array)).toBeGreaterThan(cosine(use as Float32Array, other) + 0.2);
    }
  });

  it('scores near-verbatim repeats at or above the 0.95 dedup threshold', async () => {
    const base = 'Bob said the staging database should be migrated to PostgreSQL before the end of March';
    const repeats = [
      'bob said the staging database should be migrated to postgresql before the end of march.',
      'Bob said  the staging database should be migrated to PostgreSQL, before the end of March!',
      'Bob said the staging databases should be migrated to PostgreSQL before the end of March',
    ];
    for (const repeat of repeats) {
      const score = await similarity(base, repeat);
      console.info(`[embed-hashing] near-verbatim ${score.toFixed(4)}: ${repeat}`);
      expect(score).toBeGreaterThanOrEqual(0.95);
    }
  });

  it('scores a one-word change in a 15-word sentence as close, but below the dedup threshold', async () => {
    // The facts differ (Tuesday vs Wednesday): merging them would lose one, so they must not dedup.
    for (const [a, b] of NEAR_DUPLICATES) {
      expect(a.split(' ')).toHaveLength(15);
      expect(b.split(' ')).toHaveLength(15);
      const score = await similarity(a, b);
      console.info(`[embed-hashing] one word changed ${score.toFixed(4)}: ${b}`);
      expect(score).toBeGreaterThan(0.8);
      expect(score).toBeLessThan(0.95);
    }
  });

  it('scores sentences on different topics well below the dedup threshold', async () => {
    const sentences = [...NEAR_DUPLICATES.map(([a]) => a), 'The cat sat on the mat', 'Quarterly revenue grew by twelve percent'];
    for (let i = 0; i < sentences.length; i++) {
      for (let j = i + 1; j < sentences.length; j++) {
        const score = await similarity(sentences[i] as string, sentences[j] as string);
        expect(score).toBeLessThan(0.3);
      }
    }
  });
});

describe('vector helpers', () => {
  it('computes true cosine, not just the dot product', () => {
    expect(cosine(Float32Array.of(2, 0), Float32Array.of(5, 0))).toBeCloseTo(1, 6);
    expect(cosine(Float32Array.of(1, 0), Float32Array.of(0, 3))).toBeCloseTo(0, 6);
    expect(cosine(Float32Array.of(1, 1), Float32Array.of(-2, -2))).toBeCloseTo(-1, 6);
    expect(cosine(Float32Array.of(0, 0), Float32Array.of(1, 0))).toBe(0);
    expect(() => cosine(Float32Array.of(1), Float32Array.of(1, 0))).toThrow(/dimensions/);
  });

  it('hashes content as sha256 hex of the exact text', () => {
    expect(contentHash('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(contentHash('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(contentHash('a\r\n')).not.toBe(contentHash('a\n'));
    expect(contentHash('a ')).not.toBe(contentHash('a'));
  });

  it('round-trips vectors through the pgvector text form at float32 precision', async () => {
    const v = await embedOne('The deploy pipeline uses GitHub Actions for CI');
    const text = toPgVector(v);
    expect(text).toMatch(/^\[-?[\d.e-]+(,-?[\d.e-]+)*\]$/);
    expect(Array.from(parsePgVector(text))).toEqual(Array.from(v));
    expect(toPgVector(Float32Array.of(0.5, -1, 0, 1e-7))).toBe('[0.5,-1,0,1e-7]');
    expect(toPgVector(Float32Array.of(0.1))).toBe('[0.1]');
    expect(Array.from(parsePgVector(' [1, -2.5 ,3e2] '))).toEqual([1, -2.5, 300]);
  });

  it.each(['', '[]', '1,2', '[1,,2]', '[1,abc]', '[NaN]', '[Infinity]', '[1e39]', '[0x10]'])('rejects pgvector text %j', (text) => {
    expect(() => parsePgVector(text)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('refuses to write NaN into pgvector text', () => {
    expect(() => toPgVector(Float32Array.of(Number.NaN))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => toPgVector(new Float32Array(0))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
