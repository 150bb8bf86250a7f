import type { VectorFilter } from './types.js';

export type Bind = (value: unknown) => string;

/** A binder that appends values to `params` and returns their placeholders. */
export function binder(params: unknown[]): Bind {
  return (value) => {
    params.push(value);
    return `$${params.length}`;
  };
}

/** Scope and tag conditions over the memories table; values are bound, never inlined. */
export function scopeFilterSql(filter: VectorFilter, bind: Bind): string {
  const scopeClauses = filter.scopes.map((s) =>
    s.scopeId === undefined ? `layer = ${bind(s.layer)}` : `(layer = ${bind(s.layer)} AND scope_id = ${bind(s.scopeId)})`,
  );
  const clauses = [scopeClauses.length > 0 ? `(${scopeClauses.join(' OR ')})` : 'false'];
  if (filter.tags && filter.tags.length > 0) clauses.push(`tags @> ${bind([...filter.tags])}::text[]`);
  return clauses.join(' AND ');
}

/** The WHERE clause every SQL-backed index shares: live memories of one embedding space in scope. */
export function filterSql(filter: VectorFilter, model: string, params: unknown[]): string {
  const bind = binder(params);
  return `deleted_at IS NULL AND embedding IS NOT NULL AND embedding_model = ${bind(model)} AND ${scopeFilterSql(filter, bind)}`;
}
