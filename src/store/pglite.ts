import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite/vector';
import { STREAM_HEADS_SQL, SYSTEM_ROLE, toStreamHeads, type Db, type DbCapabilities, type PrepareHook, type Sql, type SqlResult, type StreamHead, type StreamHeadRow } from './db.js';
import { loadMigrations, migrate } from './migrate.js';
import { BYPASS_RLS_SQL, PGVECTOR_SQL, pinTenant } from './tenant-tx.js';

type PGliteQueryable = Pick<PGlite, 'query'>;

function wrap(q: PGliteQueryable): Sql {
  return {
    async query<R>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>> {
      const res = await q.query<R>(text, params ? [...params] : undefined);
      return { rows: res.rows, affectedRows: res.affectedRows ?? 0 };
    },
  };
}

/** Embedded SQL: PostgreSQL compiled to WASM, in this process, with pgvector. */
export class PGliteDb implements Db {
  readonly kind = 'pglite' as const;

  private constructor(
    private readonly pg: PGlite,
    readonly capabilities: DbCapabilities,
    private readonly dropToAppRole: boolean,
  ) {}

  /** `dataDir` undefined keeps everything in memory (tests). */
  static async open(opts: { dataDir?: string; prepare?: PrepareHook; log?: (line: string) => void }): Promise<PGliteDb> {
    if (opts.dataDir) await mkdir(opts.dataDir, { recursive: true });
    const pg = await PGlite.create({ ...(opts.dataDir ? { dataDir: opts.dataDir } : {}), extensions: { vector } });
    try {
      const owner = wrap(pg);
      await migrate({ exclusive: (fn) => fn(owner), exec: async (_sql, script) => void (await pg.exec(script)) }, await loadMigrations(), opts.log);
      const capabilities = { pgvector: (await owner.query<{ n: number }>(PGVECTOR_SQL)).rows[0]?.n === 1 };
      await opts.prepare?.(owner, capabilities);
      const bypass = (await owner.query<{ bypass: boolean }>(BYPASS_RLS_SQL)).rows[0]?.bypass ?? true;
      return new PGliteDb(pg, capabilities, bypass);
    } catch (err) {
      await pg.close();
      throw err;
    }
  }

  withTenant<T>(tenantId: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    return this.pg.transaction(async (tx) => {
      const sql = wrap(tx);
      await pinTenant(sql, tenantId, this.dropToAppRole);
      return fn(sql);
    });
  }

  streamHeads(): Promise<StreamHead[]> {
    return this.pg.transaction(async (tx) => {
      await tx.query("SELECT set_config('role', $1, true)", [SYSTEM_ROLE]);
      return toStreamHeads((await tx.query<StreamHeadRow>(STREAM_HEADS_SQL)).rows);
    });
  }

  async ping(): Promise<void> {
    await this.pg.query('SELECT 1');
  }

  async close(): Promise<void> {
    if (!this.pg.closed) await this.pg.close();
  }
}
