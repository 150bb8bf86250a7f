import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BULLMQ_PREFIX, BullMqJobQueue, PendingJobs } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { TEST_JWT_SECRET } from '../support/backends.js';
import { createTestDatabase, requireService, type TestDatabase } from '../support/index.js';
import { killAllNodes, spawnWorker, workerReady, type WorkerNode } from '../support/nodes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SLOW_WORKER = path.join(ROOT, 'test/e2e/fixtures/slow-worker.ts');

describe('the worker process without cluster mode', () => {
  it('refuses to start and says why', async () => {
    const worker = spawnWorker({ AETERNA_REDIS_URL: '', AETERNA_DATABASE_URL: '' });
    expect(await worker.exited).toBe(2);
    expect(worker.output()).toMatch(/workers need cluster mode: set AETERNA_REDIS_URL/);
  });
});

const pgUrl = requireService('postgres');
const redisUrl = requireService('redis');

describe.skipIf(!pgUrl || !redisUrl)('two worker processes on real Redis and PostgreSQL', { timeout: 90_000 }, () => {
  const kind = `kill${randomBytes(4).toString('hex')}.slow`;
  const tenant = `kill-${randomBytes(3).toString('hex')}`;
  let database: TestDatabase;
  let db: pg.Client;
  let redis: Redis;
  let producer: BullMqJobQueue;
  const workers: WorkerNode[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(pgUrl as string);
    db = new pg.Client({ connectionString: database.url });
    await db.connect();
    await db.query(`CREATE TABLE slow_starts (job_id text NOT NULL, pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
      CREATE TABLE slow_results (job_id text PRIMARY KEY, pid integer NOT NULL);
      CREATE TABLE slow_completions (job_id text NOT NULL, pid integer NOT NULL)`);
    redis = new Redis(redisUrl as string);
    const env = {
      AETERNA_DATABASE_URL: database.url,
      AETERNA_REDIS_URL: redisUrl as string,
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_JOB_STALLED_MS: '2000',
      AETERNA_JOB_ATTEMPTS: '3',
      AETERNA_DRAIN_MS: '5000',
      SLOW_JOB_KIND: kind,
      SLOW_JOB_MS: '3000',
    };
    // One at a time: both would run the migrations, and the second waits on the first's lock anyway.
    for (let i = 0; i < 2; i++) {
      const worker = spawnWorker(env, SLOW_WORKER);
      workers.push(worker);
      await workerReady(worker);
    }
    producer = new BullMqJobQueue({
      redisUrl: redisUrl as string,
      jobs: { attempts: 3, backoffMs: 500, concurrency: 1, stalledMs: 2000, retainSec: 3600 },
      deadLetters: { record: async () => {} },
      log: createLogger('silent'),
      closeGraceMs: 1000,
    });
  });

  afterAll(async () => {
    killAllNodes();
    await producer?.close();
    if (redis) {
      const queue = new Queue(kind, { connection: redis, prefix: BULLMQ_PREFIX });
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await redis.del(PendingJobs.key(tenant, kind));
      redis.disconnect();
    }
    await db?.end();
    await database?.drop();
  });

  const rows = async <R extends pg.QueryResultRow>(text: string, params: unknown[] = []) => (await db.query<R>(text, params)).rows;

  async function waitForRows<R extends pg.QueryResultRow>(text: string, params: unknown[], count: number, what: string): Promise<R[]> {
    const deadline = Date.now() + 45_000;
    for (;;) {
      const found = await rows<R>(text, params);
      if (found.length >= count) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('hands a job whose worker was killed with SIGKILL to the other worker, and its result appears once', async () => {
    const id = randomUUID();
    await producer.enqueue([{ kind, id, tenantId: tenant, event: { id, seq: 1, type: 'memory.added', data: {} } }]);
    const [started] = await waitForRows<{ pid: number }>('SELECT pid FROM slow_starts WHERE job_id = $1', [id], 1, 'a worker to start the job');
    const victim = workers.find((w) => w.pid === started?.pid);
    const survivor = workers.find((w) => w !== victim);
    if (!victim || !survivor) throw new Error(`job started by pid ${String(started?.pid)}, which is not one of ours`);
    victim.child.kill('SIGKILL'); // by PID, mid-job: no cleanup, the lock just stops being renewed
    await victim.exited;

    await waitForRows('SELECT job_id FROM slow_results WHERE job_id = $1', [id], 1, 'the other worker to finish the job');
    expect(await rows('SELECT pid FROM slow_results WHERE job_id = $1', [id])).toEqual([{ pid: survivor.pid }]);
    expect(await rows('SELECT pid FROM slow_completions WHERE job_id = $1', [id])).toEqual([{ pid: survivor.pid }]);
    expect(await rows('SELECT pid FROM slow_starts WHERE job_id = $1 ORDER BY at', [id])).toEqual([{ pid: victim.pid }, { pid: survivor.pid }]);
    const bull = new Queue(kind, { connection: redis, prefix: BULLMQ_PREFIX });
    expect(await (await bull.getJob(id))?.getState()).toBe('completed');
    await bull.close();
  });

  it('finishes the running job on SIGTERM and exits 0', async () => {
    const survivor = workers.find((w) => w.child.exitCode === null && w.child.signalCode === null) as WorkerNode;
    const id = randomUUID();
    await producer.enqueue([{ kind, id, tenantId: tenant, event: { id, seq: 2, type: 'memory.added', data: {} } }]);
    await waitForRows('SELECT 1 FROM slow_starts WHERE job_id = $1', [id], 1, 'the job to start');
    survivor.child.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);
    expect(await rows('SELECT pid FROM slow_completions WHERE job_id = $1', [id])).toEqual([{ pid: survivor.pid }]);
  });
});
