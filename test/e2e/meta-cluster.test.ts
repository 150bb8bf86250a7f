import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetaRun } from '../../src/protocol/index.js';
import { TEST_JWT_SECRET, tokenFor } from '../support/backends.js';
import { restCall } from '../support/gateway.js';
import { createTestDatabase, requireService, type TestDatabase } from '../support/index.js';
import { startLlmServer, type LlmServer } from '../support/llm-server.js';
import { killAllNodes, spawnWorker, startNode, workerReady, type GatewayNode, type WorkerNode } from '../support/nodes.js';

const pgUrl = requireService('postgres');
const redisUrl = requireService('redis');

/**
 * A Meta-Agent run survives its worker: kill -9 while the run waits for the caller's verdict, and
 * a second worker takes the stalled `cca.meta` job, finds the verdict given meanwhile, and goes
 * on to iteration 2 without asking the model for iteration 1 again.
 */
describe.skipIf(!pgUrl || !redisUrl)('a Meta-Agent run across a worker crash (cluster mode)', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let dataDir: string;
  let llm: LlmServer;
  let gateway: GatewayNode;
  let env: Record<string, string>;
  let dev: string;

  const call = (method: string, route: string, body?: unknown) => restCall<MetaRun>(gateway.url, method, route, dev, body);

  /** Polls the run until its `iteration` waits for a verdict (a candidate, untested, status running). */
  async function awaitingVerdict(runId: string, iteration: number): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const run = (await call('GET', `/v1/meta/runs/${runId}`)).body;
      if (run.status === 'running' && run.iterations?.length === iteration && run.iterations[iteration - 1]?.test === null && llm.requests.length >= iteration) {
        // The candidate row is written before meta.test; give the worker a moment to start waiting.
        await new Promise((r) => setTimeout(r, 300));
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`iteration ${iteration} of ${runId} never waited for a verdict`);
  }

  beforeAll(async () => {
    llm = await startLlmServer();
    database = await createTestDatabase(pgUrl as string);
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-meta-'));
    env = {
      AETERNA_DATABASE_URL: database.url,
      AETERNA_REDIS_URL: redisUrl as string,
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_DATA_DIR: dataDir,
      AETERNA_RELAY_TICK_MS: '250',
      AETERNA_DRAIN_MS: '2000',
      AETERNA_JOB_STALLED_MS: '2000',
      AETERNA_LLM_URL: llm.url,
      AETERNA_LLM_MODEL: 'meta-test',
    };
    dev = await tokenFor({ tenantId: 'meta-cluster', userId: 'alice', roles: ['developer'] });
    gateway = await startNode(env);
  }, 120_000);
  afterAll(async () => {
    killAllNodes();
    await database?.drop();
    await llm?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('resumes on another worker after kill -9, from the state the first one saved', async () => {
    llm.enqueue(JSON.stringify({ solution: 'draft', rationale: 'first' }), JSON.stringify({ solution: 'final', rationale: 'fixed the review' }));
    const first: WorkerNode = spawnWorker(env);
    await workerReady(first);
    const started = await call('POST', '/v1/meta/runs', { goal: 'Survive a crash', maxIterations: 3, testTimeoutMs: 60_000 });
    expect(started.status).toBe(202);
    const runId = started.body.runId;

    await awaitingVerdict(runId, 1);
    first.child.kill('SIGKILL');
    await first.exited;
    // The verdict arrives while no worker is alive; it is stored with the run, not lost.
    expect(await call('POST', `/v1/meta/runs/${runId}/test-result`, { iteration: 1, passed: false, output: 'review: too short' })).toMatchObject({ status: 200 });

    const second = spawnWorker(env);
    await workerReady(second);
    await awaitingVerdict(runId, 2);
    expect(await call('POST', `/v1/meta/runs/${runId}/test-result`, { iteration: 2, passed: true })).toMatchObject({ status: 200 });

    const deadline = Date.now() + 30_000;
    let run = (await call('GET', `/v1/meta/runs/${runId}`)).body;
    while (run.status === 'running' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      run = (await call('GET', `/v1/meta/runs/${runId}`)).body;
    }
    expect(run).toMatchObject({ status: 'succeeded', solution: 'final', iterationsDone: 2 });
    // Iteration 1's candidate was not asked for again: two model calls in all.
    expect(llm.requests).toHaveLength(2);
    expect(llm.requests[1]?.body?.messages?.find((m) => m.role === 'user')?.content).toContain('review: too short');
  });
});
