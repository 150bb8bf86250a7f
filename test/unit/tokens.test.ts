import { describe, expect, it } from 'vitest';
import { countTokens, truncateToTokens } from '../../src/obs/index.js';

describe('token counting', () => {
  it('counts BPE tokens, not characters', () => {
    expect(countTokens('')).toBe(0);
    expect(countTokens('hello world')).toBe(2);
    // A long word of one repeated letter is few tokens, far from chars/4 of unusual text.
    const code = 'const x = await fetch(url, { method: "POST" });';
    expect(countTokens(code)).not.toBe(Math.ceil(code.length / 4));
    expect(countTokens('日本語のテキスト')).toBeGreaterThan(0);
  });

  it('treats special-token text in user content as plain text', () => {
    expect(countTokens('before <|endoftext|> after')).toBeGreaterThan(3);
  });

  it('truncates on a token boundary to at most the budget', () => {
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(20);
    const cut = truncateToTokens(text, 15);
    expect(countTokens(cut)).toBeLessThanOrEqual(15);
    expect(text.startsWith(cut)).toBe(true);
    expect(truncateToTokens('short', 100)).toBe('short');
    expect(truncateToTokens('anything', 0)).toBe('');
  });

  it('never cuts inside a character: the result is always a prefix', () => {
    const text = '😀🎉👩‍👩‍👧‍👦 日本語のテキスト 🏳️‍🌈 done';
    for (let n = 0; n <= countTokens(text); n++) {
      const cut = truncateToTokens(text, n);
      expect(text.startsWith(cut), `budget ${n}: ${JSON.stringify(cut)}`).toBe(true);
      expect(countTokens(cut)).toBeLessThanOrEqual(n);
    }
  });
});
