import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminJobRoutes } from '../../gateway/http/admin-routes.js';
import { createPipeline } from '../../gateway/http/pipeline.js';
import type { Route } from '../../gateway/http/route.js';
import { CommitSignal, EventLog } from '../../src/events/index.js';
import { DeadLetterStore, InProcessJobQueue, type DeadJob, type JobSpec } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import type { Role } from '../../src/tenancy/index.js';
import { backends, openTestCore, rejectionOf, tokenFor, type TestCore } from '../support/backends.js';
import { until } from '../support/gateway.js';

function spec(tenantId: string, kind = 'graph.extract', id: string = randomUUID()): JobSpec {
  return { kind, id, tenantId, event: { id, seq: 7, type: 'memory.added', data: { memory: { id: 'm' } } } };
}

describe.each(backends())('dead-lettered jobs on %s', (backend) => {
  let t: TestCore;
  let store: DeadLetterStore;
  const notified: string[] = [];
  const commits = new CommitSignal();
  commits.subscribe((tenantId) => notified.push(tenantId));
  beforeAll(async () => {
    t = await openTestCore(backend);
    store = new DeadLetterStore({ db: t.core.db, commits });
  });
  afterAll(async () => {
    await t?.close();
  });

  const events = (tenantId: string) => t.core.db.withTenant(tenantId, (sql) => EventLog.read(sql, tenantId, 0, 100));

  it('records a dead job and announces job.failed once, in the same transaction', async () => {
    const job = spec('dl-record');
    await store.record(job, new Error('extractor exploded\u0000'), 5);
    await store.record(job, new Error('the queue reports the same failure'), 5);
    const page = await store.list('dl-record', { state: 'failed', limit: 10 });
    expect(page.items).toEqual([
      expect.objectContaining({ tenantId: 'dl-record', kind: 'graph.extract', jobId: job.id, event: job.event, error: 'extractor exploded', attempts: 5, retriedAt: null, retryCount: 0 }),
    ]);
    const log = await events('dl-record');
    expect(log.events.map((e) => [e.type, e.data])).toEqual([
      ['job.failed', { kind: 'graph.extract', jobId: job.id, eventId: job.id, eventType: 'memory.added', error: 'extractor exploded', attempts: 5 }],
    ]);
    expect(log.events[0]?.actor).toEqual({ userId: 'system', agentId: 'jobs' });
    expect(notified.filter((n) => n === 'dl-record')).toHaveLength(1);
  });

  it('pages most recent failure first with a cursor', async () => {
    const jobs = [spec('dl-page'), spec('dl-page'), spec('dl-page')];
    for (const job of jobs) await store.record(job, new Error('x'), 1);
    const first = await store.list('dl-page', { state: 'failed', limit: 2 });
    expect(first.items.map((j) => j.jobId)).toEqual([jobs[2]?.id, jobs[1]?.id]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await store.list('dl-page', { state: 'failed', limit: 2, cursor: first.nextCursor as string });
    expect(second.items.map((j) => j.jobId)).toEqual([jobs[0]?.id]);
    expect(second.nextCursor).toBeNull();
    expect(await rejectionOf(store.list('dl-page', { state: 'failed', limit: 2, cursor: 'bm90IGEgY3Vyc29y' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it("hides one tenant's dead jobs from another, even by id", async () => {
    const job = spec('dl-owner');
    await store.record(job, new Error('x'), 1);
    expect((await store.list('dl-other', { state: 'failed', limit: 10 })).items).toEqual([]);
    expect(await rejectionOf(store.markRetried('dl-other', job.id, undefined, async () => {}))).toMatchObject({ code: 'NOT_FOUND' });
    expect((await store.list('dl-owner', { state: 'failed', limit: 10 })).items).toHaveLength(1);
    // Row-level security, not the store's WHERE clause: a query with no tenant filter sees nothing.
    const forged = await t.core.db.withTenant('dl-other', (sql) => sql.query('SELECT job_id FROM dead_jobs'));
    expect(forged.rows).toEqual([]);
  });

  it('rolls the retry mark back when the queue cannot take the job', async () => {
    const job = spec('dl-rollback');
    await store.record(job, new Error('x'), 1);
    const err = await rejectionOf(
      store.markRetried('dl-rollback', job.id, undefined, async () => {
        throw new Error('redis is down');
      }),
    );
    expect(err.message).toBe('redis is down');
    expect((await store.list('dl-rollback', { state: 'failed', limit: 10 })).items.map((j) => j.retriedAt)).toEqual([null]);
  });

  describe('over REST', () => {
    let queue: InProcessJobQueue;
    let routes: Route[];
    const outcomes: string[] = [];
    const recorded: string[] = [];
    let failing = true;
    beforeAll(async () => {
      queue = new InProcessJobQueue({
        jobs: { attempts: 2, backoffMs: 10, concurrency: 2, stalledMs: 30_000, retainSec: 3600 },
        deadLetters: {
          async record(job, error, attempts) {
            await store.record(job, error, attempts);
            recorded.push(job.id);
          },
        },
        log: createLogger('silent'),
        closeGraceMs: 1000,
      });
      const processor = async (job: { id: string; kind: string }) => {
        outcomes.push(`${job.kind}:${job.id}:${failing ? 'fail' : 'ok'}`);
        if (failing) throw new Error('downstream unavailable');
      };
      await queue.work({ 'graph.extract': processor, 'graph.cascade': processor });
      routes = adminJobRoutes({ deadLetters: store, queue });
    });
    afterAll(async () => {
      await queue?.close();
    });

    const pipeline = () => createPipeline(t.core.tokens, createLogger('silent'));
    async function call(method: string, path: string, tenantId: string, roles: Role[], query = '', params: Record<string, string> = {}) {
      const route = routes.find((r) => r.method === method && r.path === path) as Route;
      const token = await tokenFor({ tenantId, userId: 'root', roles });
      return pipeline().run(route, { authorization: `Bearer ${token}`, requestId: 'req-1', params, query, body: undefined });
    }
    const list = (tenantId: string, query = 'state=failed', roles: Role[] = ['admin']) => call('GET', '/v1/admin/jobs', tenantId, roles, query);
    const retry = (tenantId: string, id: string, query = '', roles: Role[] = ['admin']) =>
      call('POST', '/v1/admin/jobs/:id/retry', tenantId, roles, query, { id });
    const items = (reply: { body: unknown }) => (reply.body as { items: DeadJob[] }).items;

    it('lists the dead job and retries it: it runs again and, succeeding, leaves the list', async () => {
      failing = true;
      const job = spec('dl-rest');
      await queue.enqueue([job]);
      await until(() => recorded.includes(job.id), 'the dead-letter row');
      expect(outcomes.filter((o) => o.includes(job.id))).toEqual([`graph.extract:${job.id}:fail`, `graph.extract:${job.id}:fail`]);
      const listed = items(await list('dl-rest'));
      expect(listed).toEqual([expect.objectContaining({ jobId: job.id, kind: 'graph.extract', attempts: 2, error: 'downstream unavailable' })]);

      failing = false;
      const reply = await retry('dl-rest', job.id);
      expect(reply.status).toBe(202);
      expect((reply.body as { job: DeadJob }).job).toMatchObject({ jobId: job.id, retryCount: 1, retriedAt: expect.any(String) });
      await until(() => outcomes.includes(`graph.extract:${job.id}:ok`), 'the retried job to succeed');
      expect(items(await list('dl-rest'))).toEqual([]);
      expect(await retry('dl-rest', job.id)).toMatchObject({ status: 409, body: { code: 'CONFLICT' } });
    });

    it('asks which kind when an id is dead in two, and takes ?kind=', async () => {
      const id = randomUUID();
      await store.record(spec('dl-kinds', 'graph.extract', id), new Error('x'), 2);
      await store.record(spec('dl-kinds', 'graph.cascade', id), new Error('y'), 2);
      const ambiguous = await retry('dl-kinds', id);
      expect(ambiguous).toMatchObject({ status: 409, body: { code: 'CONFLICT', details: { kinds: ['graph.cascade', 'graph.extract'] } } });
      failing = false;
      expect(await retry('dl-kinds', id, 'kind=graph.cascade')).toMatchObject({ status: 202, body: { job: { kind: 'graph.cascade' } } });
      await until(() => outcomes.includes(`graph.cascade:${id}:ok`), 'the cascade job to run');
      expect(items(await list('dl-kinds')).map((j) => j.kind)).toEqual(['graph.extract']);
    });

    it('refuses bad input and non-admins with stable codes', async () => {
      expect(await list('dl-bad', 'state=running')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
      expect(await list('dl-bad', 'state=failed&limit=0')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
      expect(await list('dl-bad', 'state=failed&nope=1')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
      expect(await list('dl-bad', 'cursor=%%%')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
      expect(await list('dl-bad')).toMatchObject({ status: 200, body: { items: [], nextCursor: null } });
      expect(await retry('dl-bad', 'x;drop table dead_jobs')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
      expect(await retry('dl-bad', randomUUID(), 'kind=graph:extract')).toMatchObject({ status: 400, body: { code: 'INVALID_ARGUMENT' } });
      expect(await retry('dl-bad', randomUUID())).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
      for (const roles of [['viewer'], ['developer']] as Role[][]) {
        expect(await list('dl-bad', 'state=failed', roles)).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
        expect(await retry('dl-bad', randomUUID(), '', roles)).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
      }
    });
  });
});
