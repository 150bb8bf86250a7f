import { contentHash } from '../embed/index.js';

/**
 * Error signatures for hindsight learning: two reports of "the same error" must normalise to the
 * same text even when ids, numbers, times, line numbers and machine-specific paths differ, and
 * two different errors must not. The signature keeps the error type, the message with its
 * variable parts masked, and the function names of the top stack frames.
 */

export interface ErrorSignature {
  errorType: string;
  /** The message with variable parts replaced by <uuid>, <hex>, <n>, <time>, <str>, <path>, <url>, <email>. */
  message: string;
  /** Function names of the innermost frames, innermost first. */
  frames: string[];
  /** What is compared and embedded: `type: message @ f1 < f2 < f3`. */
  text: string;
  /** sha256 of `text`: the exact-match key. */
  hash: string;
  /** sha256 of the signature without its type, for queries that do not know the type. */
  bodyHash: string;
}

/** Work is bounded whatever the caller sends: a signature only needs the start of a message. */
const MAX_MESSAGE_CHARS = 2000;
const MAX_STACK_LINES = 200;

const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*';
const WEEKDAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*';

/** Applied in order: quoted values first (they may hold anything), plain numbers last. */
const MASKS: [RegExp, string | ((m: string) => string)][] = [
  // Quoted values; an apostrophe inside a word ("can't") does not open a quote.
  [/(?<![\p{L}\p{N}])"[^"\n]{0,500}"|(?<![\p{L}\p{N}])'[^'\n]{0,500}'(?![\p{L}\p{N}])|`[^`\n]{0,500}`/gu, '<str>'],
  [/\b[a-z][a-z0-9+.-]{1,20}:\/\/[^\s"'<>()]+/gi, '<url>'],
  [/\b[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+\b/g, '<email>'],
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '<uuid>'],
  // ISO 8601 and similar date-times, RFC 2822 dates, JavaScript's Date#toString, bare clock times.
  [/\b\d{4}[-/]\d{2}[-/]\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b/g, '<time>'],
  [new RegExp(String.raw`\b(?:${WEEKDAY},?\s+)?\d{1,2}\s+${MONTH}\s+\d{4}(?:\s+\d{2}:\d{2}(?::\d{2})?)?(?:\s+(?:GMT|UTC|[+-]\d{4}))?`, 'g'), '<time>'],
  [new RegExp(String.raw`\b${WEEKDAY}\s+${MONTH}\s+\d{1,2}\s+\d{4}(?:\s+\d{2}:\d{2}:\d{2})?(?:\s+GMT[+-]\d{4})?(?:\s+\([^)]{0,60}\))?`, 'g'), '<time>'],
  [/\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b/g, '<time>'],
  // Paths keep their file name: `/home/ann/app/src/db.ts` and `C:\build\src\db.ts` are both `<path>/db.ts`.
  [/(?:\b[A-Za-z]:|~|\.{1,2})?(?:[\\/][^\s\\/:*?"'<>|()[\]{},;]+){2,}/g, (m) => `<path>/${m.split(/[\\/]/).pop() ?? ''}`],
  [/\b[\w.@-]+(?:[\\/][\w.@-]+)+\.[A-Za-z][\w]{0,7}\b/g, (m) => `<path>/${m.split(/[\\/]/).pop() ?? ''}`],
  [/\b0x[0-9a-f]+\b/gi, '<hex>'],
  // Hashes and object ids: hex runs that mix letters and digits (a plain word or number is not one).
  [/\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b/gi, '<hex>'],
  // Numbers, also line:col and those with units ("5000ms"); not the digits inside a word ("utf8", "x86_64").
  [/(?<![\p{L}\p{N}_.])\d+(?:\.\d+)*/gu, '<n>'],
];

export function normaliseErrorMessage(message: string): string {
  let out = message.slice(0, MAX_MESSAGE_CHARS);
  for (const [pattern, replacement] of MASKS) {
    out = typeof replacement === 'string' ? out.replace(pattern, replacement) : out.replace(pattern, replacement);
  }
  return out.replace(/\s+/g, ' ').trim();
}

/** One stack line's function name, in the syntaxes of V8, SpiderMonkey/JSC, Python, Java/C#, Ruby. */
const FRAME_SYNTAXES: { pattern: RegExp; name: (m: RegExpExecArray) => string; innermostLast?: true }[] = [
  // V8: "at fn (file:1:2)", "at async fn (…)", "at new Foo (…)", "at file:1:2" (anonymous)
  { pattern: /^\s*at (?:async )?(?:new )?([^\s(]+(?: \[as [^\]]+\])?) \((.*)\)\s*$/, name: (m) => m[1] ?? '' },
  { pattern: /^\s*at (?:async )?(\S+:\d+(?::\d+)?)\s*$/, name: () => '<anonymous>' },
  // Python: File "x.py", line 3, in fn
  { pattern: /^\s*File "[^"]*", line \d+, in (\S+)/, name: (m) => m[1] ?? '', innermostLast: true },
  // Java/C#: at com.acme.Foo.bar(Foo.java:10)
  { pattern: /^\s*at ([\w$.<>`]+)\(/, name: (m) => m[1] ?? '' },
  // Ruby: from /x.rb:10:in `fn'
  { pattern: /:\d+:in [`']([^']+)'/, name: (m) => m[1] ?? '' },
  // SpiderMonkey/JSC: fn@file:1:2, @file:1:2
  { pattern: /^\s*([^@\s]*)@\S+:\d+(?::\d+)?\s*$/, name: (m) => m[1] || '<anonymous>' },
];

/**
 * Function names of the innermost `max` frames. Node's own internals are skipped: they change
 * with the Node version and say nothing about the application. Python lists the innermost frame
 * last, so its order is reversed.
 */
export function stackFrames(stack: string, max: number): string[] {
  if (max <= 0) return [];
  const frames: string[] = [];
  let innermostLast = false;
  for (const line of stack.split('\n').slice(0, MAX_STACK_LINES)) {
    if (/\bnode:internal\/|\(internal\//.test(line)) continue;
    for (const syntax of FRAME_SYNTAXES) {
      const m = syntax.pattern.exec(line);
      if (!m) continue;
      if (syntax.innermostLast) innermostLast = true;
      // Generated names carry counters (`lambda$3`, chunk ids): mask digits like the message's.
      frames.push(syntax.name(m).replace(/\d+/g, '<n>'));
      break;
    }
  }
  return (innermostLast ? frames.reverse() : frames).slice(0, max);
}

export function errorSignature(input: { errorType?: string | undefined; message: string; stack?: string | undefined }, maxFrames: number): ErrorSignature {
  const errorType = (input.errorType ?? '').trim();
  const message = normaliseErrorMessage(input.message);
  const frames = input.stack ? stackFrames(input.stack, maxFrames) : [];
  const body = frames.length > 0 ? `${message} @ ${frames.join(' < ')}` : message;
  const text = errorType === '' ? body : `${errorType}: ${body}`;
  return { errorType, message, frames, text, hash: contentHash(text), bodyHash: contentHash(body) };
}
