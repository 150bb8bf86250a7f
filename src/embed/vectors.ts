import { createHash } from 'node:crypto';
import { AeternaError } from '../protocol/index.js';

/**
 * sha256 hex of the text's UTF-8 bytes, with no normalisation at all. The embedding cache is
 * exact-match: a hit must return precisely the vector the model would give for this input, and
 * remote models do see the difference between "\r\n" and "\n" or a trailing space. Callers that
 * want looser identity (trimmed, NFC) normalise before calling.
 */
export function contentHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Scales `v` to unit length in place; false when it has no direction (all zeros) or is not finite. */
export function normalizeInPlace(v: Float32Array): boolean {
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum);
  if (norm === 0 || !Number.isFinite(norm)) return false;
  for (let i = 0; i < v.length; i++) v[i] = (v[i] ?? 0) / norm;
  return true;
}

/**
 * True cosine (not just the dot product), so a vector that lost its normalisation on the way
 * through storage still compares correctly. A zero vector has no direction: similarity 0.
 */
export function cosine(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) {
    throw new AeternaError('INVALID_ARGUMENT', `cannot compare vectors of ${a.length} and ${b.length} dimensions`, {
      dims: [a.length, b.length],
    });
  }
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  if (na === 0 || nb === 0) return 0;
  // Rounding can push identical vectors a hair past 1; callers compare against thresholds like 0.95.
  return Math.max(-1, Math.min(1, dot / Math.sqrt(na * nb)));
}

/**
 * Shortest decimal that reads back as the same float32: pgvector parses with strtof, so float64
 * digits beyond that only bloat every INSERT. Six digits is where most float32 values need to
 * start; shorter ones come out short anyway once Number() drops the trailing zeros.
 */
function float32Text(x: number): string {
  if (!Number.isFinite(x)) {
    throw new AeternaError('INVALID_ARGUMENT', 'pgvector cannot store NaN or Infinity');
  }
  for (let precision = 6; precision < 9; precision++) {
    const candidate = Number(x.toPrecision(precision));
    if (Math.fround(candidate) === x) return String(candidate);
  }
  return String(Number(x.toPrecision(9)));
}

export function toPgVector(v: Float32Array): string {
  if (v.length === 0) throw new AeternaError('INVALID_ARGUMENT', 'pgvector needs at least one dimension');
  return `[${Array.from(v, float32Text).join(',')}]`;
}

const NUMBER_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Parses pgvector's text form, rejecting anything pgvector itself would reject. */
export function parsePgVector(text: string): Float32Array {
  const trimmed = text.trim();
  if (!trimmed.startsWith('[') || !trimmed.endsWith(']')) {
    throw new AeternaError('INVALID_ARGUMENT', 'a pgvector value must look like [1,2,3]', { sample: trimmed.slice(0, 40) });
  }
  const body = trimmed.slice(1, -1);
  if (body.trim() === '') throw new AeternaError('INVALID_ARGUMENT', 'a pgvector value needs at least one dimension');
  const parts = body.split(',');
  const out = new Float32Array(parts.length);
  parts.forEach((raw, i) => {
    const part = raw.trim();
    const value = NUMBER_TEXT.test(part) ? Math.fround(Number(part)) : Number.NaN;
    if (!Number.isFinite(value)) {
      throw new AeternaError('INVALID_ARGUMENT', `pgvector element ${i} is not a finite float4: ${JSON.stringify(part.slice(0, 40))}`, {
        index: i,
      });
    }
    out[i] = value;
  });
  return out;
}
