import { describe, expect, it } from 'vitest';
import { ExtractiveSummarizer, fitToTokens, splitSentences } from '../../src/cca/index.js';
import { countTokens } from '../../src/obs/index.js';
import { SUMMARY_LEVELS } from '../../src/protocol/index.js';

const CAPS = { sentence: 50, paragraph: 200, detailed: 500 };
const summarizer = new ExtractiveSummarizer(CAPS);

const MIGRATION = `We migrated the billing database from MySQL 5.7 to PostgreSQL 16 over the weekend of March 3rd. The migration used logical replication with pglogical, so the billing service stayed online during the copy. Dr. Smith from the data team reviewed the schema changes, e.g. the new invoice partitioning. Lunch was pizza. The cutover took 14 minutes of read-only mode, and invoice generation resumed at 02:14 UTC.
Open issues:
- The nightly reconciliation job still reads from the old MySQL replica and must be pointed at PostgreSQL.
- Two reports use MySQL-specific GROUP_CONCAT and fail on PostgreSQL.
Everyone agreed the weather was nice. The rollback plan (restore the MySQL snapshot and replay the binlog) was never needed. Next step: decommission the MySQL cluster after 30 days of PostgreSQL running cleanly.`;

/** ~1,400 tokens: 60 sentences, so every level has to choose. */
const LONG = Array.from(
  { length: 60 },
  (_, i) => `Sentence number ${i} talks about ${['cache', 'queue', 'index', 'shard'][i % 4]} tuning and the latency budget of service ${i % 7}.`,
).join(' ');

/** Where each chosen sentence starts in the source; they must come in the source's order. */
function positionsIn(source: string, summary: string): number[] {
  const sentences = splitSentences(source).map((s) => s.text);
  return splitSentences(summary).map((s) => {
    expect(sentences, `"${s.text}" is a sentence of the source`).toContain(s.text);
    return source.indexOf(s.text);
  });
}

describe('extractive summariser', () => {
  it('keeps a memory shorter than every cap as its own summary', async () => {
    const text = 'Deploys freeze on Fridays after 3pm.';
    expect(await summarizer.summarize(text)).toEqual({ sentence: text, paragraph: text, detailed: text });
  });

  it('keeps every level within its cap, picking whole sentences in their original order', () => {
    expect(countTokens(LONG)).toBeGreaterThan(CAPS.detailed);
    const levels = summarizer.levels(LONG);
    for (const level of SUMMARY_LEVELS) {
      const tokens = countTokens(levels[level]);
      expect(tokens, level).toBeLessThanOrEqual(CAPS[level]);
      // Greedy packing leaves less than one more sentence (~18 tokens) unused.
      expect(tokens, level).toBeGreaterThan(CAPS[level] - 20);
      const positions = positionsIn(LONG, levels[level]);
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
    }
  });

  it('uses the memory itself at the levels it fits and summarises only below them', () => {
    const total = countTokens(MIGRATION);
    expect(total).toBeGreaterThan(CAPS.sentence);
    expect(total).toBeLessThanOrEqual(CAPS.paragraph);
    const levels = summarizer.levels(MIGRATION);
    expect(levels.paragraph).toBe(MIGRATION);
    expect(levels.detailed).toBe(MIGRATION);
    expect(countTokens(levels.sentence)).toBeLessThanOrEqual(CAPS.sentence);
  });

  it('prefers the sentences carrying the text\'s main terms over filler', () => {
    const { sentence } = summarizer.levels(MIGRATION);
    expect(sentence).toContain('PostgreSQL 16');
    expect(sentence).not.toContain('pizza');
    expect(sentence).not.toContain('weather');
  });

  it('cuts the best sentence at the cap as a last resort when no sentence fits', () => {
    const runOn = Array.from({ length: 400 }, (_, i) => `word${i % 37}`).join(' ');
    const levels = summarizer.levels(runOn);
    for (const level of SUMMARY_LEVELS) {
      expect(countTokens(levels[level]), level).toBeLessThanOrEqual(CAPS[level]);
      expect(countTokens(levels[level]), level).toBeGreaterThan(CAPS[level] - 3);
      expect(runOn.startsWith(levels[level]), level).toBe(true);
    }
  });

  it('joins sentences from separate lines (list items) with a newline', () => {
    const checklist = 'Release checklist:\n- tag the release build in git\n- bump the helm chart version\n- announce the release in the channel\n- update the release notes page';
    const { sentence } = new ExtractiveSummarizer({ sentence: 20, paragraph: 20, detailed: 20 }).levels(checklist);
    const lines = sentence.split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(checklist.split('\n')).toContain(line);
  });
});

describe('sentence splitting', () => {
  it('does not end sentences at abbreviations and initials, and ends them at line breaks', () => {
    const sentences = splitSentences('Dr. Smith met J. R. Tolkien, e.g. at 10 a.m. on Monday. It rained!\n- first item\n- second item\n日本語の文です。次の文です。');
    expect(sentences.map((s) => s.text)).toEqual([
      'Dr. Smith met J. R. Tolkien, e.g. at 10 a.m. on Monday.',
      'It rained!',
      '- first item',
      '- second item',
      '日本語の文です。',
      '次の文です。',
    ]);
    expect(sentences.map((s) => s.startsLine)).toEqual([true, false, true, true, true, false]);
  });

  it('gives no sentences for blank text', () => {
    expect(splitSentences(' \n\t\n')).toEqual([]);
  });
});

describe('fitToTokens', () => {
  it('returns a prefix within the cap, also where a token boundary splits a character', () => {
    const texts = ['😀🎉🚀 emoji and 日本語のテキスト mixed', 'plain words '.repeat(50), 'a'.repeat(300)];
    for (const text of texts) {
      for (let cap = 1; cap <= 12; cap++) {
        const cut = fitToTokens(text, cap);
        expect(countTokens(cut)).toBeLessThanOrEqual(cap);
        expect(text.startsWith(cut)).toBe(true);
      }
    }
    expect(fitToTokens('short', 10)).toBe('short');
  });
});
