/**
 * What runs tiering: the periodic sweep (one `memory.tier` job per tenant and interval, through a
 * real in-process job queue), the processor, the admin routes, and the cold archive on S3
 * (s3rver on loopback) including an outage.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tieringRoutes } from '../../gateway/http/tier-routes.js';
import { DirectorySnapshotStore, S3SnapshotStore } from '../../src/graph/index.js';
import { InProcessJobQueue, type JobContext } from '../../src/jobs/index.js';
import { ColdStore, TieringService, coldPrefix, type ColdRow } from '../../src/memory/index.js';
import { createLogger } from '../../src/obs/index.js';
import { newId } from '../../src/store/index.js';
import { TIER_JOB_KIND, startTieringSweep, tieringProcessors } from '../../workers/processors/tiering.js';
import { backends, openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';
import { startTestS3, type TestS3 } from '../support/index.js';

const log = createLogger('silent');
const DAY_SEC = 86_400;

describe.each(backends())('tiering sweep on %s', (backend) => {
  let t: TestCore;
  let tiering: TieringService;
  let scratch: string;
  let n = 0;
  const tenant = (roles: ('developer' | 'admin')[] = ['admin']) => tenantCtx(`${backend}-sweep${++n}`, 'alice', roles);

  beforeAll(async () => {
    t = await openTestCore(backend);
    scratch = await mkdtemp(path.join(os.tmpdir(), 'aeterna-sweep-'));
    tiering = new TieringService({
      db: t.core.db,
      vectors: t.core.vectors,
      cold: new ColdStore({ store: new DirectorySnapshotStore(path.join(scratch, 'cold')), tmpDir: path.join(scratch, 'tmp'), log }),
      config: t.config.tiering,
      log,
      commits: t.core.commits,
    });
  });
  afterAll(async () => {
    await tiering?.close();
    await t?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  async function coldMemory(tenantId: string): Promise<string> {
    const ctx = tenantCtx(tenantId);
    const { memory } = await t.core.memory.add(ctx, { layer: 'project', projectId: 'p', content: `An old note of ${tenantId} nobody reads any more` });
    await t.core.db.withTenant(tenantId, (sql) =>
      sql.query(
        `UPDATE memories SET created_at = now() - make_interval(secs => $2), updated_at = now() - make_interval(secs => $2),
           last_accessed_at = NULL WHERE id = $1`,
        [memory.id, 200 * DAY_SEC],
      ),
    );
    return memory.id;
  }

  const tierOf = (tenantId: string, id: string) =>
    t.core.db.withTenant(tenantId, async (sql) => (await sql.query<{ tier: string }>('SELECT tier FROM memories WHERE id = $1', [id])).rows[0]?.tier);

  it('enqueues one memory.tier job per tenant and interval; the processor tiers that tenant', async () => {
    const a = tenant();
    const b = tenant();
    const ids = { [a.tenantId]: await coldMemory(a.tenantId), [b.tenantId]: await coldMemory(b.tenantId) };
    const queue = new InProcessJobQueue({
      jobs: { ...t.config.jobs, attempts: 1 },
      deadLetters: { record: async () => undefined },
      log,
      closeGraceMs: 5000,
    });
    const ran: JobContext[] = [];
    const processor = tieringProcessors({ tiering, log })[TIER_JOB_KIND];
    if (!processor) throw new Error('no memory.tier processor');
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (done = resolve));
    await queue.work({
      [TIER_JOB_KIND]: async (job) => {
        await processor(job);
        ran.push(job);
        if ([a.tenantId, b.tenantId].every((id) => ran.some((j) => j.tenantId === id))) done();
      },
    });
    const sweep = startTieringSweep({ db: t.core.db, queue, intervalMs: 60_000, log });
    sweep.stop(); // this test drives the ticks itself
    const now = 1_800_000_000_000;
    expect(await sweep.tick(now)).toBeGreaterThanOrEqual(2);
    await finished;
    expect(await tierOf(a.tenantId, ids[a.tenantId] as string)).toBe('cold');
    expect(await tierOf(b.tenantId, ids[b.tenantId] as string)).toBe('cold');
    const mine = (jobs: JobContext[]) => jobs.filter((j) => j.tenantId === a.tenantId);
    expect(mine(ran)).toMatchObject([{ kind: TIER_JOB_KIND, id: `sweep-${Math.floor(now / 60_000)}-${a.tenantId}`, event: { type: 'tiering.sweep' } }]);

    // Another tick (another process) in the same interval asks for the same job ids: nothing new runs.
    await sweep.tick(now + 59_000 - (now % 60_000));
    await new Promise((r) => setTimeout(r, 200));
    expect(mine(ran)).toHaveLength(1);
    await queue.close();
  });

  it('a zero interval starts no timer and enqueues nothing', async () => {
    const enqueued: unknown[] = [];
    const sweep = startTieringSweep({ db: t.core.db, queue: { enqueue: async (jobs) => void enqueued.push(...jobs) }, intervalMs: 0, log });
    expect(await sweep.tick()).toBe(0);
    sweep.stop();
    expect(enqueued).toEqual([]);
  });

  it('admin routes run tiering and report stats for the caller\'s tenant only', async () => {
    const ctx = tenant();
    const id = await coldMemory(ctx.tenantId);
    const routes = tieringRoutes(tiering);
    const run = routes.find((r) => r.method === 'POST' && r.path === '/v1/admin/tiering/run');
    const stats = routes.find((r) => r.method === 'GET' && r.path === '/v1/admin/tiering/stats');
    if (!run || !stats) throw new Error('routes missing');
    const dry = await run.handle({ tenant: ctx, params: {}, query: { dryRun: 'true' }, body: undefined });
    expect(dry).toMatchObject({ status: 200, body: { tenantId: ctx.tenantId, dryRun: true, classified: { cold: 1 } } });
    expect(await tierOf(ctx.tenantId, id)).toBe('hot');
    const real = await run.handle({ tenant: ctx, params: {}, query: {}, body: undefined });
    expect(real).toMatchObject({ status: 200, body: { moved: { cold: 1 } } });
    const counted = await stats.handle({ tenant: ctx, params: {}, query: {}, body: undefined });
    expect(counted).toMatchObject({ status: 200, body: { tenantId: ctx.tenantId, tiers: { cold: { memories: 1 } }, archive: { files: 1, referencedFiles: 1 } } });
    const dev = tenant(['developer']);
    expect((await rejectionOf(run.handle({ tenant: dev, params: {}, query: {}, body: undefined }))).code).toBe('FORBIDDEN');
  });
});

describe('cold archive on S3', () => {
  let s3: TestS3;
  let cold: ColdStore;
  let scratch: string;

  beforeAll(async () => {
    s3 = await startTestS3();
    scratch = await mkdtemp(path.join(os.tmpdir(), 'aeterna-cold-s3-'));
    cold = new ColdStore({
      store: new S3SnapshotStore({
        kind: 's3',
        bucket: s3.bucket,
        prefix: 'aeterna/cold',
        region: s3.region,
        endpoint: s3.endpoint,
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        forcePathStyle: true,
      }),
      tmpDir: scratch,
      log,
    });
  });
  afterAll(async () => {
    await cold?.close();
    await s3?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  const row = (tenantId: string, content: string): ColdRow => ({
    id: newId(),
    tenantId,
    layer: 'team',
    scopeId: 'core',
    content,
    metadata: '{"a": [1, 2]}',
    tags: ['x', 'y'],
    importance: 0.25,
    embeddingModel: 'hash-8',
    embedding: Float32Array.from([0.5, -0.25, 0.125, 0, 1, -1, 0.3, 0.7]),
    contentHash: createHash('sha256').update(content).digest('hex'),
    version: 3,
    accessCount: 7,
    lastAccessedUs: 1_700_000_000_123_456n,
    createdBy: '{"userId": "alice"}',
    createdUs: 1_600_000_000_000_001n,
    updatedUs: 1_650_000_000_999_999n,
  });

  it('writes, verifies and reads back every column exactly, under {tenant}/cold/{yyyy-mm}/', async () => {
    const rows = [row('acme', 'first archived memory'), row('acme', 'second, with ünïcode ✓')];
    const batch = await cold.write('acme', '2025-11', rows);
    expect(batch.key).toMatch(/^acme\/cold\/2025-11\/[0-9a-f-]{36}\.parquet$/);
    expect(await cold.list('acme')).toEqual([batch.key, batch.manifestKey].sort());
    const back = await cold.read('acme', batch.key, rows.map((r) => r.id));
    for (const r of rows) {
      const got = back.get(r.id);
      expect(got).toEqual({ ...r, embedding: expect.any(Float32Array) as Float32Array, importance: expect.any(Number) as number });
      expect(Array.from(got?.embedding ?? [])).toEqual(Array.from(r.embedding ?? []));
      expect(Math.fround(got?.importance ?? -1)).toBe(Math.fround(r.importance));
    }
    expect(coldPrefix('acme')).toBe('acme/cold/');
    // Another tenant's key is refused before anything is fetched.
    const err = await rejectionOf(cold.read('other', batch.key, [rows[0]?.id as string]));
    expect(err).toMatchObject({ code: 'INTERNAL', details: { key: batch.key } });
  });

  it('an unreachable store is UNAVAILABLE naming the key', async () => {
    const batch = await cold.write('acme', '2025-12', [row('acme', 'will be unreachable')]);
    await s3.stop();
    const err = await rejectionOf(cold.read('acme', batch.key, []));
    expect(err.code).toBe('UNAVAILABLE');
    expect(String(err.details?.['key'])).toContain('acme/cold/2025-12/');
  });
});
