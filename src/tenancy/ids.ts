import { AeternaError } from '../protocol/index.js';

/** The one id rule (ARCHITECTURE.md): tenants, users, agents, sessions and scopes all follow it. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/** Throws INVALID_ARGUMENT naming the field, before the value can reach any query or key. */
export function assertId(field: string, value: unknown): string {
  if (!isValidId(value)) {
    throw new AeternaError('INVALID_ARGUMENT', `${field} must match ${ID_PATTERN.source}`, { field });
  }
  return value;
}
