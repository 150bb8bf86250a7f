import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './db.js';

const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

export interface MigrationTarget {
  /** Serialises migrators across processes (an advisory lock on PostgreSQL). */
  exclusive<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
  /** Runs a multi-statement script (no parameters). */
  exec(sql: Sql, script: string): Promise<void>;
}

/**
 * Applies pending migrations in name order, each in its own transaction. An applied migration
 * whose file changed since is refused: silently diverging schemas are worse than not starting.
 */
export async function migrate(
  target: MigrationTarget,
  migrations: Migration[],
  log: (line: string) => void = () => {},
): Promise<string[]> {
  return target.exclusive(async (sql) => {
    await target.exec(
      sql,
      `CREATE TABLE IF NOT EXISTS aeterna_migrations (
         name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const applied = new Map(
      (await sql.query<{ name: string; checksum: string }>('SELECT name, checksum FROM aeterna_migrations')).rows.map(
        (r) => [r.name, r.checksum],
      ),
    );
    const pending = migrations.filter((m) => {
      const checksum = applied.get(m.name);
      if (checksum !== undefined && checksum !== m.checksum) {
        throw new Error(`migration ${m.name} was changed after it was applied (checksum mismatch)`);
      }
      return checksum === undefined;
    });
    for (const [i, m] of pending.entries()) {
      log(`migration ${i + 1}/${pending.length}: ${m.name}`);
      await sql.query('BEGIN');
      try {
        await target.exec(sql, m.sql);
        await sql.query('INSERT INTO aeterna_migrations (name, checksum) VALUES ($1, $2)', [m.name, m.checksum]);
        await sql.query('COMMIT');
      } catch (err) {
        await sql.query('ROLLBACK');
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    if (pending.length > 0) log(`migrations: applied ${pending.length}, ${migrations.length} in all`);
    return pending.map((m) => m.name);
  });
}
