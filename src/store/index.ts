import type { DatabaseConfig } from '../config.js';
import type { Db, PrepareHook } from './db.js';
import { PGliteDb } from './pglite.js';
import { PostgresDb } from './postgres.js';

export { APP_ROLE, type Db, type DbCapabilities, type PrepareHook, type Sql, type SqlResult, type StreamHead } from './db.js';
export { loadMigrations, migrate, type Migration, type MigrationTarget } from './migrate.js';
export { PGliteDb } from './pglite.js';
export { PostgresDb } from './postgres.js';

export interface OpenDbOptions {
  prepare?: PrepareHook;
  log?: (line: string) => void;
}

/** Opens the configured database, applies migrations and returns it ready for tenant work. */
export function openDb(config: DatabaseConfig, opts: OpenDbOptions = {}): Promise<Db> {
  return config.kind === 'postgres'
    ? PostgresDb.open({ url: config.url, poolSize: config.poolSize, ...opts })
    : PGliteDb.open({ dataDir: config.dataDir, ...opts });
}
export { newId } from './ids.js';
