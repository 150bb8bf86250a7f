import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PGliteDb, PostgresDb, loadMigrations, migrate, type Migration, type Sql } from '../../src/store/index.js';
import { createTestDatabase, requireService } from '../support/index.js';

/** An in-memory migration target that records what it ran: the runner's logic without a database. */
function fakeTarget(applied: Map<string, string>) {
  const ran: string[] = [];
  const sql: Sql = {
    async query<R>(text: string, params?: readonly unknown[]) {
      if (text.startsWith('SELECT name, checksum')) {
        return { rows: [...applied].map(([name, checksum]) => ({ name, checksum })) as R[], affectedRows: 0 };
      }
      if (text.startsWith('INSERT INTO aeterna_migrations')) applied.set(String(params?.[0]), String(params?.[1]));
      return { rows: [], affectedRows: 0 };
    },
  };
  return { ran, target: { exclusive: <T>(fn: (s: Sql) => Promise<T>) => fn(sql), exec: async (_s: Sql, script: string) => void ran.push(script) } };
}

describe('migration runner', () => {
  const migrations: Migration[] = [
    { name: '001_a.sql', sql: 'A', checksum: 'ca' },
    { name: '002_b.sql', sql: 'B', checksum: 'cb' },
  ];

  it('applies pending migrations in order, once, with a progress line each', async () => {
    const applied = new Map<string, string>();
    const { ran, target } = fakeTarget(applied);
    const lines: string[] = [];
    expect(await migrate(target, migrations, (l) => lines.push(l))).toEqual(['001_a.sql', '002_b.sql']);
    expect(ran.slice(1)).toEqual(['A', 'B']);
    expect(lines).toEqual(['migration 1/2: 001_a.sql', 'migration 2/2: 002_b.sql', 'migrations: applied 2, 2 in all']);
    expect(await migrate(target, migrations)).toEqual([]);
  });

  it('refuses to start when an applied migration file was edited', async () => {
    const applied = new Map([['001_a.sql', 'old-checksum']]);
    const { target } = fakeTarget(applied);
    await expect(migrate(target, migrations)).rejects.toThrow(/001_a.sql was changed after it was applied/);
  });

  it('ships migrations that are named in order and non-empty', async () => {
    const shipped = await loadMigrations();
    expect(shipped.length).toBeGreaterThan(0);
    expect(shipped.map((m) => m.name)).toEqual([...shipped.map((m) => m.name)].sort());
    for (const m of shipped) expect(m.name).toMatch(/^\d{3}_[a-z0-9_]+\.sql$/);
  });
});

describe('PGlite data directory', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-pglite-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps its rows across a close and reopen, migrating only once', async () => {
    const first: string[] = [];
    const db = await PGliteDb.open({ dataDir: dir, log: (l) => first.push(l) });
    await db.withTenant('keep', (sql) =>
      sql.query("INSERT INTO memories (id, tenant_id, layer, scope_id, content, content_hash) VALUES (gen_random_uuid(), 'keep', 'org', 'o', 'kept', 'h')"),
    );
    await db.close();
    const second: string[] = [];
    const again = await PGliteDb.open({ dataDir: dir, log: (l) => second.push(l) });
    const rows = await again.withTenant('keep', (sql) => sql.query<{ content: string }>('SELECT content FROM memories'));
    await again.close();
    expect(first.some((l) => l.includes('001_core.sql'))).toBe(true);
    expect(second).toEqual([]);
    expect(rows.rows).toEqual([{ content: 'kept' }]);
  });

  it('fails with a clear error on a data directory that is not PGlite data', async () => {
    const bogus = path.join(dir, 'bogus');
    await rm(bogus, { recursive: true, force: true });
    await mkdir(bogus);
    await writeFile(path.join(bogus, 'PG_VERSION'), 'not a version\n');
    await expect(PGliteDb.open({ dataDir: bogus })).rejects.toThrow();
  });
});

const pgUrl = requireService('postgres');

describe.skipIf(!pgUrl)('PostgreSQL migrations', () => {
  it('lets several processes start at once: one migrates, none fails', async () => {
    const database = await createTestDatabase(pgUrl as string);
    try {
      const dbs = await Promise.all(Array.from({ length: 4 }, () => PostgresDb.open({ url: database.url, poolSize: 2 })));
      await Promise.all(dbs.map((d) => d.close()));
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      const { rows } = await client.query('SELECT name FROM aeterna_migrations');
      await client.end();
      expect(rows.map((r: { name: string }) => r.name)).toEqual((await loadMigrations()).map((m) => m.name));
    } finally {
      await database.drop();
    }
  });

  it('says so when the server cannot be reached', async () => {
    await expect(PostgresDb.open({ url: 'postgres://postgres@127.0.0.1:1/none', poolSize: 1 })).rejects.toThrow(/ECONNREFUSED|connect/);
  });
});
