import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';

/**
 * Row-level security is the last line of defence: these queries are written the way a buggy or
 * hostile piece of code would write them, and the database itself must still refuse.
 */
describe.each(backends())('row-level security on %s', (backend) => {
  let t: TestCore;
  let victimId: string;

  beforeAll(async () => {
    t = await openTestCore(backend);
    const { memory } = await t.core.memory.add(tenantCtx('victim'), { layer: 'org', orgId: 'o', content: 'victim payroll data' });
    victimId = memory.id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it("returns nothing of another tenant's rows even with a forged tenant id in the WHERE clause", async () => {
    const rows = await t.core.db.withTenant('attacker', async (sql) => ({
      memories: (await sql.query("SELECT id FROM memories WHERE tenant_id = 'victim'")).rows,
      byId: (await sql.query('SELECT id FROM memories WHERE id = $1', [victimId])).rows,
      events: (await sql.query("SELECT seq FROM events WHERE tenant_id = 'victim'")).rows,
      streams: (await sql.query('SELECT tenant_id FROM tenant_streams')).rows,
      all: (await sql.query('SELECT count(*)::int AS n FROM memories')).rows,
    }));
    expect(rows).toEqual({ memories: [], byId: [], events: [], streams: [], all: [{ n: 0 }] });
    // The same query under the right tenant does see the row: the filter above was RLS, not a typo.
    const own = await t.core.db.withTenant('victim', (sql) => sql.query('SELECT id FROM memories WHERE id = $1', [victimId]));
    expect(own.rows).toEqual([{ id: victimId }]);
  });

  it("cannot change or delete another tenant's rows", async () => {
    const changed = await t.core.db.withTenant('attacker', async (sql) => ({
      update: (await sql.query("UPDATE memories SET content = 'pwned' WHERE tenant_id = 'victim'")).affectedRows,
    }));
    expect(changed.update).toBe(0);
    const err = await rejectionOf(
      t.core.db.withTenant('attacker', (sql) =>
        sql.query(
          `INSERT INTO memories (id, tenant_id, layer, scope_id, content, content_hash)
           VALUES (gen_random_uuid(), 'victim', 'org', 'o', 'planted', 'h')`,
        ),
      ),
    );
    expect(err.message).toMatch(/row-level security/);
    const eventErr = await rejectionOf(t.core.db.withTenant('attacker', (sql) => sql.query("DELETE FROM events WHERE tenant_id = 'attacker'")));
    expect(eventErr.message).toMatch(/permission denied/);
    const stillThere = await t.core.memory.get(tenantCtx('victim'), victimId);
    expect(stillThere.content).toBe('victim payroll data');
  });

  it('runs tenant transactions as a role that is subject to RLS', async () => {
    const who = await t.core.db.withTenant('attacker', (sql) =>
      sql.query<{ user: string; bypass: boolean }>(
        'SELECT current_user AS user, (rolsuper OR rolbypassrls) AS bypass FROM pg_roles WHERE rolname = current_user',
      ),
    );
    expect(who.rows).toEqual([{ user: 'aeterna_app', bypass: false }]);
  });

  it('rejects a tenant id with SQL in it before any query', async () => {
    let ran = false;
    const err = await rejectionOf(
      t.core.db.withTenant("x'; DROP TABLE memories; --", async () => {
        ran = true;
      }),
    );
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(ran).toBe(false);
    // "dropbox" is a fine tenant id: the rule is a pattern, not a keyword blacklist.
    await expect(t.core.db.withTenant('dropbox', async (sql) => (await sql.query('SELECT 1 AS one')).rows)).resolves.toEqual([{ one: 1 }]);
  });

  it('rolls the whole transaction back when a statement fails half-way', async () => {
    const ctx = tenantCtx('halfway');
    await rejectionOf(
      t.core.db.withTenant('halfway', async (sql) => {
        await sql.query(
          `INSERT INTO memories (id, tenant_id, layer, scope_id, content, content_hash) VALUES (gen_random_uuid(), 'halfway', 'org', 'o', 'first', 'h')`,
        );
        await sql.query('SELECT * FROM no_such_table');
      }),
    );
    expect((await t.core.memory.list(ctx, {})).items).toEqual([]);
  });
});
