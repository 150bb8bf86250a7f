import pg from 'pg';
import { AeternaError } from '../protocol/index.js';
import { STREAM_HEADS_SQL, SYSTEM_ROLE, toStreamHeads, type Db, type DbCapabilities, type PrepareHook, type Sql, type SqlResult, type StreamHead, type StreamHeadRow } from './db.js';
import { loadMigrations, migrate } from './migrate.js';
import { BYPASS_RLS_SQL, PGVECTOR_SQL, pinTenant } from './tenant-tx.js';

function wrap(client: pg.PoolClient | pg.Pool): Sql {
  return {
    async query<R>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>> {
      const res = await client.query(text, params ? [...params] : undefined);
      return { rows: res.rows as R[], affectedRows: res.rowCount ?? 0 };
    },
  };
}

/** SQLSTATE class 08 (connection exception) and the 57P0x shutdown codes: the server, not the request, failed. */
function isConnectionLoss(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('08') || /^57P0[1-3]$/.test(code) || code === 'ECONNRESET' || code === 'ECONNREFUSED');
}

// An arbitrary constant: every Aeterna process takes the same advisory lock to migrate.
const MIGRATION_LOCK_KEY = 7_142_013_901;

/** Server SQL over a `pg` pool. */
export class PostgresDb implements Db {
  readonly kind = 'postgres' as const;

  private constructor(
    private readonly pool: pg.Pool,
    readonly capabilities: DbCapabilities,
    private readonly dropToAppRole: boolean,
  ) {}

  static async open(opts: {
    url: string;
    poolSize: number;
    prepare?: PrepareHook;
    log?: (line: string) => void;
  }): Promise<PostgresDb> {
    const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize, connectionTimeoutMillis: 10_000 });
    // An idle client that errors (server restart) must not crash the process; the pool drops it.
    pool.on('error', () => {});
    try {
      const owner = await pool.connect();
      try {
        const sql = wrap(owner);
        await migrate(
          {
            exclusive: async (fn) => {
              await owner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
              try {
                return await fn(sql);
              } finally {
                await owner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
              }
            },
            exec: async (_sql, script) => void (await owner.query(script)),
          },
          await loadMigrations(),
          opts.log,
        );
        const capabilities = { pgvector: (await sql.query<{ n: number }>(PGVECTOR_SQL)).rows[0]?.n === 1 };
        await opts.prepare?.(sql, capabilities);
        const bypass = (await sql.query<{ bypass: boolean }>(BYPASS_RLS_SQL)).rows[0]?.bypass ?? true;
        return new PostgresDb(pool, capabilities, bypass);
      } finally {
        owner.release();
      }
    } catch (err) {
      await pool.end();
      throw err;
    }
  }

  withTenant<T>(tenantId: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    return this.transaction((sql) => pinTenant(sql, tenantId, this.dropToAppRole), fn);
  }

  async streamHeads(): Promise<StreamHead[]> {
    return this.transaction(
      (sql) => sql.query("SELECT set_config('role', $1, true)", [SYSTEM_ROLE]),
      async (sql) => toStreamHeads((await sql.query<StreamHeadRow>(STREAM_HEADS_SQL)).rows),
    );
  }

  private async transaction<T>(pin: (sql: Sql) => Promise<unknown>, fn: (sql: Sql) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw new AeternaError('UNAVAILABLE', 'database unavailable', { reason: (err as Error).message });
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      const sql = wrap(client);
      await pin(sql);
      const result = await fn(sql);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true; // the connection is unusable; destroy it rather than return it to the pool
      }
      throw isConnectionLoss(err) ? new AeternaError('UNAVAILABLE', 'database connection lost') : err;
    } finally {
      client.release(broken);
    }
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
