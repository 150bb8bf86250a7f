import { AeternaError } from '../protocol/index.js';

export const ROLES = ['viewer', 'developer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = ['memory:read', 'memory:write', 'memory:delete', 'tenant:erase', 'events:read', 'jobs:manage', 'graph:manage', 'budget:manage', 'meta:exec'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Each role holds the permissions of the one below it plus its own. */
const GRANTS: Record<Role, readonly Permission[]> = {
  viewer: ['memory:read', 'events:read'],
  developer: ['memory:read', 'events:read', 'memory:write'],
  admin: ['memory:read', 'events:read', 'memory:write', 'memory:delete', 'tenant:erase', 'jobs:manage', 'graph:manage', 'budget:manage', 'meta:exec'],
};

/** Who is acting. Built only from a verified token, never from a client-supplied field. */
export interface TenantContext {
  readonly tenantId: string;
  readonly userId: string;
  readonly agentId?: string;
  readonly sessionId?: string;
  readonly roles: readonly Role[];
  readonly traceId?: string;
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export function hasPermission(ctx: TenantContext, permission: Permission): boolean {
  return ctx.roles.some((role) => GRANTS[role].includes(permission));
}

export function requirePermission(ctx: TenantContext, permission: Permission): void {
  if (!hasPermission(ctx, permission)) {
    throw new AeternaError('FORBIDDEN', `missing permission ${permission}`, { permission });
  }
}

/** The actor recorded on events: who did it, as far as the token says. */
export function actorOf(ctx: TenantContext): { userId: string; agentId?: string } {
  return ctx.agentId === undefined ? { userId: ctx.userId } : { userId: ctx.userId, agentId: ctx.agentId };
}
