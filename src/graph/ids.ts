import { createHash } from 'node:crypto';

function digest(parts: readonly string[]): string {
  // \u0000 cannot occur in a label, so ("a b", "c") and ("a", "b c") never collide.
  return createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 32);
}

/** Case and spacing do not make a different entity: "Postgres  DB" and "postgres db" are one. */
export function normaliseLabel(label: string): string {
  return label.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
}

/**
 * The id of an extracted entity: the same label and kind give the same node in every memory, in
 * every process and on every replay, which is what lets extraction be idempotent and lets several
 * memories support one node.
 */
export function nodeIdFor(kind: string, label: string): string {
  return `n-${digest([kind, normaliseLabel(label)])}`;
}

/** One edge per (source, relation, target): a fact stated twice is one edge with two sources. */
export function edgeIdFor(source: string, relation: string, target: string): string {
  return `e-${digest([source, relation, target])}`;
}
