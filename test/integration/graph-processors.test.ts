import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLog } from '../../src/events/index.js';
import { GraphSnapshotter, GraphStore, LlmExtractor, createSnapshotStore, edgeIdFor, nodeIdFor } from '../../src/graph/index.js';
import { JOB_ROUTES, jobsForEvents, type JobContext } from '../../src/jobs/index.js';
import { createLogger } from '../../src/obs/index.js';
import type { EventEnvelope, GraphNeighborsResult } from '../../src/protocol/index.js';
import { createProcessors } from '../../workers/processors/index.js';
import { graphProcessors } from '../../workers/processors/graph.js';
import { OpenAiChatLlm } from '../../src/cca/index.js';
import { openTestCore, rejectionOf, tenantCtx, type TestCore } from '../support/backends.js';
import { startLlmServer, type LlmServer } from '../support/index.js';

const ctx = tenantCtx('acme', 'alice', ['admin']);

/** The processors as a worker runs them, fed the jobs the relay would enqueue for new events. */
describe('graph job processors (PGlite)', () => {
  let t: TestCore;
  let since = 0;
  let llm: LlmServer;

  async function newJobs(): Promise<JobContext[]> {
    const page = await t.core.db.withTenant('acme', (sql) => EventLog.read(sql, 'acme', since, 1000));
    if (page.events.length > 0) since = (page.events[page.events.length - 1] as EventEnvelope).seq;
    // The graph's own jobs: the same events also imply others (summaries), tested elsewhere.
    return jobsForEvents('acme', page.events)
      .filter((spec) => spec.kind.startsWith('graph.'))
      .map((spec) => ({ ...spec, attempt: 1, signal: new AbortController().signal }));
  }

  async function runNewJobs(processors = createProcessors({ core: t.core, log: createLogger('silent') })): Promise<number> {
    const jobs = await newJobs();
    for (const job of jobs) {
      const run = processors[job.kind];
      if (!run) throw new Error(`no processor for ${job.kind}`);
      await run(job);
    }
    return jobs.length;
  }

  beforeAll(async () => {
    t = await openTestCore('pglite', { AETERNA_GRAPH_SNAPSHOT_EVERY: '3' });
    llm = await startLlmServer();
  }, 60_000);
  afterAll(async () => {
    await llm?.close();
    await t?.close();
  });

  it('has a processor for every job kind the relay enqueues', () => {
    const processors = createProcessors({ core: t.core, log: createLogger('silent') });
    const kinds = new Set(Object.values(JOB_ROUTES).flat());
    for (const kind of kinds) expect(processors[kind], kind).toBeTypeOf('function');
  });

  it('invalidates a fact its memory no longer states, and "as of" still sees it', async () => {
    const { memory } = await t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: 'Checkout Service uses Stripe Billing.' });
    expect(await runNewJobs()).toBe(1);
    const checkout = nodeIdFor('entity', 'Checkout Service');
    const stripe = nodeIdFor('entity', 'Stripe Billing');
    const oldEdge = edgeIdFor(checkout, 'uses', stripe);
    const before = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));

    await t.core.memory.update(ctx, memory.id, { content: 'Checkout Service uses Adyen Payments.', version: memory.version });
    expect(await runNewJobs()).toBe(1);
    const now = await t.core.graph.neighbors(ctx, { id: checkout, direction: 'out' });
    expect(now.neighbors.map((n) => n.node.label)).toEqual(['Adyen Payments']);
    const then: GraphNeighborsResult = await t.core.graph.neighbors(ctx, { id: checkout, direction: 'out', asOf: before });
    expect(then.neighbors.map((n) => n.node.label)).toEqual(['Stripe Billing']);
    expect(then.edges.map((e) => e.id)).toEqual([oldEdge]);
  });

  it('unlinks a fact another memory still states, so deleting that memory later removes it', async () => {
    const first = await t.core.memory.add(ctx, { layer: 'project', projectId: 'hermes', content: 'Search Frontend calls Query Planner.' });
    const second = await t.core.memory.add(ctx, { layer: 'team', teamId: 'core', content: 'Search Frontend calls Query Planner.' });
    await runNewJobs();
    const edge = edgeIdFor(nodeIdFor('entity', 'Search Frontend'), 'calls', nodeIdFor('entity', 'Query Planner'));
    const support = async () => (await t.core.graph.memorySupport(ctx, second.memory.id)).edges.find((e) => e.id === edge)?.sourceMemoryIds;
    expect(await support()).toEqual([first.memory.id, second.memory.id].sort());

    // The first memory stops stating it: the fact stays valid (the second still states it)...
    await t.core.memory.update(ctx, first.memory.id, { content: 'Search Frontend is written in Elm.', version: first.memory.version });
    await runNewJobs();
    expect(await support()).toEqual([second.memory.id]);
    const planner = nodeIdFor('entity', 'Query Planner');
    expect((await t.core.graph.neighbors(ctx, { id: planner, direction: 'in' })).edges.map((e) => e.id)).toContain(edge);
    // ...and deleting the second removes it: nothing stale keeps it alive.
    await t.core.memory.delete(ctx, second.memory.id);
    await runNewJobs();
    expect((await t.core.graph.neighbors(ctx, { id: planner, direction: 'in' })).edges.map((e) => e.id)).not.toContain(edge);
  });

  it('writes once when a job runs twice, and skips an event a newer version superseded', async () => {
    const { memory } = await t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: 'Ledger Team owns Invoice Engine.' });
    const [job] = await newJobs();
    const processors = createProcessors({ core: t.core, log: createLogger('silent') });
    const extract = processors['graph.extract'] as (j: JobContext) => Promise<void>;
    await extract(job as JobContext);
    const head = (await t.core.graph.sync('acme')).seq;
    await extract(job as JobContext);
    expect((await t.core.graph.sync('acme')).seq).toBe(head);

    // Version 2 exists: the version-1 event of a replayed job writes nothing.
    await t.core.memory.update(ctx, memory.id, { content: 'Ledger Team owns Tax Engine.', version: memory.version });
    const [updateJob] = await newJobs();
    const stale: JobContext = { ...(updateJob as JobContext), id: 'replayed-v1', event: { ...(job as JobContext).event, type: 'memory.updated' } };
    await extract(stale);
    expect((await t.core.graph.sync('acme')).seq).toBe(head);
    await extract(updateJob as JobContext);
    expect((await t.core.graph.sync('acme')).seq).toBe(head + 1);
  });

  it('still extracts when a tags-only update landed before the job ran', async () => {
    const { memory } = await t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: 'Radar Team owns Alert Router.' });
    await t.core.memory.update(ctx, memory.id, { tags: ['ops'], version: memory.version });
    // The add's job runs now, after the tags update (which implies no job of its own).
    expect(await runNewJobs()).toBeGreaterThanOrEqual(1);
    const node = await t.core.graph.node(ctx, { id: nodeIdFor('entity', 'Alert Router') });
    expect(node.node.sourceMemoryId).toBe(memory.id);
  });

  it('fails a malformed event for the dead letter instead of guessing', async () => {
    const extract = createProcessors({ core: t.core, log: createLogger('silent') })['graph.extract'] as (j: JobContext) => Promise<void>;
    const err = await rejectionOf(
      extract({ kind: 'graph.extract', id: 'x', tenantId: 'acme', attempt: 1, signal: new AbortController().signal, event: { id: 'x', seq: 1, type: 'memory.added', data: {} } }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
  });

  it('uses the LLM extractor when one is configured', async () => {
    llm.enqueue(
      JSON.stringify({
        entities: [
          { label: 'Ada Lovelace', kind: 'person' },
          { label: 'Analytical Engine', kind: 'machine' },
        ],
        relations: [{ source: { label: 'Ada Lovelace', kind: 'person' }, target: { label: 'Analytical Engine', kind: 'machine' }, relation: 'wrote_programs_for', weight: 0.9 }],
      }),
    );
    await t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: 'she wrote the first program for it' });
    const extractor = new LlmExtractor(new OpenAiChatLlm({ url: llm.url, model: 'test-model', timeoutMs: 5000 }));
    await runNewJobs(graphProcessors({ core: t.core, log: createLogger('silent'), extractor }));
    expect(llm.requests.length).toBe(1);
    const ada = await t.core.graph.neighbors(ctx, { id: nodeIdFor('person', 'Ada Lovelace'), direction: 'out' });
    expect(ada.edges.map((e) => e.relation)).toEqual(['wrote_programs_for']);
  });

  it('snapshots every N batches; a cold process loads the snapshot, and a corrupt one falls back with a warning', async () => {
    for (let i = 0; i < 3; i++) {
      await t.core.memory.add(ctx, { layer: 'project', projectId: 'apollo', content: `Service Number${i} depends on Shared Cache.` });
    }
    await runNewJobs();
    const dir = path.join(t.config.dataDir, 'snapshots', 'acme');
    const folders = (await readdir(dir)).filter((f) => f.startsWith('full-') || f.startsWith('delta-')).sort();
    expect(folders.length).toBeGreaterThan(0);
    const expected = await t.core.graph.neighbors(ctx, { id: nodeIdFor('entity', 'Shared Cache'), direction: 'in' });

    const warnings: string[] = [];
    const log = createLogger('silent');
    const capture = Object.assign(Object.create(log) as typeof log, {
      warn: (obj: unknown, msg?: string) => warnings.push(`${msg ?? ''} ${JSON.stringify(obj)}`),
    });
    const snapshots = new GraphSnapshotter({ store: createSnapshotStore(t.config.graph.snapshots), tmpDir: path.join(t.config.dataDir, 'tmp'), log: capture });
    const open = () => GraphStore.open({ db: t.core.db, config: { ...t.config.graph, duckdbPath: ':memory:' }, log: capture, snapshots });
    const cold = await open();
    try {
      const got = await cold.neighbors(ctx, { id: nodeIdFor('entity', 'Shared Cache'), direction: 'in' });
      expect(got.neighbors.map((n) => n.node.id).sort()).toEqual(expected.neighbors.map((n) => n.node.id).sort());
    } finally {
      await cold.close();
    }
    expect(warnings).toEqual([]);

    // Flip bytes in the newest full snapshot's edges file: refused, said so, and the answer is still whole.
    const newestFull = folders.filter((f) => f.startsWith('full-')).pop() as string;
    const edgesFile = (await readdir(path.join(dir, newestFull))).find((f) => f.startsWith('graph_edges')) as string;
    const file = path.join(dir, newestFull, edgesFile);
    const bytes = await readFile(file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = (bytes[at] as number) ^ 0xff;
    await writeFile(file, bytes);
    const fallback = await open();
    try {
      const got = await fallback.neighbors(ctx, { id: nodeIdFor('entity', 'Shared Cache'), direction: 'in' });
      expect(got.neighbors.map((n) => n.node.id).sort()).toEqual(expected.neighbors.map((n) => n.node.id).sort());
    } finally {
      await fallback.close();
    }
    expect(warnings.some((w) => w.includes('refused') && w.includes(newestFull))).toBe(true);
  });
});
