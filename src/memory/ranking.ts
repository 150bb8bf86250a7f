/**
 * How search orders what the vector index found. Similarity dominates; importance scales it by
 * 0.5x..1.5x; recency by 0.8x..1x, so a stale but exact memory still beats a fresh vague one.
 */
export interface RankInput {
  similarity: number;
  importance: number;
  /** The later of last update and last access. */
  touchedAt: Date;
}

export function rankScore(input: RankInput, now: Date, halfLifeDays: number): number {
  const ageDays = Math.max(0, (now.getTime() - input.touchedAt.getTime()) / 86_400_000);
  const recency = Math.pow(0.5, ageDays / halfLifeDays);
  return input.similarity * (0.5 + input.importance) * (0.8 + 0.2 * recency);
}

/** Feedback moves importance by a tenth of its signed score, within [0, 1]. */
export function importanceAfterFeedback(importance: number, score: number): number {
  return Math.min(1, Math.max(0, importance + 0.1 * score));
}
