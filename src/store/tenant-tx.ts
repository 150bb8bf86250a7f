import { assertId } from '../tenancy/index.js';
import { APP_ROLE, type Sql } from './db.js';

/**
 * Pins a transaction to one tenant. When the login role would bypass row-level security
 * (a superuser, or BYPASSRLS), the transaction also drops to the app role, so RLS holds no matter
 * which credentials the operator configured. Both settings end with the transaction.
 */
export async function pinTenant(sql: Sql, tenantId: string, dropToAppRole: boolean): Promise<void> {
  assertId('tenantId', tenantId);
  if (dropToAppRole) {
    await sql.query("SELECT set_config('app.tenant_id', $1, true), set_config('role', $2, true)", [tenantId, APP_ROLE]);
  } else {
    await sql.query("SELECT set_config('app.tenant_id', $1, true)", [tenantId]);
  }
}

export const BYPASS_RLS_SQL =
  'SELECT (rolsuper OR rolbypassrls) AS bypass FROM pg_roles WHERE rolname = current_user';

export const PGVECTOR_SQL = "SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'vector'";
