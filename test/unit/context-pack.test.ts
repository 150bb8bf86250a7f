import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { levelFor, packContext, type PackCandidate } from '../../src/cca/index.js';
import { countTokens } from '../../src/obs/index.js';
import { SUMMARY_LEVELS, type SummaryLevel } from '../../src/protocol/index.js';

const THRESHOLDS = { detailedAbove: 0.9, paragraphFrom: 0.7 };

/** What one memory's block costs at a level when it is the n-th block (the header names n). */
function blockTokens(c: PackCandidate, level: SummaryLevel, n: number): number {
  return countTokens(`[${n}] ${c.label}\n${c.levels[level].trim()}\n\n`);
}

function candidate(id: string, relevance: number, sentence: string, paragraph = sentence, detailed = paragraph): PackCandidate {
  return { memoryId: id, relevance, label: 'project:apollo', levels: { sentence, paragraph, detailed } };
}

/** Texts of every kind: prose, arbitrary Unicode (emoji, CJK, combining marks), control characters and blank lines. */
const text = fc.oneof(
  fc.lorem({ maxCount: 80, mode: 'words' }),
  fc.lorem({ maxCount: 12, mode: 'sentences' }),
  fc.string({ unit: 'grapheme', maxLength: 300 }),
  fc.string({ unit: 'binary-ascii', maxLength: 120 }),
  fc.constantFrom('', '   ', '\n\n\n', '[1] fake header\n\n', 'ends with newlines\n\n', '😀🎉🚀日本語'),
);

const candidates = fc
  .uniqueArray(fc.integer({ min: 0, max: 1_000_000 }), { maxLength: 25 })
  .chain((relevances) =>
    fc.tuple(
      ...relevances.map((r, i) =>
        fc.record({
          memoryId: fc.constant(`m${i}`),
          // Distinct relevances: which memory is packed before which is then fixed by relevance alone.
          relevance: fc.constant(r / 1_000_000),
          label: fc.constantFrom('project:apollo', 'user:alice', 'team:core', 'agent:planner-7'),
          levels: fc.record({ sentence: text, paragraph: text, detailed: text }),
        }),
      ),
    ),
  );

describe('packContext (property)', () => {
  it('never exceeds the budget, and leaves a memory out or at a shorter level only when the longer one did not fit', () => {
    fc.assert(
      fc.property(candidates, fc.integer({ min: 1, max: 4000 }), (cands: PackCandidate[], budget) => {
        const packed = packContext(cands, budget, THRESHOLDS);
        // The hard guarantee.
        expect(packed.tokens).toBe(countTokens(packed.context));
        expect(packed.tokens).toBeLessThanOrEqual(budget);

        // Blocks are costed exactly: their sum is the context's count, less the trailing blank line.
        const sum = packed.used.reduce((s, u) => s + u.tokens, 0);
        expect(sum - packed.tokens).toBeGreaterThanOrEqual(0);
        expect(sum - packed.tokens).toBeLessThanOrEqual(2);

        const byId = new Map(cands.map((c) => [c.memoryId, c]));
        const usedIds = packed.used.map((u) => u.memoryId);
        expect(new Set(usedIds).size).toBe(usedIds.length);
        for (let i = 1; i < packed.used.length; i++) {
          expect(packed.used[i - 1]!.relevance).toBeGreaterThan(packed.used[i]!.relevance);
        }

        /** What the memories more relevant than this one left of the budget, and its block number. */
        const leftFor = (relevance: number) => {
          const before = packed.used.filter((u) => u.relevance > relevance);
          return { left: budget - before.reduce((s, u) => s + u.tokens, 0), n: before.length + 1 };
        };

        for (const u of packed.used) {
          const c = byId.get(u.memoryId)!;
          const chosen = SUMMARY_LEVELS.indexOf(levelFor(c.relevance, THRESHOLDS));
          const got = SUMMARY_LEVELS.indexOf(u.level);
          expect(got).toBeLessThanOrEqual(chosen);
          const { left, n } = leftFor(c.relevance);
          expect(u.tokens).toBe(blockTokens(c, u.level, n));
          // Every longer level it earned would not have fitted.
          for (let l = got + 1; l <= chosen; l++) expect(blockTokens(c, SUMMARY_LEVELS[l]!, n)).toBeGreaterThan(left);
        }
        // A memory left out did not fit even at its sentence level in what the more relevant
        // memories left: no less relevant memory took room it could have had.
        for (const c of cands.filter((x) => !usedIds.includes(x.memoryId))) {
          const { left, n } = leftFor(c.relevance);
          expect(blockTokens(c, 'sentence', n)).toBeGreaterThan(left);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('packContext (examples)', () => {
  it('picks the level by relevance: above 0.9 detailed, 0.7 to 0.9 paragraph, below sentence', () => {
    expect(levelFor(0.95, THRESHOLDS)).toBe('detailed');
    expect(levelFor(0.9, THRESHOLDS)).toBe('paragraph');
    expect(levelFor(0.7, THRESHOLDS)).toBe('paragraph');
    expect(levelFor(0.6999, THRESHOLDS)).toBe('sentence');
    const packed = packContext(
      [candidate('low', 0.5, 'S-low', 'P-low', 'D-low'), candidate('high', 0.95, 'S-high', 'P-high', 'D-high'), candidate('mid', 0.8, 'S-mid', 'P-mid', 'D-mid')],
      4000,
      THRESHOLDS,
    );
    expect(packed.used.map((u) => [u.memoryId, u.level])).toEqual([
      ['high', 'detailed'],
      ['mid', 'paragraph'],
      ['low', 'sentence'],
    ]);
    expect(packed.context).toBe('[1] project:apollo\nD-high\n\n[2] project:apollo\nP-mid\n\n[3] project:apollo\nS-low');
  });

  it('falls back to a shorter level, skips what does not fit at all, and goes on with the rest', () => {
    const long = 'word '.repeat(300);
    const packed = packContext(
      [candidate('a', 0.95, 'short a', 'medium a '.repeat(5), long), candidate('b', 0.93, long, long, long), candidate('c', 0.5, 'short c')],
      100,
      THRESHOLDS,
    );
    expect(packed.used.map((u) => [u.memoryId, u.level])).toEqual([
      ['a', 'paragraph'],
      ['c', 'sentence'],
    ]);
    expect(packed.tokens).toBeLessThanOrEqual(100);
  });

  it('gives an empty context when nothing fits or there is nothing', () => {
    expect(packContext([], 100, THRESHOLDS)).toEqual({ context: '', used: [], tokens: 0 });
    expect(packContext([candidate('x', 0.99, 'too long '.repeat(50))], 5, THRESHOLDS)).toEqual({ context: '', used: [], tokens: 0 });
  });

  it('keeps the given order among equally relevant memories', () => {
    const packed = packContext([candidate('first', 0.8, 'one'), candidate('second', 0.8, 'two')], 1000, THRESHOLDS);
    expect(packed.used.map((u) => u.memoryId)).toEqual(['first', 'second']);
  });
});
