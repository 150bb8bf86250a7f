/**
 * Secret redaction for what agents send us to keep (tool inputs and outputs, error reports):
 * secrets are replaced by `[REDACTED:<kind>]` before anything is stored, logged or embedded.
 * Patterns are tuned to leave ordinary text alone (uuids, hashes after non-secret labels, prose
 * that mentions "token" or "password"); every regex is linear or bounded, so hostile input of
 * the maximum message size cannot stall the process.
 */

export type RedactionKind = 'private_key' | 'jwt' | 'url_password' | 'bearer' | 'api_key' | 'password' | 'secret';

export interface Redacted {
  text: string;
  /** How many secrets of each kind were replaced. */
  counts: Partial<Record<RedactionKind, number>>;
  total: number;
}

const marker = (kind: RedactionKind) => `[REDACTED:${kind}]`;
const ALREADY = /^\[REDACTED:/;

/** Shannon entropy in bits per character. */
function entropy(value: string): number {
  const freq = new Map<string, number>();
  for (const ch of value) freq.set(ch, (freq.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const n of freq.values()) {
    const p = n / value.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/**
 * A value that reads like a machine-made secret: 16+ characters of a token alphabet, letters and
 * digits mixed, and about as random as base64/hex. Words, paths and identifiers fail one of these.
 */
export function looksLikeToken(value: string): boolean {
  return value.length >= 16 && /^[A-Za-z0-9_\-+/=.~]+$/.test(value) && /\d/.test(value) && /[A-Za-z]/.test(value) && entropy(value) >= 3.2;
}

/** Values that are not secrets even after a password label: absent, a literal, or already masked. */
function isPlaceholder(value: string): boolean {
  return value === '' || /^(null|undefined|true|false|none|\*+|x+|<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\})$/i.test(value) || ALREADY.test(value);
}

interface Rule {
  kind: RedactionKind;
  pattern: RegExp;
  /** The replacement, or undefined to leave the match as it is. */
  replace: (match: string, groups: string[]) => string | undefined;
}

// A label: the key of `key=value`, `key: value` or `"key": "value"`, ending in one of the words.
const LABEL_CHARS = '[A-Za-z0-9_.-]';
const labelled = (words: string) =>
  // (label)(separator with optional quotes)(value: "…" with escapes, \"…\" inside a JSON string, '…', or bare)
  new RegExp(
    String.raw`(?<!${LABEL_CHARS})(${LABEL_CHARS}{0,64}?(?:${words}))(\\?["']?\s{0,8}[:=]\s{0,8})(?:"((?:[^"\\\n]|\\.){0,4096})"|\\"((?:[^"\\\n]|\\[^"]){0,4096})\\"|'([^'\n]{0,4096})'|([^\s&;,"'}\]\\)]{1,4096}))`,
    'gi',
  );

function relabel(groups: string[], kind: RedactionKind, keep: (value: string) => boolean): string | undefined {
  const [label, sep, dq, escq, sq, bare] = groups;
  const value = dq ?? escq ?? sq ?? bare ?? '';
  if (isPlaceholder(value) || keep(value)) return undefined;
  const m = marker(kind);
  const body = dq !== undefined ? `"${m}"` : escq !== undefined ? `\\"${m}\\"` : sq !== undefined ? `'${m}'` : m;
  return `${label}${sep}${body}`;
}

const RULES: Rule[] = [
  {
    kind: 'private_key',
    // An unterminated block (cut by a size cap) is masked to the end rather than leaked.
    pattern: /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|$)/g,
    replace: () => marker('private_key'),
  },
  {
    kind: 'jwt',
    // header.payload.signature, both JSON objects base64url-encoded ("eyJ" = '{"'); alg=none has no signature.
    pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g,
    replace: () => marker('jwt'),
  },
  {
    kind: 'url_password',
    pattern: /\b([a-z][a-z0-9+.-]{1,20}:\/\/)([^\s:@/?#"'<>]{1,256}):([^\s@/?#"'<>]{1,256})@/gi,
    replace: (_m, [scheme, user, password]) => (isPlaceholder(password ?? '') ? undefined : `${scheme}${user}:${marker('url_password')}@`),
  },
  {
    kind: 'bearer',
    // An Authorization header's whole credential, whatever its scheme.
    pattern: /\b((?:proxy-)?authorization)(\\?["']?\s{0,8}[:=]\s{0,8}\\?["']?)((?:Bearer|Basic|Digest|Token|Bot)\s+)?([^\s"'\\,;]{1,4096})/gi,
    replace: (_m, [label, sep, scheme, value]) => (isPlaceholder(value ?? '') ? undefined : `${label}${sep}${scheme ?? ''}${marker('bearer')}`),
  },
  {
    kind: 'bearer',
    pattern: /\b(Bearer|Token)(\s+)([A-Za-z0-9_\-+/=.~]{16,4096})/g,
    replace: (_m, [scheme, space, value]) => (looksLikeToken(value ?? '') ? `${scheme}${space}${marker('bearer')}` : undefined),
  },
  {
    kind: 'api_key',
    // Provider formats: OpenAI/Anthropic sk-, AWS access key ids, GitHub, Slack, Google, Stripe, GitLab, npm.
    pattern:
      /\b(?:sk-[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[A-Za-z0-9_-]{35}|[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}|glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{36})/g,
    replace: () => marker('api_key'),
  },
  {
    kind: 'password',
    // Any value after a password label is a secret, short or not. PWD/OLDPWD are the shell's directories.
    pattern: labelled('password|passwd|passphrase|pwd'),
    replace: (_m, groups) => (/^(old)?pwd$/i.test(groups[0] ?? '') ? undefined : relabel(groups, 'password', () => false)),
  },
  {
    kind: 'secret',
    // After key/token/secret labels only values that look machine-made: `sort_key=created_at` stays.
    pattern: labelled('secret|token|credentials?|key|auth'),
    replace: (_m, groups) => relabel(groups, 'secret', (value) => !looksLikeToken(value)),
  },
];

/** Replaces every secret in `text`; counts what it replaced. */
export function redactText(text: string): Redacted {
  const counts: Partial<Record<RedactionKind, number>> = {};
  let total = 0;
  let out = text;
  for (const rule of RULES) {
    out = out.replace(rule.pattern, (match: string, ...rest: unknown[]) => {
      // replace() passes the groups, then the offset (a number), the whole string and named groups.
      const end = rest.findIndex((r) => typeof r === 'number');
      const groups = rest.slice(0, end < 0 ? rest.length : end).map((g) => (typeof g === 'string' ? g : undefined)) as string[];
      const replaced = rule.replace(match, groups);
      if (replaced === undefined) return match;
      counts[rule.kind] = (counts[rule.kind] ?? 0) + 1;
      total++;
      return replaced;
    });
  }
  return { text: out, counts, total };
}

export interface CappedText {
  text: string;
  truncated: boolean;
  /** UTF-8 size before capping. */
  bytes: number;
}

/**
 * At most `maxBytes` UTF-8 bytes, cut on a character boundary, with a marker saying how much was
 * cut (the marker counts towards the cap).
 */
export function capUtf8(text: string, maxBytes: number): CappedText {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= maxBytes) return { text, truncated: false, bytes: buf.length };
  const note = `…[truncated ${buf.length} bytes]`;
  const room = Math.max(0, maxBytes - Buffer.byteLength(note));
  // A multi-byte character cut in half decodes to U+FFFD: drop it.
  const head = buf.subarray(0, room).toString('utf8').replace(/\uFFFD+$/, '');
  return { text: head + note, truncated: true, bytes: buf.length };
}

/**
 * A tool's input or output as stored text: strings as they are, anything else as JSON; then
 * redacted, then capped (so a cap can never cut a secret in half and keep the first part).
 * PostgreSQL text cannot hold NUL, which binary tool output may contain.
 */
export function sanitiseForStorage(value: unknown, maxBytes: number): { text: string | null; truncated: boolean; redactions: number } {
  if (value === undefined) return { text: null, truncated: false, redactions: 0 };
  const raw = typeof value === 'string' ? value : (JSON.stringify(value) ?? 'null');
  const redacted = redactText(raw.replaceAll('\u0000', '\uFFFD'));
  const capped = capUtf8(redacted.text, maxBytes);
  return { text: capped.text, truncated: capped.truncated, redactions: redacted.total };
}
