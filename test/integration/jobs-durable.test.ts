import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type JobsConfig } from '../../src/config.js';
import { EventLog } from '../../src/events/index.js';
import { DeadLetterStore, InProcessJobQueue, JOBS_ACTOR, JobAdmin, type DeadLetterSink, type JobContext, type JobSpec } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import { openDb, type Db } from '../../src/store/index.js';
import { TEST_JWT_SECRET, backends, rejectionOf, tenantCtx } from '../support/backends.js';
import { until } from '../support/gateway.js';
import { createTestDatabase, requireService, type TestDatabase } from '../support/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CRASHING_QUEUE = path.join(ROOT, 'test/integration/fixtures/crashing-queue.ts');

const JOBS: JobsConfig = { attempts: 3, backoffMs: 2000, concurrency: 2, stalledMs: 30_000, retainSec: 3600 };
const noDeadLetters: DeadLetterSink = { record: async () => {} };

interface Run {
  kind: string;
  id: string;
  attempt: number;
}
const runOf = (job: JobContext | Run): Run => ({ kind: job.kind, id: job.id, attempt: job.attempt });
const byId = (a: Run, b: Run) => a.id.localeCompare(b.id) || a.kind.localeCompare(b.kind);

/** Kills a process with SIGKILL, by its PID: no cleanup runs, as in a crash. */
async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** Runs test/integration/fixtures/crashing-queue.ts until it is ready, then kills it; returns what it enqueued. */
async function crashAfterEnqueue(env: Record<string, string>, plan: { tenantId: string; kind: string }[]): Promise<JobSpec[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CRASHING_QUEUE], {
    cwd: ROOT,
    env: { ...process.env, ...env, CRASH_PLAN: JSON.stringify(plan) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  try {
    await until(() => /^ready$/m.test(out) || child.exitCode !== null, 'the crashing queue to be ready', 40_000);
    if (!/^ready$/m.test(out)) throw new Error(`the crashing queue exited before it was ready:\n${out}`);
  } finally {
    await killHard(child);
  }
  const enqueued = /^enqueued (.*)$/m.exec(out)?.[1];
  return JSON.parse(enqueued as string) as JobSpec[];
}

describe.each(backends())('the in-process job queue over %s', (backend) => {
  let dataDir: string;
  let database: TestDatabase | undefined;
  let db: Db;
  let crashed: JobSpec[];

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-jobs-durable-'));
    database = backend === 'postgres' ? await createTestDatabase(requireService('postgres') as string) : undefined;
    const env = {
      AETERNA_DATA_DIR: dataDir,
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_LOG_LEVEL: 'warn',
      AETERNA_JOB_ATTEMPTS: '3',
      AETERNA_JOB_BACKOFF_MS: '2000',
      AETERNA_JOB_CONCURRENCY: '1',
      ...(database ? { AETERNA_DATABASE_URL: database.url } : {}),
    };
    // The child has the PGlite directory to itself until it is dead; only then do we open it.
    crashed = await crashAfterEnqueue(env, [
      ...['hang', 'hang', 'ok', 'hang', 'ok', 'flaky'].map((k) => ({ tenantId: 'crash-a', kind: `crash.${k}` })),
      ...['ok', 'hang'].map((k) => ({ tenantId: 'crash-b', kind: `crash.${k}` })),
    ]);
    db = await openDb(loadConfig(env).database);
  });

  afterAll(async () => {
    await db?.close();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  function queue(jobs: Partial<JobsConfig> = {}, deadLetters: DeadLetterSink = noDeadLetters, closeGraceMs = 2000): InProcessJobQueue {
    return new InProcessJobQueue({ jobs: { ...JOBS, ...jobs }, deadLetters, log: createLogger('silent'), closeGraceMs, db });
  }

  /** One job per event, appended to the tenant's log as the relay would find them. */
  async function jobsFor(tenantId: string, kind: string, data: unknown[]): Promise<JobSpec[]> {
    return db.withTenant(tenantId, async (sql) => {
      const specs: JobSpec[] = [];
      for (const d of data) {
        const e = await EventLog.append(sql, tenantId, { type: 'memory.added', actor: JOBS_ACTOR, data: d });
        specs.push({ kind, id: e.id, tenantId, event: { id: e.id, seq: e.seq, type: e.type, data: e.data } });
      }
      return specs;
    });
  }

  /** What pending_jobs holds for a tenant; no WHERE clause: row-level security does the filtering. */
  async function pending(tenantId: string): Promise<{ kind: string; id: string; attempts: number; waitsMs: number }[]> {
    const res = await db.withTenant(tenantId, (sql) =>
      sql.query<{ kind: string; job_id: string; attempts: number; waits_ms: number }>(
        `SELECT kind, job_id, attempts, (extract(epoch FROM not_before - now()) * 1000)::float8 AS waits_ms
           FROM pending_jobs ORDER BY job_id, kind`,
      ),
    );
    return res.rows.map((r) => ({ kind: r.kind, id: r.job_id, attempts: r.attempts, waitsMs: Number(r.waits_ms) }));
  }

  const ids = (specs: JobSpec[]) => specs.map((s) => s.id);

  it('resumes exactly the jobs a killed process left unfinished, a job in backoff with its attempt count', async () => {
    const ofKind = (k: string) => crashed.filter((s) => s.kind === `crash.${k}`);
    const [flaky] = ofKind('flaky') as [JobSpec];
    const left = [...(await pending('crash-a')), ...(await pending('crash-b'))];
    // Running or queued when the process died: stored with no try counted. Done: gone.
    expect(left.filter((r) => r.kind === 'crash.hang').map((r) => [r.id, r.attempts]).sort()).toEqual(ids(ofKind('hang')).map((id) => [id, 0]).sort());
    expect(left.filter((r) => r.kind === 'crash.ok')).toEqual([]);
    const flakyRow = left.find((r) => r.kind === 'crash.flaky');
    expect(flakyRow?.attempts).toBeGreaterThanOrEqual(1);

    const q = queue();
    const runs: Run[] = [];
    const record = async (job: JobContext) => void runs.push(runOf(job));
    await q.work({ 'crash.hang': record, 'crash.ok': record, 'crash.flaky': record });
    await until(() => runs.length >= 5, 'the unfinished jobs to run');
    await q.close();
    const expected = [...ofKind('hang').map((s) => ({ kind: s.kind, id: s.id, attempt: 1 })), { kind: flaky.kind, id: flaky.id, attempt: (flakyRow?.attempts ?? 0) + 1 }];
    expect(runs.sort(byId)).toEqual(expected.sort(byId));
    expect([...(await pending('crash-a')), ...(await pending('crash-b'))]).toEqual([]);
  });

  it('keeps a job in backoff waiting after a restart, and counts its earlier tries', async () => {
    const [due, later] = (await jobsFor('wait-t', 'wait.kind', [{}, {}])) as [JobSpec, JobSpec];
    const first = queue({ backoffMs: 60_000 });
    let failures = 0;
    await first.work({
      'wait.kind': async () => {
        failures++;
        throw new Error('not yet');
      },
    });
    await first.enqueue([due, later]);
    await until(() => failures === 2, 'both jobs to fail once');
    await first.close();
    const stored = await pending('wait-t');
    expect(stored.map((r) => r.attempts)).toEqual([1, 1]);
    for (const row of stored) expect(row.waitsMs).toBeGreaterThan(30_000);
    // One job's backoff has run out while no process was up.
    await db.withTenant('wait-t', (sql) => sql.query('UPDATE pending_jobs SET not_before = now() WHERE job_id = $1', [due.id]));

    const second = queue();
    const runs: Run[] = [];
    await second.work({ 'wait.kind': async (job) => void runs.push(runOf(job)) });
    await until(() => runs.length === 1, 'the due job to run');
    await second.close();
    expect(runs).toEqual([{ kind: 'wait.kind', id: due.id, attempt: 2 }]);
    expect((await pending('wait-t')).map((r) => [r.id, r.attempts])).toEqual([[later.id, 1]]);
  });

  it('does not run again a job that completed or was dead-lettered before the restart', async () => {
    const deadLetters = new DeadLetterStore({ db });
    const [ok, dead] = (await jobsFor('done-t', 'done.kind', [{ fail: false }, { fail: true }])) as [JobSpec, JobSpec];
    const first = queue({ attempts: 1 }, deadLetters);
    const runs: Run[] = [];
    await first.work({
      'done.kind': async (job) => {
        runs.push(runOf(job));
        if ((job.event.data as { fail: boolean }).fail) throw new Error('dies');
      },
    });
    await first.enqueue([ok, dead]);
    await until(() => runs.length === 2, 'both jobs to run');
    await first.close(); // lets the table writes after each try finish
    expect(await pending('done-t')).toEqual([]);
    expect((await deadLetters.list('done-t', { state: 'failed', limit: 10 })).items.map((j) => j.jobId)).toEqual([dead.id]);

    // A resumed job would run before this one: same tenant, same kind, one at a time, in order.
    const [sentinel] = (await jobsFor('done-t', 'done.kind', [{ fail: false }])) as [JobSpec];
    const second = queue({ concurrency: 1 });
    const after: Run[] = [];
    await second.work({ 'done.kind': async (job) => void after.push(runOf(job)) });
    await second.enqueue([sentinel]);
    await until(() => after.length === 1, 'the sentinel job');
    await second.close();
    expect(after.map((r) => r.id)).toEqual([sentinel.id]);
  });

  it('keeps the row of a job whose dead letter could not be written, and of one cut short by shutdown', async () => {
    const [unrecorded] = (await jobsFor('keep-t', 'keep.dies', [{}])) as [JobSpec];
    const [aborted] = (await jobsFor('keep-t', 'keep.stops', [{}])) as [JobSpec];
    const dying = queue({ attempts: 1 }, { record: async () => Promise.reject(new Error('dead_jobs is unreachable')) });
    let died = false;
    await dying.work({
      'keep.dies': async () => {
        died = true;
        throw new Error('dies');
      },
    });
    await dying.enqueue([unrecorded]);
    await until(() => died, 'the job to die');
    await dying.close();

    const stopping = queue({ attempts: 3 }, noDeadLetters, 50);
    let started = false;
    await stopping.work({
      // Runs past the grace period: the abort is shutdown's doing, not a failure of the job.
      'keep.stops': (job) => {
        started = true;
        return new Promise<void>((_, reject) => job.signal.addEventListener('abort', () => reject(new Error('aborted'))));
      },
    });
    await stopping.enqueue([aborted]);
    await until(() => started, 'the job to start');
    await stopping.close();
    expect((await pending('keep-t')).map((r) => [r.id, r.attempts])).toEqual([[unrecorded.id, 0], [aborted.id, 0]].sort());
  });

  it('has a job stored once enqueue resolves, once per id, and rejects when it cannot store it', async () => {
    const q = queue(); // no processors: nothing runs, the rows stay
    const [a, b, c] = (await jobsFor('store-t', 'store.kind', [{}, {}, {}])) as [JobSpec, JobSpec, JobSpec];
    await q.enqueue([a, b, a]);
    expect((await pending('store-t')).map((r) => [r.id, r.attempts])).toEqual([[a.id, 0], [b.id, 0]].sort());
    await Promise.all([q.enqueue([a, c]), q.enqueue([c, { ...c, kind: 'store.other' }])]);
    expect((await pending('store-t')).map((r) => `${r.kind}:${r.id}`).sort()).toEqual(
      [`store.kind:${a.id}`, `store.kind:${b.id}`, `store.kind:${c.id}`, `store.other:${c.id}`].sort(),
    );

    // jsonb refuses \u0000: the write of this tenant's batch fails, the other tenant's stands.
    const [good] = (await jobsFor('store-u', 'store.kind', [{}])) as [JobSpec];
    const poison: JobSpec = { kind: 'store.kind', id: randomUUID(), tenantId: 'poison-t', event: { id: randomUUID(), seq: 1, type: 'memory.added', data: { text: 'a\u0000b' } } };
    expect(await rejectionOf(q.enqueue([good, poison]))).toBeInstanceOf(Error);
    expect((await pending('store-u')).map((r) => r.id)).toEqual([good.id]);
    // A second enqueue of a job still being written shares its outcome instead of claiming success.
    const together = await Promise.allSettled([q.enqueue([poison]), q.enqueue([poison])]);
    expect(together.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(await pending('poison-t')).toEqual([]);
    // Forgotten after the failure: a later enqueue of that id stores it rather than skip it.
    await q.enqueue([{ ...poison, event: { ...poison.event, data: { text: 'ab' } } }]);
    expect((await pending('poison-t')).map((r) => r.id)).toEqual([poison.id]);
    await q.close();
  });

  it("stores jobs in the caller's transaction when given one, so they roll back with it", async () => {
    const q = queue();
    const [kept, dropped] = (await jobsFor('tx-t', 'tx.kind', [{}, {}])) as [JobSpec, JobSpec];
    const rolledBack = db.withTenant('tx-t', async (sql) => {
      await q.enqueue([dropped], { sql });
      throw new Error('the caller changed its mind');
    });
    expect((await rejectionOf(rolledBack)).message).toBe('the caller changed its mind');
    await db.withTenant('tx-t', (sql) => q.enqueue([kept], { sql }));
    expect((await pending('tx-t')).map((r) => r.id)).toEqual([kept.id]);
    await q.close();
  });

  it("keeps one tenant's pending jobs from another tenant, whatever the query says", async () => {
    const q = queue();
    const [job] = (await jobsFor('rls-a', 'rls.kind', [{}])) as [JobSpec];
    await q.enqueue([job]);
    await q.close();
    const other = await db.withTenant('rls-b', async (sql) => ({
      seen: (await sql.query('SELECT job_id FROM pending_jobs')).rows,
      updated: (await sql.query('UPDATE pending_jobs SET attempts = 9')).affectedRows,
      deleted: (await sql.query('DELETE FROM pending_jobs')).affectedRows,
    }));
    expect(other).toEqual({ seen: [], updated: 0, deleted: 0 });
    const forged = db.withTenant('rls-b', (sql) =>
      sql.query("INSERT INTO pending_jobs (tenant_id, kind, job_id, event) VALUES ('rls-a', 'rls.kind', 'forged', '{}')"),
    );
    expect((await rejectionOf(forged)).message).toMatch(/row-level security/);
    expect((await pending('rls-a')).map((r) => [r.id, r.attempts])).toEqual([[job.id, 0]]);
  });

  // Last: on PGlite a failure here leaves a transaction open that every later query would wait on.
  it('lets an admin retry a dead job: the queue stores it inside the retry transaction', async () => {
    const deadLetters = new DeadLetterStore({ db });
    const q = queue({ attempts: 1 }, deadLetters);
    const runs: Run[] = [];
    await q.work({ 'admin.kind': async (job) => void runs.push(runOf(job)) });
    const [job] = (await jobsFor('admin-t', 'admin.kind', [{}])) as [JobSpec];
    await deadLetters.record(job, new Error('died earlier'), 1);
    const admin = new JobAdmin({ deadLetters, queue: q });
    // PGlite runs one transaction at a time: an enqueue that opened its own would wait forever.
    const retried = await Promise.race([
      admin.retry(tenantCtx('admin-t', 'root', ['admin']), job.id, {}),
      new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 5_000).unref()),
    ]);
    expect(retried).toMatchObject({ jobId: job.id, retryCount: 1 });
    await until(() => runs.length === 1, 'the retried job to run');
    await q.close();
    expect(runs).toEqual([{ kind: 'admin.kind', id: job.id, attempt: 1 }]);
  });
});
