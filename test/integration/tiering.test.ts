/**
 * Tiered storage against a real database (PGlite, and PostgreSQL when the runner has one) and a
 * real DuckDB writing Parquet to a directory store: classification marks, cold moves to stubs,
 * search and list over stubs, restores with full-row checksums, damaged archives, crashes
 * between the steps of a move or a restore, and tenant isolation.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TieringConfig } from '../../src/config.js';
import { ColdStore, MemoryService, TieringService, type ColdRestorer } from '../../src/memory/index.js';
import { createLogger } from '../../src/obs/index.js';
import { DirectorySnapshotStore } from '../../src/graph/index.js';
import type { Memory } from '../../src/protocol/index.js';
import type { Db } from '../../src/store/index.js';
import type { TenantContext } from '../../src/tenancy/index.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';

const log = createLogger('silent');

interface Rig {
  tiering: TieringService;
  memory: MemoryService;
  coldDir: string;
}

describe.each(backends())('tiered storage on %s', (backend) => {
  let t: TestCore;
  let rig: Rig;
  let scratch: string;
  let n = 0;
  const tenant = (roles: ('viewer' | 'developer' | 'admin')[] = ['developer']) => tenantCtx(`${backend}-tier${++n}`, 'alice', roles);

  /** A TieringService and a MemoryService that restores through it, over the test core's database. */
  function makeRig(opts: { db?: Db; cold?: ColdRestorer; config?: Partial<TieringConfig>; coldDir?: string } = {}): Rig {
    const coldDir = opts.coldDir ?? path.join(scratch, `cold-${++n}`);
    const config: TieringConfig = { ...t.config.tiering, batchSize: 2, orphanGraceSec: 0, previewTokens: 4, ...opts.config };
    const tiering = new TieringService({
      db: opts.db ?? t.core.db,
      vectors: t.core.vectors,
      cold: new ColdStore({ store: new DirectorySnapshotStore(coldDir), tmpDir: path.join(scratch, 'tmp'), log }),
      config,
      log,
      commits: t.core.commits,
    });
    const memory = memoryService({ commits: t.core.commits, cold: opts.cold ?? tiering });
    return { tiering, memory, coldDir };
  }

  /** A MemoryService over the test core's stores, configured as the core's. */
  function memoryService(extra: Partial<ConstructorParameters<typeof MemoryService>[0]> = {}): MemoryService {
    return new MemoryService({
      db: t.core.db,
      embeddings: t.core.embeddings,
      vectors: t.core.vectors,
      maxContentBytes: t.config.limits.maxContentBytes,
      dedupThreshold: t.config.memory.dedupThreshold,
      recencyHalfLifeDays: t.config.memory.recencyHalfLifeDays,
      ...extra,
    });
  }

  beforeAll(async () => {
    t = await openTestCore(backend);
    scratch = await mkdtemp(path.join(os.tmpdir(), 'aeterna-tiering-'));
    rig = makeRig();
  });
  afterAll(async () => {
    await rig?.tiering.close();
    await t?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** Moves a memory's clock back: idle for `idleDays`, alive for `lifeDays`, used `accesses` times. */
  async function age(ctx: TenantContext, id: string, idleDays: number, lifeDays: number, accesses = 0): Promise<void> {
    await t.core.db.withTenant(ctx.tenantId, (sql) =>
      sql.query(
        `UPDATE memories SET created_at = now() - make_interval(secs => $2), updated_at = now() - make_interval(secs => $2),
           last_accessed_at = now() - make_interval(secs => $3), access_count = $4 WHERE id = $1`,
        [id, lifeDays * 86_400, idleDays * 86_400, accesses],
      ),
    );
  }

  /** Every stored column of a memory, timestamps to the microsecond and the embedding exactly. */
  async function fullRow(ctx: TenantContext, id: string): Promise<Record<string, unknown>> {
    return t.core.db.withTenant(ctx.tenantId, async (sql) => {
      const res = await sql.query<Record<string, unknown>>(
        `SELECT id, tenant_id, layer, scope_id, content, metadata::text AS metadata, tags, importance::text AS importance,
                embedding_model, content_hash, version, access_count, created_by::text AS created_by,
                to_char(last_accessed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS last_accessed_at,
                to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS created_at,
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS updated_at,
                tier, cold_key
           FROM memories WHERE id = $1`,
        [id],
      );
      const vectors = await t.core.vectors.vectorsOf(sql, [id]);
      const row = res.rows[0];
      if (!row) throw new Error(`no row ${id}`);
      return { ...row, embedding: Array.from(vectors.get(id) ?? []) };
    });
  }

  const checksum = (row: Record<string, unknown>, omit: string[] = ['tier', 'cold_key']): string =>
    createHash('sha256')
      .update(JSON.stringify(Object.fromEntries(Object.entries(row).filter(([k]) => !omit.includes(k)))))
      .digest('hex');

  async function tieredEvents(ctx: TenantContext): Promise<unknown[]> {
    const page = await rig.memory.events(ctx, { since: 0, limit: 1000 });
    return page.events.filter((e) => e.type === 'memory.tiered').map((e) => e.data);
  }

  async function addAged(ctx: TenantContext, content: string, idleDays: number, lifeDays: number, accesses = 0, extra: Record<string, unknown> = {}): Promise<Memory> {
    const { memory } = await rig.memory.add(ctx, { layer: 'project', projectId: 'apollo', content, ...extra });
    await age(ctx, memory.id, idleDays, lifeDays, accesses);
    return memory;
  }

  async function archiveFiles(dir: string, ctx: TenantContext): Promise<string[]> {
    const root = path.join(dir, ctx.tenantId, 'cold');
    const out: string[] = [];
    for (const month of await readdir(root).catch(() => [] as string[])) {
      for (const file of await readdir(path.join(root, month))) if (!file.startsWith('.')) out.push(`${ctx.tenantId}/cold/${month}/${file}`);
    }
    return out.sort();
  }

  const LONG = 'The billing service retries failed card payments three times with exponential backoff before it emails the customer';

  it('marks hot and warm, moves cold to stubs, and appends memory.tiered for every change', async () => {
    const ctx = tenant();
    const hot = await addAged(ctx, 'hot: read yesterday', 1, 30, 3);
    const warm = await addAged(ctx, 'warm: read 20 days ago, rarely', 20, 60, 2);
    const busy = await addAged(ctx, 'busy: idle 20 days but used twice a day', 20, 60, 120);
    const cold = await addAged(ctx, LONG, 120, 400, 5);
    const oldButUsed = await addAged(ctx, 'old but used weekly: idle 100 days, 2 a week', 100, 350, 100);

    const report = await rig.tiering.run(ctx.tenantId);
    expect(report).toMatchObject({ scanned: 5, classified: { hot: 2, warm: 2, cold: 1 }, moved: { hot: 0, warm: 2, cold: 1 }, skipped: 0, failures: [] });
    const tiers = Object.fromEntries(
      await Promise.all([hot, warm, busy, cold, oldButUsed].map(async (m) => [m.content.split(':')[0], (await fullRow(ctx, m.id))['tier']])),
    );
    expect(tiers).toEqual({ hot: 'hot', warm: 'warm', busy: 'hot', [LONG.split(':')[0] as string]: 'cold', 'old but used weekly': 'warm' });
    expect(await tieredEvents(ctx)).toEqual(
      expect.arrayContaining([
        { id: warm.id, layer: 'project', scopeId: 'apollo', from: 'hot', to: 'warm' },
        { id: oldButUsed.id, layer: 'project', scopeId: 'apollo', from: 'hot', to: 'warm' },
        { id: cold.id, layer: 'project', scopeId: 'apollo', from: 'hot', to: 'cold' },
      ]),
    );
    expect(await tieredEvents(ctx)).toHaveLength(3);

    // A second run finds nothing to change.
    const again = await rig.tiering.run(ctx.tenantId);
    expect(again.moved).toEqual({ hot: 0, warm: 0, cold: 0 });
    expect(await tieredEvents(ctx)).toHaveLength(3);
  });

  it('a stub keeps scope, tags, importance, hashes and the embedding, but not the content; the archive is per tenant and month', async () => {
    const ctx = tenant();
    const m = await addAged(ctx, LONG, 120, 400, 0, { tags: ['billing', 'retries'], importance: 0.8, metadata: { source: 'runbook', n: 1 } });
    const before = await fullRow(ctx, m.id);
    const statsBefore = await rig.tiering.stats(ctx.tenantId);
    await rig.tiering.run(ctx.tenantId);
    const stub = await fullRow(ctx, m.id);

    expect(stub).toMatchObject({ tier: 'cold', metadata: '{}', tags: ['billing', 'retries'], content_hash: before['content_hash'], version: 1 });
    expect(stub['embedding']).toEqual(before['embedding']);
    expect(stub['content']).not.toBe(LONG);
    expect(String(stub['content']).length).toBeLessThan(LONG.length / 2);
    expect(LONG.startsWith(String(stub['content']).replace(/…$/, ''))).toBe(true);
    const month = String(before['last_accessed_at']).slice(0, 7);
    expect(stub['cold_key']).toMatch(new RegExp(`^${ctx.tenantId}/cold/${month}/[0-9a-f-]{36}\\.parquet$`));

    // The manifest vouches for the file with its sha256.
    const files = await archiveFiles(rig.coldDir, ctx);
    expect(files).toEqual([String(stub['cold_key']), String(stub['cold_key']).replace(/\.parquet$/, '.manifest.json')].sort());
    const manifest = JSON.parse(await readFile(path.join(rig.coldDir, String(stub['cold_key']).replace(/\.parquet$/, '.manifest.json')), 'utf8')) as {
      tenantId: string;
      month: string;
      files: { key: string; sha256: string; rows: number }[];
    };
    const bytes = await readFile(path.join(rig.coldDir, String(stub['cold_key'])));
    expect(manifest).toMatchObject({ tenantId: ctx.tenantId, month, files: [{ key: stub['cold_key'], rows: 1, sha256: createHash('sha256').update(bytes).digest('hex') }] });

    // The live table shrank.
    const statsAfter = await rig.tiering.stats(ctx.tenantId);
    expect(statsBefore.tiers.hot).toEqual({ memories: 1, contentBytes: Buffer.byteLength(LONG) });
    expect(statsAfter.tiers.cold.memories).toBe(1);
    expect(statsAfter.tiers.cold.contentBytes).toBeLessThan(Buffer.byteLength(LONG) / 2);
    expect(statsAfter.archive).toEqual({ files: 1, referencedFiles: 1 });
  });

  it('search and list still find a cold memory and say tier "cold"; get restores it whole and marks it warm', async () => {
    const ctx = tenant();
    const m = await addAged(ctx, LONG, 120, 400, 0, { tags: ['billing'], metadata: { source: 'runbook' } });
    const other = await addAged(ctx, 'Lunch menus are posted every Monday in the kitchen', 1, 2, 1);
    await rig.tiering.run(ctx.tenantId);

    const found = await rig.memory.search(ctx, { query: LONG, projectId: 'apollo', layers: ['project'], limit: 1 });
    expect(found.results[0]?.memory).toMatchObject({ id: m.id, tier: 'cold', metadata: {} });
    expect(found.results[0]?.similarity).toBeGreaterThan(0.99);
    expect(found.results[0]?.memory.content).not.toBe(LONG);
    const listed = await rig.memory.list(ctx, { layer: 'project', projectId: 'apollo' });
    expect(listed.items.map((i) => [i.id, i.tier])).toEqual(expect.arrayContaining([[m.id, 'cold'], [other.id, 'hot']]));

    const got = await rig.memory.get(ctx, m.id);
    expect(got).toMatchObject({ id: m.id, content: LONG, metadata: { source: 'runbook' }, tags: ['billing'], tier: 'cold', version: 1 });
    const row = await fullRow(ctx, m.id);
    expect(row).toMatchObject({ tier: 'warm', cold_key: null, content: LONG, metadata: '{"source": "runbook"}' });
    expect(await rig.memory.get(ctx, m.id)).toMatchObject({ content: LONG, tier: 'warm' });
    expect((await tieredEvents(ctx)).at(-1)).toEqual({ id: m.id, layer: 'project', scopeId: 'apollo', from: 'cold', to: 'warm' });
  });

  it('round trip: cold and back leaves every column identical (content, metadata, tags, embedding, version, timestamps)', async () => {
    const ctx = tenant();
    const metadata = { source: 'runbook', nested: { list: [1, 2.5, 'x', null], unicode: 'naïve – 東京 🚀' }, empty: {} };
    const ms = [
      await addAged(ctx, LONG, 120, 400, 4, { tags: ['billing', 'retries'], importance: 0.37, metadata }),
      await addAged(ctx, `${LONG} (second, with "quotes", a tab\tand a newline\nhere)`, 150, 500, 0),
      await addAged(ctx, 'x'.repeat(20_000), 200, 600, 1, { metadata: { big: 'y'.repeat(4000) } }),
    ];
    // Not only never-updated rows: a later version round-trips too.
    const updated = await rig.memory.update(ctx, ms[1]?.id, { version: 1, content: `${LONG} (second, edited)`, tags: ['edited'] });
    await age(ctx, updated.id, 130, 500, 0);
    const before = await Promise.all(ms.map((m) => fullRow(ctx, m.id)));

    const report = await rig.tiering.run(ctx.tenantId);
    expect(report.moved.cold).toBe(3);
    expect(report.batches.length).toBeGreaterThanOrEqual(2); // batchSize 2
    for (const m of ms) expect((await fullRow(ctx, m.id))['tier']).toBe('cold');

    // A system restore counts no access: the whole row must come back bit for bit.
    expect(await rig.tiering.restore(ctx.tenantId, ms.map((m) => m.id))).toBe(3);
    const after = await Promise.all(ms.map((m) => fullRow(ctx, m.id)));
    for (const [i, row] of after.entries()) {
      expect(row).toMatchObject({ tier: 'warm', cold_key: null });
      expect(checksum(row)).toBe(checksum(before[i] as Record<string, unknown>));
      expect(row).toEqual({ ...before[i], tier: 'warm', cold_key: null });
    }

    // Through get: the same, plus the access it records.
    await age(ctx, ms[0]?.id as string, 120, 400, 4);
    const again = await fullRow(ctx, ms[0]?.id as string);
    await rig.tiering.run(ctx.tenantId);
    await rig.memory.get(ctx, ms[0]?.id);
    const viaGet = await fullRow(ctx, ms[0]?.id as string);
    expect(viaGet['access_count']).toBe(5);
    expect(checksum(viaGet, ['tier', 'cold_key', 'access_count', 'last_accessed_at'])).toBe(checksum(again, ['tier', 'cold_key', 'access_count', 'last_accessed_at']));
  });

  it('writes to a cold memory restore it first, so nothing archived is lost (update, feedback, duplicate add)', async () => {
    const ctx = tenant();
    const a = await addAged(ctx, LONG, 120, 400, 0, { metadata: { keep: 'me' }, tags: ['one'] });
    const b = await addAged(ctx, 'Second cold memory about the on-call rotation and its escalation policy for weekends', 120, 400, 0, { metadata: { keep: 'too' } });
    const c = await addAged(ctx, 'Third cold memory about database vacuum schedules during the quarterly maintenance window', 120, 400, 0, { metadata: { keep: 'three' } });
    await rig.tiering.run(ctx.tenantId);

    const updated = await rig.memory.update(ctx, a.id, { version: 1, tags: ['one', 'two'] });
    expect(updated).toMatchObject({ content: LONG, metadata: { keep: 'me' }, tags: ['one', 'two'], version: 2, tier: 'warm' });
    const rated = await rig.memory.feedback(ctx, b.id, { type: 'helpful' });
    expect(rated).toMatchObject({ content: b.content, metadata: { keep: 'too' }, tier: 'warm' });
    const dup = await rig.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: c.content, metadata: { extra: 1 } });
    expect(dup).toMatchObject({ deduplicated: true, duplicateOf: c.id, memory: { content: c.content, metadata: { keep: 'three', extra: 1 }, tier: 'warm' } });
  });

  it('a search hit on a stub counts as an access, and the next run brings it back', async () => {
    const ctx = tenant();
    const m = await addAged(ctx, LONG, 120, 400, 0);
    await rig.tiering.run(ctx.tenantId);
    expect((await fullRow(ctx, m.id))['tier']).toBe('cold');
    await rig.memory.search(ctx, { query: LONG, projectId: 'apollo', layers: ['project'], limit: 1 });
    const report = await rig.tiering.run(ctx.tenantId);
    expect(report.restored).toBe(1);
    expect(await fullRow(ctx, m.id)).toMatchObject({ tier: 'hot', content: LONG });
  });

  it('a damaged archive is a clear INTERNAL error naming the key; the row stays a stub and nothing is deleted', async () => {
    const ctx = tenant();
    const m = await addAged(ctx, LONG, 120, 400, 0, { metadata: { source: 'runbook' } });
    await rig.tiering.run(ctx.tenantId);
    const stub = await fullRow(ctx, m.id);
    const key = String(stub['cold_key']);
    const file = path.join(rig.coldDir, key);
    const good = await readFile(file);
    const bad = Buffer.from(good);
    const at = Math.floor(bad.length / 2);
    bad.writeUInt8(bad.readUInt8(at) ^ 0xff, at);
    await writeFile(file, bad);

    const err = await rejectionOf(rig.memory.get(ctx, m.id));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain(key);
    expect(err.message).toContain('checksum mismatch');
    expect(err.details).toMatchObject({ key });
    // Still a stub, access not counted (the transaction rolled back), archive untouched.
    expect(await fullRow(ctx, m.id)).toEqual(stub);
    expect(await readFile(file)).toEqual(bad);
    // A sweep that wants it back reports the file and carries on.
    await rig.memory.search(ctx, { query: LONG, projectId: 'apollo', layers: ['project'], limit: 1 });
    const report = await rig.tiering.run(ctx.tenantId);
    expect(report.failures).toEqual([{ key, code: 'INTERNAL', message: expect.stringContaining('checksum mismatch') as string }]);
    expect(report.orphansRemoved).toBe(0);
    expect(await readFile(file)).toEqual(bad);

    // A missing manifest is refused the same way.
    const manifestFile = file.replace(/\.parquet$/, '.manifest.json');
    const manifest = await readFile(manifestFile);
    await rm(manifestFile);
    await writeFile(file, good);
    const missing = await rejectionOf(rig.memory.get(ctx, m.id));
    expect(missing.code).toBe('INTERNAL');
    expect(missing.details).toMatchObject({ key });
    expect(missing.message).toContain('manifest');

    // Repaired, the memory comes back whole.
    await writeFile(manifestFile, manifest);
    expect(await rig.memory.get(ctx, m.id)).toMatchObject({ content: LONG, metadata: { source: 'runbook' } });
  });

  it('a crash after the Parquet write and before the stub transaction leaves the memory whole in the table', async () => {
    const ctx = tenant();
    const coldDir = path.join(scratch, `crash-${++n}`);
    let crashed = false;
    // The database "dies" at the first transaction opened once an archive manifest exists.
    const dying: Db = {
      kind: t.core.db.kind,
      capabilities: t.core.db.capabilities,
      streamHeads: () => t.core.db.streamHeads(),
      ping: () => t.core.db.ping(),
      close: async () => undefined,
      withTenant: async (tenantId, fn) => {
        if (!crashed && (await archiveFiles(coldDir, ctx)).some((f) => f.endsWith('.manifest.json'))) {
          crashed = true;
          throw new Error('simulated crash between the archive write and the stub transaction');
        }
        return t.core.db.withTenant(tenantId, fn);
      },
    };
    const crashing = makeRig({ db: dying, coldDir });
    const m = await addAged(ctx, LONG, 120, 400, 0, { metadata: { source: 'runbook' }, tags: ['billing'] });
    const before = await fullRow(ctx, m.id);

    await expect(crashing.tiering.run(ctx.tenantId)).rejects.toThrow(/simulated crash/);
    expect(crashed).toBe(true);
    expect(await fullRow(ctx, m.id)).toEqual(before);
    const orphans = await archiveFiles(coldDir, ctx);
    expect(orphans).toHaveLength(2);
    expect(await tieredEvents(ctx)).toEqual([]);

    // The next run moves it properly and removes the file nothing refers to.
    const healthy = makeRig({ coldDir });
    const report = await healthy.tiering.run(ctx.tenantId);
    expect(report).toMatchObject({ moved: { cold: 1 }, orphansRemoved: 1 });
    const stub = await fullRow(ctx, m.id);
    expect(await archiveFiles(coldDir, ctx)).toEqual([String(stub['cold_key']), String(stub['cold_key']).replace(/\.parquet$/, '.manifest.json')].sort());
    expect(orphans).not.toContain(stub['cold_key']);
    expect(await healthy.tiering.restore(ctx.tenantId, [m.id])).toBe(1);
    expect(await fullRow(ctx, m.id)).toEqual({ ...before, tier: 'warm' });
    await Promise.all([crashing.tiering.close(), healthy.tiering.close()]);
  });

  it('a crash after reading the archive and before the restore commits leaves the stub and its archive as they were', async () => {
    const ctx = tenant();
    const m = await addAged(ctx, LONG, 120, 400, 0);
    await rig.tiering.run(ctx.tenantId);
    const stub = await fullRow(ctx, m.id);
    const files = await archiveFiles(rig.coldDir, ctx);
    const dying: ColdRestorer = {
      async restoreLocked(sql, tenantId, s, actor) {
        await rig.tiering.restoreLocked(sql, tenantId, s, actor);
        throw new Error('simulated crash before the restore commits');
      },
    };
    const crashing = makeRig({ cold: dying, coldDir: rig.coldDir });
    await expect(crashing.memory.get(ctx, m.id)).rejects.toThrow(/simulated crash/);
    expect(await fullRow(ctx, m.id)).toEqual(stub);
    expect(await archiveFiles(rig.coldDir, ctx)).toEqual(files);
    expect((await tieredEvents(ctx)).filter((e) => (e as { to: string }).to === 'warm')).toEqual([]);
    expect(await rig.memory.get(ctx, m.id)).toMatchObject({ content: LONG });
    await crashing.tiering.close();
  });

  it('tenants are isolated: stubs under RLS, archive keys under the tenant, and a forged key is refused', async () => {
    const a = tenant();
    const b = tenant();
    const ma = await addAged(a, LONG, 120, 400, 0);
    const mb = await addAged(b, 'Tenant B keeps its release checklist in the wiki under Ops and reviews it monthly', 120, 400, 0);
    await rig.tiering.run(a.tenantId);
    await rig.tiering.run(b.tenantId);
    const stubA = await fullRow(a, ma.id);
    expect(String(stubA['cold_key']).startsWith(`${a.tenantId}/cold/`)).toBe(true);
    expect(String((await fullRow(b, mb.id))['cold_key']).startsWith(`${b.tenantId}/cold/`)).toBe(true);

    // B cannot see A's stub by id, search or forged WHERE clause.
    expect((await rejectionOf(rig.memory.get(b, ma.id))).code).toBe('NOT_FOUND');
    const seen = await t.core.db.withTenant(b.tenantId, (sql) => sql.query('SELECT id FROM memories WHERE tenant_id = $1', [a.tenantId]));
    expect(seen.rows).toEqual([]);
    const stats = await rig.tiering.stats(b.tenantId);
    expect(stats.tiers.cold.memories).toBe(1);

    // B's stub made to point at A's archive: refused by key, and A's content never reaches B.
    await t.core.db.withTenant(b.tenantId, (sql) => sql.query('UPDATE memories SET cold_key = $2 WHERE id = $1', [mb.id, stubA['cold_key']]));
    const err = await rejectionOf(rig.memory.get(b, mb.id));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain(`not a cold archive key of tenant ${b.tenantId}`);
    expect(JSON.stringify(err)).not.toContain(LONG.slice(10, 40));
    expect(await rig.memory.get(a, ma.id)).toMatchObject({ content: LONG });
  });

  it('a dry run classifies and changes nothing; admin-only entry points check the role and the input', async () => {
    const ctx = tenant(['admin']);
    const m = await addAged(ctx, LONG, 120, 400, 0);
    const dry = await rig.tiering.runFor(ctx, { dryRun: 'true' });
    expect(dry).toMatchObject({ dryRun: true, classified: { cold: 1 }, moved: { hot: 0, warm: 0, cold: 0 } });
    expect((await fullRow(ctx, m.id))['tier']).toBe('hot');
    expect((await rejectionOf(rig.tiering.runFor({ ...ctx, roles: ['developer'] }, {}))).code).toBe('FORBIDDEN');
    expect((await rejectionOf(rig.tiering.statsFor({ ...ctx, roles: ['viewer'] }))).code).toBe('FORBIDDEN');
    expect((await rejectionOf(rig.tiering.runFor(ctx, { dryRun: 'maybe' }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(rig.tiering.runFor(ctx, { other: 1 }))).code).toBe('INVALID_ARGUMENT');
    const real = await rig.tiering.runFor(ctx, {});
    expect(real.moved.cold).toBe(1);
    expect((await rig.tiering.statsFor(ctx)).tiers.cold.memories).toBe(1);
  });

  it('without a cold store, using a cold memory is UNAVAILABLE rather than a silent stub', async () => {
    const ctx = tenant();
    const m = await addAged(ctx, LONG, 120, 400, 0);
    await rig.tiering.run(ctx.tenantId);
    const bare = memoryService();
    const err = await rejectionOf(bare.get(ctx, m.id));
    expect(err).toMatchObject({ code: 'UNAVAILABLE', details: { id: m.id } });
  });
});
