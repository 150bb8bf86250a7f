import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { DOUBLE, DuckDBInstance, FLOAT, LIST, TIMESTAMPTZ, VARCHAR, listValue, timestampTZValue, type DuckDBConnection, type DuckDBType, type DuckDBValue } from '@duckdb/node-api';

/**
 * A parameter with its DuckDB type spelled out. The client infers a list's type from its first
 * item, which fails for [1, 2.5] (INTEGER) or [null, 'a'], so lists always say what they hold.
 */
export class Typed {
  constructor(
    readonly value: DuckDBValue,
    readonly type: DuckDBType,
  ) {}
}

export type DuckParams = Record<string, DuckDBValue | Typed>;

/** DuckDB refuses a named value the statement does not use, so shared parameter sets are trimmed to the statement. */
function bind(sql: string, params: DuckParams): [Record<string, DuckDBValue>, Record<string, DuckDBType | undefined>] {
  const values: Record<string, DuckDBValue> = {};
  const types: Record<string, DuckDBType | undefined> = {};
  const used = new Set(Array.from(sql.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g), (m) => m[1]));
  for (const [name, param] of Object.entries(params)) {
    if (!used.has(name)) continue;
    values[name] = param instanceof Typed ? param.value : param;
    if (param instanceof Typed) types[name] = param.type;
  }
  return [values, types];
}

/** Rows as plain JS values (TIMESTAMPTZ → Date, BIGINT → bigint, JSON → string). */
export async function duckRows<R>(conn: DuckDBConnection, sql: string, params: DuckParams = {}): Promise<R[]> {
  const reader = await conn.runAndReadAll(sql, ...bind(sql, params));
  return reader.getRowObjectsJS() as R[];
}

export async function duckRun(conn: DuckDBConnection, sql: string, params: DuckParams = {}): Promise<number> {
  return (await conn.run(sql, ...bind(sql, params))).rowsChanged;
}

export const list = (values: readonly (string | null)[]): Typed => new Typed(listValue([...values]), LIST(VARCHAR));
export const doubles = (values: readonly number[]): Typed => new Typed(listValue([...values]), LIST(DOUBLE));
export const vectors = (values: readonly Float32Array[]): Typed =>
  new Typed(listValue(values.map((v) => listValue(Array.from(v)))), LIST(LIST(FLOAT)));
export const floats = (value: Float32Array): Typed => new Typed(listValue(Array.from(value)), LIST(FLOAT));
/**
 * An ISO time as a TIMESTAMPTZ parameter. Comparing columns with a text parameter cast in SQL
 * costs a cast per row on a scan (measured: ~15 ms more over 1M edges).
 */
export const instant = (iso: string): Typed => new Typed(timestampTZValue(BigInt(Date.parse(iso)) * 1000n), TIMESTAMPTZ);

/**
 * `column IN (…)` over many ids. Up to INDEX_LOOKUP_MAX ids become one bound parameter each, which
 * DuckDB answers from an ART index when the filter stands alone (see `indexedRows`); more become
 * one list parameter and a hash semi-join over a scan, which is cheaper than that many lookups.
 */
export const INDEX_LOOKUP_MAX = 256;

export function inList(column: string, ids: readonly string[], params: DuckParams, prefix: string): string {
  if (ids.length > INDEX_LOOKUP_MAX) {
    params[prefix] = list(ids);
    return `${column} IN (SELECT unnest($${prefix}::VARCHAR[]))`;
  }
  const names = ids.map((value, i) => {
    params[`${prefix}${i}`] = value;
    return `$${prefix}${i}::VARCHAR`;
  });
  return names.length === 0 ? 'false' : `${column} IN (${names.join(', ')})`;
}

export async function inTransaction<T>(conn: DuckDBConnection, work: () => Promise<T>): Promise<T> {
  await conn.run('BEGIN TRANSACTION');
  try {
    const result = await work();
    await conn.run('COMMIT');
    return result;
  } catch (err) {
    // A failed statement may already have aborted the transaction; the original error is what matters.
    await conn.run('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * One DuckDB database with a pool of connections. A DuckDB connection runs one statement and one
 * transaction at a time, so concurrent work (another tenant's catch-up, a query) takes its own;
 * the pool grows on demand, so a holder never waits on another holder, and keeps a few idle.
 */
export class DuckPool {
  private readonly idle: DuckDBConnection[] = [];
  private readonly busy = new Set<DuckDBConnection>();
  private closed = false;

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly maxIdle: number,
  ) {}

  static async open(file: string, maxIdle = 4): Promise<DuckPool> {
    if (file !== ':memory:') await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    // Extensions come bundled (json, parquet, icu); never fetch one from the network at query time.
    const instance = await DuckDBInstance.create(file, { autoinstall_known_extensions: 'false' });
    return new DuckPool(instance, maxIdle);
  }

  async use<T>(fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
    const conn = this.idle.pop() ?? (await this.instance.connect());
    this.busy.add(conn);
    try {
      return await fn(conn);
    } finally {
      this.busy.delete(conn);
      if (this.closed || this.idle.length >= this.maxIdle) conn.closeSync();
      else this.idle.push(conn);
    }
  }

  /** Callers finish their work first; connections still busy are closed as they come back. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.closeSync();
    if (this.busy.size === 0) this.instance.closeSync();
  }
}
