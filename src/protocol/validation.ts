import type { ZodError, ZodType, ZodTypeDef } from 'zod';
import { AeternaError } from './errors.js';

/** zod issues flattened to what a client needs to fix its request. */
export function describeZodError(error: ZodError): { issues: { path: string; message: string }[] } {
  return {
    issues: error.issues.map((issue) => ({ path: issue.path.join('.') || '(root)', message: issue.message })),
  };
}

/** Parses untrusted input or throws INVALID_ARGUMENT naming every offending field. */
export function parseInput<Out, In = Out>(schema: ZodType<Out, ZodTypeDef, In>, input: unknown, what: string): Out {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const details = describeZodError(result.error);
  const first = details.issues[0];
  const summary = first ? `${first.path}: ${first.message}` : 'invalid';
  throw new AeternaError('INVALID_ARGUMENT', `invalid ${what}: ${summary}`, details);
}
