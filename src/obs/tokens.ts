import { countTokens as countBpe, decode, encode } from 'gpt-tokenizer';

/**
 * Token counts with a real BPE tokenizer (o200k_base, gpt-tokenizer's default: the GPT-4o family),
 * never chars/4. Budgets, summaries and context packing all count with this one function, so a
 * budget means the same thing everywhere. User text is text: a `<|endoftext|>` in a memory is
 * counted as characters, not refused as a special token.
 */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

export function countTokens(text: string): number {
  return text.length === 0 ? 0 : countBpe(text, PLAIN_TEXT);
}

/** The longest prefix of `text` that fits in `maxTokens` tokens (cut on a token boundary). */
export function truncateToTokens(text: string, maxTokens: number): string {
  if (maxTokens <= 0) return '';
  const tokens = encode(text, PLAIN_TEXT);
  if (tokens.length <= maxTokens) return text;
  // A token boundary can fall inside a multi-byte character (emoji, CJK): its partial bytes decode
  // to U+FFFD. Drop tokens until what is left is a true prefix of the text.
  for (let n = maxTokens; n > 0; n--) {
    const cut = decode(tokens.slice(0, n));
    if (text.startsWith(cut)) return cut;
  }
  return '';
}
