import { finaliseExtraction, keyOf, type RawExtraction } from './finalise.js';
import {
  ABBREVIATIONS,
  DOMAIN_SUFFIXES,
  HEAD_NOUNS,
  LEADING_MODIFIERS,
  LIST_GAPS,
  NAME_CONNECTORS,
  RELATION_VERBS,
  STOP_WORDS,
  TRAILING_FILLERS,
  type RelationVerb,
} from './lexicon.js';
import {
  CO_OCCURRENCE,
  CO_OCCURRENCE_WEIGHT,
  DEFAULT_EXTRACTION_LIMITS,
  RELATION_WEIGHT,
  type EntityRef,
  type Extraction,
  type ExtractionLimits,
  type Extractor,
} from './types.js';

/**
 * The offline extractor: no model, no network, and the same text always gives the same
 * extraction. It reads a memory sentence by sentence:
 *
 * 1. Tokens: URLs, emails, `backticked` spans, code-shaped words (calls, paths, dotted names,
 *    snake_case, camelCase), and name words: Capitalised, PascalCase with inner capitals,
 *    ACRONYMS. Everything else is a plain word or punctuation.
 * 2. Mentions: each URL, email and code token; and each run of name words (with "of", "van", …
 *    between them), minus stop words, which also split runs. A lone PascalCase word is code
 *    ("MemoryService"); a run is an entity ("GitHub Actions", "New York City"). Three or more
 *    ACRONYMS in a row are shouting, not a name.
 * 3. Relations: the words between two neighbouring mentions, once auxiliaries and adverbs in
 *    front and articles behind are set aside, must be exactly one of the lexicon's verb forms
 *    ("uses", "is used by", "depends on", "is part of", …); any negation cancels it. Lists
 *    ("Alice and Bob use Redis and Postgres") relate every member on each side.
 * 4. Co-occurrence: other pairs of mentions in the sentence, nearest first, up to a cap.
 */
export class RuleExtractor implements Extractor {
  constructor(private readonly limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS) {}

  extract(text: string): Promise<Extraction> {
    return Promise.resolve(extractByRules(text, this.limits));
  }
}

export function extractByRules(text: string, limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS): Extraction {
  const raw: RawExtraction = { entities: [], relations: [] };
  for (const sentence of splitSentences(text)) {
    const tokens = tokenize(sentence);
    const mentions = findMentions(tokens);
    raw.entities.push(...mentions.map((m) => m.ref));
    const stated = statedRelations(tokens, mentions);
    raw.relations.push(...stated, ...coOccurrences(mentions, stated, limits.maxPairsPerSentence));
  }
  return finaliseExtraction(raw, limits);
}

/** `initial`: "D." inside "Jane D. Doe"; part of a name only between two name words. */
type TokenType = 'url' | 'email' | 'code' | 'pascal' | 'acronym' | 'cap' | 'initial' | 'word' | 'punct';

interface Token {
  type: TokenType;
  /** The label for URLs, emails, code and name words; the text itself otherwise. */
  text: string;
  lower: string;
  /** "Jane's": a name ends with this word. */
  possessive?: boolean;
}

interface Mention {
  ref: EntityRef;
  /** keyOf(ref), computed once: co-occurrence compares every pair. */
  key: string;
  /** Token range [start, end). */
  start: number;
  end: number;
}

type Relation = RawExtraction['relations'][number];

/**
 * Lines, then sentences: a run of . ! ? and whitespace ends one unless the full stop follows an
 * abbreviation or an initial ("Jane D. Doe") or the next word starts in lower case ("e.g. foo").
 * Dots inside URLs, paths and versions have no whitespace after them and never split.
 */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    let from = 0;
    for (const m of line.matchAll(/[.!?]+["'’”)\]]*\s+/g)) {
      const end = m.index + m[0].length;
      if (m[0].startsWith('.') && !m[0].startsWith('..')) {
        // A bounded look back and ahead keeps a long line linear.
        const before = /(\S+)$/.exec(line.slice(Math.max(from, m.index - 40), m.index))?.[1]?.replace(/^[("'‘“[]+/, '') ?? '';
        if (ABBREVIATIONS.has(before.toLowerCase()) || /^\p{L}$/u.test(before)) continue;
      }
      if (/^\p{Ll}/u.test(line.slice(end, end + 2))) continue;
      out.push(line.slice(from, end));
      from = end;
    }
    out.push(line.slice(from));
  }
  return out.map((s) => s.trim()).filter((s) => s !== '');
}

const TOKEN =
  /(?<url>\b(?:https?:\/\/|www\.)[^\s<>"'`]+)|(?<email>\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)|`(?<tick>[^`\n]{1,200})`|(?<chunk>[\p{L}\p{M}\p{N}_$~@#'’./\\+-]+(?:\([^()\s]*\))?)|(?<space>\s+)|(?<punct>[^])/gu;

function count(s: string, ch: string): number {
  return s.split(ch).length - 1;
}

/** Sentence punctuation after a URL is not part of it; a closing bracket only when unbalanced. */
function trimUrl(url: string): string {
  let u = url;
  for (;;) {
    const last = u.at(-1) ?? '';
    if (`.,;:!?'"’”`.includes(last) && u.length > 1) u = u.slice(0, -1);
    else if (last === ')' && count(u, '(') < count(u, ')')) u = u.slice(0, -1);
    else if (last === ']' && count(u, '[') < count(u, ']')) u = u.slice(0, -1);
    else return u;
  }
}

export function tokenize(sentence: string): Token[] {
  const tokens: Token[] = [];
  const re = new RegExp(TOKEN);
  for (let m = re.exec(sentence); m !== null; m = re.exec(sentence)) {
    const g = m.groups ?? {};
    if (g.space !== undefined) continue;
    if (g.url !== undefined) {
      const url = trimUrl(g.url);
      re.lastIndex = m.index + url.length;
      tokens.push({ type: 'url', text: url, lower: url.toLowerCase() });
    } else if (g.email !== undefined) {
      tokens.push({ type: 'email', text: g.email, lower: g.email.toLowerCase() });
    } else if (g.tick !== undefined) {
      tokens.push(backticked(g.tick));
    } else if (g.chunk !== undefined) {
      // Trailing sentence punctuation and quotes go back to the scanner as their own tokens.
      const core = g.chunk.replace(/[.'’-]+$/, '');
      if (core === '') {
        tokens.push(punct(g.chunk));
        continue;
      }
      const single = /^\p{Lu}$/u.test(core);
      if (g.chunk[core.length] === '.' && (single || ABBREVIATIONS.has(core.toLowerCase()))) {
        // "Acme Inc. uses", "Jane D. Doe", "e.g. this": the full stop belongs to the word.
        re.lastIndex = m.index + core.length + 1;
        if (single) {
          tokens.push({ type: 'initial', text: `${core}.`, lower: core.toLowerCase() });
          continue;
        }
      } else {
        re.lastIndex = m.index + core.length;
      }
      tokens.push(...classify(core.replace(/^['’]+/, '')));
    } else {
      tokens.push(punct(m[0]));
    }
  }
  return tokens;
}

function punct(text: string): Token {
  return { type: 'punct', text, lower: text };
}

function word(text: string): Token {
  return { type: 'word', text, lower: text.toLowerCase().replace(/’/g, "'") };
}

function backticked(inner: string): Token {
  const text = inner.trim();
  const [only] = tokenize(text);
  if (only && (only.type === 'url' || only.type === 'email') && only.text === text) return only;
  const call = CALL.exec(text);
  const label = call?.[1] ?? text;
  return { type: text === '' ? 'punct' : 'code', text: label, lower: label.toLowerCase() };
}

const CALL = /^([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\([^()]*\)$/;
const PATH = /^(?:~|\.{1,2})?\/?[\w@.+-]+(?:\/[\w@.+-]+)+\/?$/;
const DOTTED = /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$-]*)+$/;
const SNAKE = /^_*[A-Za-z][A-Za-z0-9]*(?:_+[A-Za-z0-9]+)+_*$/;
const CAMEL = /^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$/;
const ACRONYM = /^(?:\p{Lu}[\p{Lu}\p{N}]{1,9}s?|\p{Lu}[+#]{1,2})$/u;
const CAPITALISED = /^\p{Lu}(?:[\p{Ll}\p{M}\p{N}]|[-'’]\p{Lu}?)*$/u;

/**
 * A path needs more than one slash-separated pair of words: a root, a file extension or a third
 * segment ("src/foo.ts", "./bin", "/etc/hosts", "a/b/c"), so "and/or", "TCP/IP" and "24/7" are not.
 */
function isPath(s: string): boolean {
  if (!PATH.test(s) || !/\p{L}/u.test(s)) return false;
  const last = s.replace(/\/+$/, '').split('/').at(-1) ?? '';
  return /^(?:\/|\.{1,2}\/|~\/)/.test(s) || /\.[A-Za-z0-9]{1,10}$/.test(last) || count(s, '/') >= 2;
}

function classify(core: string): Token[] {
  const call = CALL.exec(core);
  if (call?.[1]) return [{ type: 'code', text: call[1], lower: call[1].toLowerCase() }];
  if (core.includes('/')) {
    if (isPath(core)) return [{ type: 'code', text: core, lower: core.toLowerCase() }];
    // "CI/CD", "and/or": the parts, with the slash as a list separator.
    return core
      .split('/')
      .flatMap((part, i) => [...(i > 0 ? [punct('/')] : []), ...(part === '' ? [] : classify(part))]);
  }
  if (DOTTED.test(core)) {
    const segments = core.split('.');
    if (segments.every((s) => s.length === 1)) return [word(core)];
    const isDomain = DOMAIN_SUFFIXES.has(segments.at(-1)!.toLowerCase()) && /^[A-Za-z0-9.-]+$/.test(core);
    return [{ type: isDomain ? 'url' : 'code', text: core, lower: core.toLowerCase() }];
  }
  if (SNAKE.test(core) || CAMEL.test(core)) return [{ type: 'code', text: core, lower: core.toLowerCase() }];
  const possessive = /^\p{Lu}.*['’]s$/u.test(core);
  const name = possessive ? core.slice(0, -2) : core;
  const type = nameType(name);
  if (type === undefined) return [word(core)];
  return [{ type, text: name, lower: name.toLowerCase(), ...(possessive ? { possessive } : {}) }];
}

function nameType(s: string): 'pascal' | 'acronym' | 'cap' | undefined {
  if (s.length < 2) return undefined;
  const rest = s.slice(1);
  if (/^\p{Lu}[\p{L}\p{N}]*$/u.test(s) && /\p{Ll}/u.test(rest) && /\p{Lu}/u.test(rest)) return 'pascal';
  if (ACRONYM.test(s)) return 'acronym';
  if (CAPITALISED.test(s) && /\p{Ll}/u.test(s)) return 'cap';
  return undefined;
}

/**
 * Name words, by position: capitalised, PascalCase or ACRONYM, not a stop word, and not part of a
 * run of three or more all-caps words ("DO NOT DEPLOY ON FRIDAYS"), which is shouting, not names.
 */
function nameWords(tokens: Token[]): boolean[] {
  const names = tokens.map((t) => (t.type === 'cap' || t.type === 'pascal' || t.type === 'acronym') && !STOP_WORDS.has(t.lower));
  for (let i = 0; i < tokens.length; ) {
    let j = i;
    while (tokens[j]?.type === 'acronym' || (tokens[j]?.type === 'word' && /^\p{Lu}{2,}$/u.test(tokens[j]!.text))) j += 1;
    if (j - i >= 3) names.fill(false, i, j);
    i = Math.max(j, i + 1);
  }
  return names;
}

function findMentions(tokens: Token[]): Mention[] {
  const names = nameWords(tokens);
  const mentions: Mention[] = [];
  for (let i = 0; i < tokens.length; ) {
    const t = tokens[i]!;
    if (t.type === 'url' || t.type === 'email' || t.type === 'code') {
      const ref = { label: t.text, kind: t.type };
      mentions.push({ ref, key: keyOf(ref), start: i, end: i + 1 });
      i += 1;
      continue;
    }
    if (!names[i]) {
      i += 1;
      continue;
    }
    let last = i;
    while (!tokens[last]!.possessive) {
      const next = tokens[last + 1];
      if (names[last + 1]) last += 1;
      else if ((next?.type === 'initial' || (next?.type === 'word' && NAME_CONNECTORS.has(next.lower))) && names[last + 2]) last += 2;
      else break;
    }
    const parts = tokens.slice(i, last + 1);
    const kind = parts.length === 1 && t.type === 'pascal' ? 'code' : 'entity';
    const ref = { label: parts.map((p) => p.text).join(' '), kind };
    mentions.push({ ref, key: keyOf(ref), start: i, end: last + 1 });
    i = last + 1;
  }
  return mentions;
}

function gapBetween(tokens: Token[], from: number, to: number): string[] {
  return tokens.slice(from, to).map((t) => t.lower);
}

/**
 * The relation a gap between two mentions states, if it states exactly one. `afterName` allows
 * one head noun first ("the Apollo project depends on"); not after a possessive, where the noun
 * is the subject ("Jane's team owns" is not Jane owning). The exact match is also what keeps
 * negations out: "does not use" and "no longer uses" leave "not use" and "no longer uses", which
 * are no verb form.
 */
export function relationVerb(gap: readonly string[], afterName = true): RelationVerb | undefined {
  let from = afterName && HEAD_NOUNS.has(gap[0] ?? '') ? 1 : 0;
  let to = gap.length;
  while (from < to && LEADING_MODIFIERS.has(gap[from]!)) from += 1;
  while (to > from && TRAILING_FILLERS.has(gap[to - 1]!)) to -= 1;
  return RELATION_VERBS.get(gap.slice(from, to).join(' '));
}

/** After an earlier relation: ", and manages Z" / "and owns Z" continue that relation's subject. */
function coordinatedPredicate(gap: readonly string[]): readonly string[] | undefined {
  let k = gap[0] === ',' ? 1 : 0;
  if (gap[k] === 'and') k += 1;
  if (k === 0 || ['which', 'that', 'who'].includes(gap[k] ?? '')) return undefined;
  return gap.slice(k);
}

interface Link {
  verb: RelationVerb;
  /** Its subject is the previous relation's ("Jane works on Apollo and manages Zeus"). */
  coordinated: boolean;
}

/**
 * Mentions joined by list words form groups; a verb between neighbouring groups relates every
 * member of one to every member of the other. A group between two verbs is split: its last member
 * is the second verb's subject, the rest the first verb's objects ("X uses Y and Z uses W").
 */
function statedRelations(tokens: Token[], mentions: Mention[]): Relation[] {
  const groups: Mention[][] = [];
  const gaps: string[][] = [];
  mentions.forEach((m, k) => {
    const prev = mentions[k - 1];
    const gap = prev ? gapBetween(tokens, prev.end, m.start) : [];
    if (prev && LIST_GAPS.has(gap.join(' '))) groups.at(-1)!.push(m);
    else {
      if (prev) gaps.push(gap);
      groups.push([m]);
    }
  });

  const links: (Link | undefined)[] = [];
  gaps.forEach((gap, g) => {
    const rest = links.some(Boolean) ? coordinatedPredicate(gap) : undefined;
    const afterPossessive = tokens[groups[g]!.at(-1)!.end - 1]!.possessive === true;
    const verb = rest ? relationVerb(rest, false) : relationVerb(gap, !afterPossessive);
    links.push(verb ? { verb, coordinated: rest !== undefined } : undefined);
  });

  const out: Relation[] = [];
  let subject: Mention[] = [];
  links.forEach((link, g) => {
    if (!link) return;
    const left = groups[g]!;
    const right = groups[g + 1]!;
    const next = links[g + 1];
    const subjects = link.coordinated ? subject : links[g - 1] && left.length > 1 ? left.slice(-1) : left;
    const objects = next && !next.coordinated && right.length > 1 ? right.slice(0, -1) : right;
    if (!link.coordinated) subject = subjects;
    for (const a of subjects) {
      for (const b of objects) {
        const [source, target] = link.verb.reverse ? [b.ref, a.ref] : [a.ref, b.ref];
        out.push({ source, target, relation: link.verb.relation, weight: RELATION_WEIGHT });
      }
    }
  });
  return out;
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}\u0001${b}` : `${b}\u0001${a}`;
}

/** Nearest pairs first: neighbours say more about each other than the two ends of a long list. */
function coOccurrences(mentions: Mention[], stated: Relation[], max: number): Relation[] {
  const seen = new Set(stated.map((r) => pairKey(keyOf(r.source), keyOf(r.target))));
  const out: Relation[] = [];
  for (let d = 1; d < mentions.length && out.length < max; d++) {
    for (let i = 0; i + d < mentions.length && out.length < max; i++) {
      const a = mentions[i]!;
      const b = mentions[i + d]!;
      const key = pairKey(a.key, b.key);
      if (a.key === b.key || seen.has(key)) continue;
      seen.add(key);
      out.push({ source: a.ref, target: b.ref, relation: CO_OCCURRENCE, weight: CO_OCCURRENCE_WEIGHT });
    }
  }
  return out;
}
