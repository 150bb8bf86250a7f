import { AeternaError, LAYERS, SCOPE_FIELD, type Layer, type ScopeFields } from '../protocol/index.js';
import { hasPermission, type TenantContext } from '../tenancy/index.js';
import type { VectorFilter } from '../vector/index.js';

/** Scopes a caller may name for itself without spelling them out: its own agent, user, session. */
function implicitScope(ctx: TenantContext, layer: Layer): string | undefined {
  if (layer === 'agent') return ctx.agentId;
  if (layer === 'user') return ctx.userId;
  if (layer === 'session') return ctx.sessionId;
  return undefined;
}

/**
 * The user layer is personal: only its owner (or an admin) reads or writes it. Other layers are
 * shared within the tenant.
 */
export function mayAccessScope(ctx: TenantContext, layer: Layer, scopeId: string): boolean {
  return layer !== 'user' || scopeId === ctx.userId || seesEveryUserLayer(ctx);
}

/** Admins manage the whole tenant, personal layers included. */
export function seesEveryUserLayer(ctx: TenantContext): boolean {
  return hasPermission(ctx, 'tenant:erase');
}

/** The scope a write targets; a missing scope id is an error naming the field to send. */
export function resolveWriteScope(ctx: TenantContext, layer: Layer, fields: ScopeFields): string {
  const field = SCOPE_FIELD[layer];
  const scopeId = fields[field] ?? implicitScope(ctx, layer);
  if (scopeId === undefined) {
    throw new AeternaError('INVALID_ARGUMENT', `layer '${layer}' requires ${field}`, { field });
  }
  if (!mayAccessScope(ctx, layer, scopeId)) {
    throw new AeternaError('FORBIDDEN', `the user layer of another user is private`, { field });
  }
  return scopeId;
}

/**
 * What a read may see: per layer the named scope, or every scope of the layer when none is named,
 * except the user layer, which always narrows to the caller's own (admins see all).
 */
export function resolveReadScopes(ctx: TenantContext, layers: readonly Layer[], fields: ScopeFields): VectorFilter['scopes'] {
  return layers.map((layer) => {
    const named = fields[SCOPE_FIELD[layer]];
    if (named !== undefined) {
      if (!mayAccessScope(ctx, layer, named)) {
        throw new AeternaError('FORBIDDEN', `the user layer of another user is private`, { field: SCOPE_FIELD[layer] });
      }
      return { layer, scopeId: named };
    }
    if (layer === 'user' && !seesEveryUserLayer(ctx)) return { layer, scopeId: ctx.userId };
    return { layer };
  });
}

export function layerRank(layer: Layer): number {
  return LAYERS.indexOf(layer);
}
