/**
 * Knowledge-graph benchmark: a synthetic 100k-node / 1M-edge tenant (plus small ones) written
 * through GraphStore, its queries timed against an in-memory ground truth and against the same
 * traversals in plain PostgreSQL, then a snapshot and two cold starts (snapshot + log tail vs the
 * whole log). `npm run bench:graph -- --help`. Never part of `npm test`. See "graph" in
 * loadtest/README.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { GraphSnapshotter, GraphStore, SNAPSHOT_TABLES, createSnapshotStore, snapshotGraph } from '../src/graph/index.js';
import { createLogger } from '../src/obs/index.js';
import { GRAPH_LIMITS, type Actor, type GraphOpDraft } from '../src/protocol/index.js';
import { openDb, type Db } from '../src/store/index.js';
import { createTestDatabase, startServices, type RunningServices, type TestDatabase } from '../test/support/index.js';
import { prng } from './corpus.js';
import { foreignShare, snapshot } from './cpu.js';
import { PgBaseline } from './graph-baseline.js';
import { LABEL_WORDS, SyntheticGraph } from './graph-data.js';
import {
  COLD_ENV,
  contendedPhases,
  duckdbBytes,
  latencyStats,
  memorySample,
  renderMarkdown,
  type BaselineResult,
  type ColdResult,
  type GraphReport,
  type LatencyStats,
  type LoadPhase,
  type QueryResult,
} from './graph-report.js';
import { CONTENDED_ROUND, median } from './report.js';
import { armHardTimeout, intSetting, LOADTEST_DIR, loud, machineInfo, ownResources, RESULTS_DIR, say, sleep } from './settings.js';

const COLD_ENTRY = path.join(LOADTEST_DIR, 'graph-cold.ts');
const BIG = 'bench-big';
const QUIET_PROBE_MS = 3000;
const PROGRESS_EVERY_MS = 5000;
/** Queries ask for as much as the API allows, so depth 2 walks whole levels. */
const NEIGHBOR_LIMIT = GRAPH_LIMITS.maxNeighbors;
const PATH_DEPTH = GRAPH_LIMITS.maxDepth;
/** Connected pairs are the ends of random out-walks this long (the shortest path may be shorter). */
const WALK_STEPS = 4;
const RELATED_LIMIT = 20;
const SEARCH_LIMIT = 20;
const ISLAND_SHARE = 0.05;
const ISOLATION_SAMPLES = 200;
/** Written after the snapshot: what a cold start replays on top of it. */
const TAIL_BATCHES = 10;
const TAIL_OPS = 500;
const ACTOR: Actor = { userId: 'bench', agentId: 'graph-bench' };

const HELP = `usage: npm run bench:graph -- [options]   (each option also reads the AETERNA_BENCH_* variable named)
  --quick                                              10k nodes / 100k edges, 100 samples, 10 s per scenario
  --nodes N            AETERNA_BENCH_GRAPH_NODES        nodes of the big tenant (100000)
  --edges M            AETERNA_BENCH_GRAPH_EDGES        edges of the big tenant (1000000)
  --small-tenants T    AETERNA_BENCH_GRAPH_SMALL_TENANTS small tenants; the last shares the big one's hub entities (9)
  --small-nodes N      AETERNA_BENCH_GRAPH_SMALL_NODES  nodes per small tenant (1000)
  --small-edges M      AETERNA_BENCH_GRAPH_SMALL_EDGES  edges per small tenant (5000)
  --samples S          AETERNA_BENCH_GRAPH_SAMPLES      measured samples per query (300)
  --warmup W           AETERNA_BENCH_GRAPH_WARMUP       warm-up samples per query, discarded (20)
  --scenario-seconds S AETERNA_BENCH_GRAPH_SCENARIO_SECONDS  time budget per query, its baseline included (30)
  --batch B            AETERNA_BENCH_GRAPH_BATCH        ops per GraphStore.write, at most ${GRAPH_LIMITS.maxOpsPerWrite} (10000)
  --seed K             AETERNA_BENCH_GRAPH_SEED         PRNG seed of the graph and the samples (1)
  --timeout S          AETERNA_BENCH_GRAPH_TIMEOUT      hard limit for the whole run (1200)
  --database URL       AETERNA_BENCH_DATABASE_URL       a PostgreSQL superuser URL to create a fresh database on
                                                        (default: start a throwaway PostgreSQL; PGlite if that fails)
  --pglite                                             use PGlite (embedded) for the log; no PostgreSQL baseline`;

interface BenchConfig {
  quick: boolean;
  nodes: number;
  edges: number;
  smallTenants: number;
  smallNodes: number;
  smallEdges: number;
  samples: number;
  warmup: number;
  scenarioSeconds: number;
  batch: number;
  seed: number;
  timeoutSeconds: number;
  databaseUrl?: string;
  pglite: boolean;
}

function readConfig(argv: string[]): BenchConfig | undefined {
  const knobs = {
    nodes: 'AETERNA_BENCH_GRAPH_NODES',
    edges: 'AETERNA_BENCH_GRAPH_EDGES',
    'small-tenants': 'AETERNA_BENCH_GRAPH_SMALL_TENANTS',
    'small-nodes': 'AETERNA_BENCH_GRAPH_SMALL_NODES',
    'small-edges': 'AETERNA_BENCH_GRAPH_SMALL_EDGES',
    samples: 'AETERNA_BENCH_GRAPH_SAMPLES',
    warmup: 'AETERNA_BENCH_GRAPH_WARMUP',
    'scenario-seconds': 'AETERNA_BENCH_GRAPH_SCENARIO_SECONDS',
    batch: 'AETERNA_BENCH_GRAPH_BATCH',
    seed: 'AETERNA_BENCH_GRAPH_SEED',
    timeout: 'AETERNA_BENCH_GRAPH_TIMEOUT',
    database: 'AETERNA_BENCH_DATABASE_URL',
  } as const;
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, quick: { type: 'boolean' }, pglite: { type: 'boolean' } };
  for (const flag of Object.keys(knobs)) options[flag] = { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true });
  if (values.help) return undefined;
  const raw = (flag: keyof typeof knobs): string | undefined => {
    const value = values[flag];
    return typeof value === 'string' ? value : process.env[knobs[flag]];
  };
  const int = (flag: keyof typeof knobs, fallback: number, min = 1, max?: number) => intSetting(`--${flag} / ${knobs[flag]}`, raw(flag), fallback, min, max);
  const quick = values.quick === true;
  const databaseUrl = raw('database')?.trim();
  const cfg: BenchConfig = {
    quick,
    nodes: int('nodes', quick ? 10_000 : 100_000, 100),
    edges: int('edges', quick ? 100_000 : 1_000_000, 100),
    smallTenants: int('small-tenants', 9, 0, 100),
    smallNodes: int('small-nodes', 1000, 10),
    smallEdges: int('small-edges', 5000, 10),
    samples: int('samples', quick ? 100 : 300),
    warmup: int('warmup', quick ? 10 : 20, 0),
    scenarioSeconds: int('scenario-seconds', quick ? 10 : 30),
    batch: int('batch', GRAPH_LIMITS.maxOpsPerWrite, 1, GRAPH_LIMITS.maxOpsPerWrite),
    seed: int('seed', 1, 0),
    timeoutSeconds: int('timeout', quick ? 600 : 1200, 30),
    pglite: values.pglite === true,
    ...(databaseUrl ? { databaseUrl } : {}),
  };
  // Far more edges than node pairs cannot be drawn distinct; the generator would give up anyway.
  if (cfg.edges > cfg.nodes * 50 || cfg.smallEdges > cfg.smallNodes * 50) throw new Error('at most 50 edges per node');
  return cfg;
}

const owned = ownResources();

const elapsedSince = (started: number): number => (performance.now() - started) / 1000;

// ---------------------------------------------------------------------------------------------
// Where the log lives

interface Backend {
  kind: 'postgres' | 'pglite';
  /** Superuser URL of the benchmark's own database (PostgreSQL only). */
  url?: string;
  /** Its name: how cpu.ts finds the PostgreSQL processes that count as ours. */
  database?: string;
  describe: { db: string; detail: string };
  close(): Promise<void>;
}

async function serverVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ?? '?';
  } finally {
    await client.end();
  }
}

async function postgresBackend(database: TestDatabase, detail: string, services?: RunningServices): Promise<Backend> {
  const version = await serverVersion(database.url);
  return {
    kind: 'postgres',
    url: database.url,
    database: database.name,
    describe: { db: `PostgreSQL ${version}`, detail },
    async close() {
      await database.drop().catch((err: unknown) => say(`could not drop the benchmark database: ${(err as Error).message}`));
      await services?.stop();
    },
  };
}

async function openBackend(cfg: BenchConfig, report: GraphReport): Promise<Backend> {
  const pglite = (detail: string): Backend => ({ kind: 'pglite', describe: { db: 'PGlite', detail }, close: async () => undefined });
  if (cfg.pglite) return pglite('--pglite');
  if (cfg.databaseUrl) {
    // Asked for by name: failing to use it is an error, not a silent fallback.
    return postgresBackend(await createTestDatabase(cfg.databaseUrl), 'AETERNA_BENCH_DATABASE_URL, a fresh database');
  }
  const services = await startServices({ postgres: true, log: (line) => say(`  [services] ${line}`) });
  if (services.databaseUrl) {
    const database = await createTestDatabase(services.databaseUrl);
    return postgresBackend(database, 'a throwaway server from test/support startServices, fsync off, same machine', services);
  }
  const reason = services.problems.join('; ') || 'PostgreSQL could not be started';
  await services.stop();
  report.notes.push(`PostgreSQL could not be started (${reason}), so the log ran on PGlite and the PostgreSQL baseline was skipped`);
  loud(`PostgreSQL could not be started: ${reason}. Falling back to PGlite.`);
  return pglite('fallback: PostgreSQL could not be started');
}

interface OpenStore {
  db: Db;
  store: GraphStore;
  snapshots: GraphSnapshotter;
  close(): Promise<void>;
}

/** The process's GraphStore as core.ts wires it in cluster mode: in-memory DuckDB, a snapshot restorer. */
async function openStore(backend: Backend, work: string): Promise<OpenStore> {
  const config = loadConfig({
    AETERNA_DATA_DIR: path.join(work, 'data'),
    AETERNA_JWT_SECRET: randomBytes(32).toString('hex'),
    AETERNA_GRAPH_DUCKDB_PATH: ':memory:',
    AETERNA_SNAPSHOT_DIR: path.join(work, 'snapshots'),
    AETERNA_LOG_LEVEL: 'warn',
    ...(backend.url ? { AETERNA_DATABASE_URL: backend.url, AETERNA_DATABASE_POOL_SIZE: '4' } : {}),
  });
  const log = createLogger('warn', 'graph-bench');
  const db = await openDb(config.database);
  const snapshots = new GraphSnapshotter({ store: createSnapshotStore(config.graph.snapshots), tmpDir: path.join(work, 'snapshot-tmp'), log });
  const store = await GraphStore.open({ db, config: config.graph, log, snapshots }).catch(async (err: unknown) => {
    await db.close();
    throw err;
  });
  return {
    db,
    store,
    snapshots,
    async close() {
      await store.close();
      await db.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Load

async function writeBatches(
  store: GraphStore,
  tenantId: string,
  what: string,
  total: number,
  batch: number,
  ops: (from: number, to: number) => GraphOpDraft[],
  database: string | undefined,
  progress: boolean,
): Promise<LoadPhase & { headSeq: number }> {
  const times: number[] = [];
  const cpuBefore = snapshot([process.pid], database);
  const started = performance.now();
  let lastSaid = started;
  let headSeq = 0;
  for (let from = 0; from < total; from += batch) {
    const to = Math.min(total, from + batch);
    const drafts = ops(from, to);
    const t = performance.now();
    const result = await store.write({ tenantId, actor: ACTOR }, drafts);
    times.push(performance.now() - t);
    if (!result.applied) throw new Error(`${tenantId}: the write of ${what} ${from}..${to} changed nothing`);
    headSeq = result.seq;
    if (progress && (performance.now() - lastSaid > PROGRESS_EVERY_MS || to === total)) {
      lastSaid = performance.now();
      const seconds = elapsedSince(started);
      const rate = to / seconds;
      say(
        `  [load] ${tenantId} ${what}: ${to.toLocaleString('en-US')}/${total.toLocaleString('en-US')} (${Math.round((to / total) * 100)}%)  ` +
          `${Math.round(rate).toLocaleString('en-US')} ops/s  last batch ${Math.round(times.at(-1) ?? 0)} ms  ETA ${Math.round((total - to) / rate)} s`,
      );
    }
  }
  const seconds = elapsedSince(started);
  const stats = latencyStats(times, seconds);
  const tenth = Math.max(1, Math.floor(times.length / 10));
  const foreignCpu = foreignShare(cpuBefore, snapshot([process.pid], database));
  return {
    tenant: tenantId,
    what,
    ops: total,
    batches: times.length,
    seconds,
    opsPerSec: total / seconds,
    batchMs: { p50: stats.p50, p95: stats.p95, max: stats.max },
    ...(times.length >= 10 ? { firstTenthP50: median(times.slice(0, tenth)), lastTenthP50: median(times.slice(-tenth)) } : {}),
    ...(foreignCpu === undefined ? {} : { foreignCpu }),
    headSeq,
  };
}

async function loadTenant(store: GraphStore, tenantId: string, graph: SyntheticGraph, cfg: BenchConfig, database: string | undefined, progress: boolean) {
  const nodes = await writeBatches(store, tenantId, 'nodes', graph.nodeCount, cfg.batch, (a, b) => graph.nodeOps(a, b), database, progress);
  const edges = await writeBatches(store, tenantId, 'edges', graph.edgeCount, cfg.batch, (a, b) => graph.edgeOps(a, b), database, progress);
  return { nodes, edges };
}

/** Small tenants' phases as one row: each is a batch or two, too few to summarise alone. */
function combine(tenant: string, phases: readonly LoadPhase[]): LoadPhase {
  const ops = phases.reduce((n, p) => n + p.ops, 0);
  const seconds = phases.reduce((n, p) => n + p.seconds, 0);
  const shares = phases.flatMap((p) => (p.foreignCpu === undefined ? [] : [p.foreignCpu]));
  return {
    tenant,
    what: 'nodes + edges',
    ops,
    batches: phases.reduce((n, p) => n + p.batches, 0),
    seconds,
    opsPerSec: ops / seconds,
    batchMs: { p50: median(phases.map((p) => p.batchMs.p50)), p95: Math.max(...phases.map((p) => p.batchMs.p95)), max: Math.max(...phases.map((p) => p.batchMs.max)) },
    ...(shares.length > 0 ? { foreignCpu: median(shares) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Queries

/** Counts answers that disagree with the ground truth; the first few become warnings. */
class Checker {
  count = 0;
  constructor(
    private readonly scenario: string,
    private readonly report: GraphReport,
  ) {}

  expect(ok: boolean, what: () => string): void {
    if (ok) return;
    this.count += 1;
    if (this.count <= 3) this.report.warnings.push(`${this.scenario}: wrong answer: ${what()}`);
  }
}

/** An input with its right answer, worked out before any timing starts. */
interface Case<T> {
  input: T;
  expected: number | undefined;
}

/** The inputs' right answers from the in-memory graph, and how long each took to work out (ms). */
function withTruth<T>(inputs: readonly T[], truth: (input: T) => number | undefined): { cases: Case<T>[]; reference: number[] } {
  const reference: number[] = [];
  const cases = inputs.map((input) => {
    const started = performance.now();
    const expected = truth(input);
    reference.push(performance.now() - started);
    return { input, expected };
  });
  return { cases, reference };
}

type Run<T> = (c: Case<T>, check: Checker) => Promise<number>;

interface Scenario<T> {
  name: string;
  description: string;
  cases: Case<T>[];
  /** Runs one query, checks it, returns the size of its answer. */
  run: Run<T>;
  /**
   * Sampled alternately with `run` on the same case, so that both see the same machine: another
   * engine (the PostgreSQL baseline) or another tenant.
   */
  twin?: { label: string; run: Run<T> };
  /** What working out the right answers took per case (an in-memory BFS): the walk with no database at all. */
  reference?: number[];
}

interface Measured {
  query: QueryResult;
  twin?: { stats: LatencyStats; mismatches: number };
}

async function measure<T>(
  s: Scenario<T>,
  cfg: BenchConfig,
  report: GraphReport,
  database: string | undefined,
  samples = cfg.samples,
  budgetSeconds = cfg.scenarioSeconds,
): Promise<Measured> {
  const check = new Checker(s.name, report);
  const twinCheck = new Checker(`${s.name} (${s.twin?.label ?? ''})`, report);
  for (const c of s.cases.slice(0, cfg.warmup)) {
    await s.run(c, check);
    await s.twin?.run(c, twinCheck);
  }
  const times: number[] = [];
  const twinTimes: number[] = [];
  const sizes: number[] = [];
  const measured = s.cases.slice(cfg.warmup, cfg.warmup + samples);
  const cpuBefore = snapshot([process.pid], database);
  const started = performance.now();
  const deadline = started + budgetSeconds * 1000;
  let lastSaid = started;
  let budgetHit = false;
  for (const [i, c] of measured.entries()) {
    if (performance.now() > deadline) {
      budgetHit = true;
      break;
    }
    const ours = async () => {
      const t = performance.now();
      const size = await s.run(c, check);
      times.push(performance.now() - t);
      sizes.push(size);
    };
    const theirs = async () => {
      if (!s.twin) return;
      const t = performance.now();
      await s.twin.run(c, twinCheck);
      twinTimes.push(performance.now() - t);
    };
    // Alternating who goes first, so neither always finds the other's pages in the caches.
    if (i % 2 === 0) {
      await ours();
      await theirs();
    } else {
      await theirs();
      await ours();
    }
    if (performance.now() - lastSaid > PROGRESS_EVERY_MS) {
      lastSaid = performance.now();
      const twin = s.twin ? ` (${s.twin.label} ${median(twinTimes).toFixed(1)} ms)` : '';
      say(`  [query] ${s.name}: ${times.length}/${measured.length}  p50 so far ${median(times).toFixed(1)} ms${twin}`);
    }
  }
  const foreignCpu = foreignShare(cpuBefore, snapshot([process.pid], database));
  // Samples run one at a time: each side's rate is its samples over its own summed latency.
  const stats = (ms: readonly number[]): LatencyStats => latencyStats(ms, ms.reduce((a, b) => a + b, 0) / 1000);
  const query: QueryResult = {
    name: s.name,
    description: s.description,
    stats: stats(times),
    budgetHit,
    mismatches: check.count,
    resultSize: { p50: median(sizes), max: Math.max(...sizes) },
    ...(s.reference ? { reference: stats(s.reference) } : {}),
    ...(foreignCpu === undefined ? {} : { foreignCpu }),
  };
  const q = query.stats;
  say(
    `[query] ${s.name.padEnd(17)} ${String(q.samples).padStart(4)} samples  p50 ${q.p50.toFixed(2)} ms  p95 ${q.p95.toFixed(2)} ms  p99 ${q.p99.toFixed(2)} ms  ` +
      `${q.opsPerSec.toFixed(1)} ops/s  wrong ${check.count}${foreignCpu === undefined ? '' : `  other CPU ${Math.round(foreignCpu * 100)}%`}${budgetHit ? '  (time budget hit)' : ''}`,
  );
  if (!s.twin) return { query };
  const twin = stats(twinTimes);
  say(`        ${s.twin.label}  p50 ${twin.p50.toFixed(2)} ms  p95 ${twin.p95.toFixed(2)} ms  p99 ${twin.p99.toFixed(2)} ms  wrong ${twinCheck.count}`);
  return { query, twin: { stats: twin, mismatches: twinCheck.count } };
}

function baselineOf(m: Measured): BaselineResult | undefined {
  if (!m.twin) return undefined;
  const q = m.query.stats;
  const pg = m.twin.stats;
  return { name: m.query.name, graphStore: q, postgres: pg, ratioP50: pg.p50 / q.p50, ratioP95: pg.p95 / q.p95, mismatches: m.twin.mismatches };
}

function randomNodes(graph: SyntheticGraph, count: number, seed: number, below = graph.nodeCount): number[] {
  const random = prng(seed);
  return Array.from({ length: count }, () => Math.floor(random() * below));
}

const BASELINE_LABEL = 'PostgreSQL baseline';

/** Neighbours of node i, either direction; GraphStore returns min(limit, everything in reach). */
function neighborsRun(store: GraphStore, tenantId: string, graph: SyntheticGraph, depth: number): Run<number> {
  return async ({ input: i, expected }, check) => {
    const result = await store.neighbors({ tenantId }, { id: graph.ids[i], depth, limit: NEIGHBOR_LIMIT });
    const want = Math.min(NEIGHBOR_LIMIT, expected ?? 0);
    check.expect(result.neighbors.length === want, () => `${graph.ids[i]}: ${result.neighbors.length} neighbours, expected ${want}`);
    return result.neighbors.length;
  };
}

function neighborsScenario(store: GraphStore, tenantId: string, graph: SyntheticGraph, depth: number, nodes: number[], baseline?: PgBaseline): Scenario<number> {
  const { cases, reference } = withTruth(nodes, (i) => graph.neighborhood(i, depth));
  return {
    name: `neighbors-d${depth}`,
    description: `neighbours, depth ${depth}, both directions, limit ${NEIGHBOR_LIMIT}`,
    cases,
    reference,
    run: neighborsRun(store, tenantId, graph, depth),
    ...(baseline
      ? {
          twin: {
            label: BASELINE_LABEL,
            async run({ input: i, expected }, check) {
              const got = await baseline.neighbors2(tenantId, graph.ids[i] as string, NEIGHBOR_LIMIT + 1);
              const want = Math.min(NEIGHBOR_LIMIT + 1, expected ?? 0);
              check.expect(got === want, () => `${graph.ids[i]}: ${got} rows, expected ${want}`);
              return got;
            },
          },
        }
      : {}),
  };
}

type Pair = { from: number; to: number };

function pathScenario(store: GraphStore, graph: SyntheticGraph, name: string, description: string, pairs: Pair[], baseline?: PgBaseline): Scenario<Pair> {
  const { cases, reference } = withTruth(pairs, (p) => graph.distance(p.from, p.to, PATH_DEPTH));
  const show = (d: number | undefined) => (d === undefined ? 'none' : String(d));
  const label = (p: Pair) => `${graph.ids[p.from]} → ${graph.ids[p.to]}`;
  return {
    name,
    description,
    cases,
    reference,
    async run({ input: p, expected }, check) {
      const result = await store.path({ tenantId: BIG }, { from: graph.ids[p.from], to: graph.ids[p.to], maxDepth: PATH_DEPTH });
      const length = result.found ? result.length : undefined;
      check.expect(length === expected, () => `${label(p)}: length ${show(length)}, expected ${show(expected)}`);
      return length ?? 0;
    },
    ...(baseline
      ? {
          twin: {
            label: BASELINE_LABEL,
            async run({ input: p, expected }, check) {
              const length = await baseline.pathLength(BIG, graph.ids[p.from] as string, graph.ids[p.to] as string, PATH_DEPTH);
              check.expect(length === expected, () => `${label(p)}: length ${show(length)}, expected ${show(expected)}`);
              return length ?? 0;
            },
          },
        }
      : {}),
  };
}

/** The big tenant's scenarios, in order, each ready to measure (their inputs differ in type). */
function bigScenarios(
  store: GraphStore,
  big: SyntheticGraph,
  cfg: BenchConfig,
  baseline: PgBaseline | undefined,
  measureOne: <T>(s: Scenario<T>) => Promise<Measured>,
): (() => Promise<Measured>)[] {
  const job =
    <T>(s: () => Scenario<T>) =>
    () =>
      measureOne(s());
  const n = cfg.warmup + cfg.samples;
  const seed = (k: number) => cfg.seed * 1000 + k;
  const connected = (): Pair[] => {
    const walks = prng(seed(3));
    return Array.from({ length: n }, () => big.walk(walks, WALK_STEPS));
  };
  // No edge joins the island to the rest, so there is no path however deep (the truth checks it).
  const unconnected = (): Pair[] => {
    const random = prng(seed(4));
    const island = big.nodeCount - big.islandStart;
    return Array.from({ length: n }, () => ({ from: Math.floor(random() * big.islandStart), to: big.islandStart + Math.floor(random() * island) }));
  };
  const words = prng(seed(6));
  return [
    job(() => neighborsScenario(store, BIG, big, 1, randomNodes(big, n, seed(1)))),
    job(() => neighborsScenario(store, BIG, big, 2, randomNodes(big, n, seed(2)), baseline)),
    job(() => pathScenario(store, big, 'path-connected', `shortest path, out, maxDepth ${PATH_DEPTH}, ends of ${WALK_STEPS}-step random walks`, connected(), baseline)),
    ...(big.islandStart < big.nodeCount
      ? [job(() => pathScenario(store, big, 'path-unconnected', `shortest path, out, maxDepth ${PATH_DEPTH}, to a node of another component (no path)`, unconnected(), baseline))]
      : []),
    job((): Scenario<number> => {
      const { cases, reference } = withTruth(randomNodes(big, n, seed(5)), (i) => big.neighborhood(i, 2));
      return {
        name: 'related-h2',
        description: `related, hops 2, limit ${RELATED_LIMIT}`,
        cases,
        reference,
        async run({ input: i, expected }, check) {
          const result = await store.related({ tenantId: BIG }, { id: big.ids[i], hops: 2, limit: RELATED_LIMIT });
          const want = Math.min(RELATED_LIMIT, expected ?? 0);
          check.expect(result.related.length === want, () => `${big.ids[i]}: ${result.related.length} related, expected ${want}`);
          return result.related.length;
        },
      };
    }),
    job(
      (): Scenario<string> => ({
        name: 'search-word',
        description: `text search for one label word (~3% of nodes match), limit ${SEARCH_LIMIT}`,
        cases: Array.from({ length: n }, () => ({ input: LABEL_WORDS[Math.floor(words() * LABEL_WORDS.length)] as string, expected: undefined })),
        async run({ input: q }, check) {
          const result = await store.search({ tenantId: BIG }, { q, limit: SEARCH_LIMIT });
          check.expect(result.results.length > 0, () => `"${q}" found nothing`);
          return result.results.length;
        },
      }),
    ),
    job(
      (): Scenario<number> => ({
        name: 'search-label',
        description: `text search for one node's exact label, limit ${SEARCH_LIMIT}`,
        cases: randomNodes(big, n, seed(7)).map((i) => ({ input: i, expected: undefined })),
        async run({ input: i }, check) {
          const result = await store.search({ tenantId: BIG }, { q: big.labels[i], limit: SEARCH_LIMIT });
          const top = result.results[0];
          check.expect(top !== undefined && top.node.id === big.ids[i] && top.match === 'exact', () => `"${big.labels[i]}": first result ${top?.node.id ?? 'none'} (${top?.match ?? '-'})`);
          return result.results.length;
        },
      }),
    ),
  ];
}

interface SmallTenant {
  tenantId: string;
  graph: SyntheticGraph;
  entities: 'own' | 'shared';
}

function smallTenants(cfg: BenchConfig, big: SyntheticGraph): SmallTenant[] {
  const hubs = big.byDegree();
  return Array.from({ length: cfg.smallTenants }, (_, k) => {
    // The last one talks about the same things as the big tenant: its node ids are the big tenant's hubs'.
    const shared = k === cfg.smallTenants - 1 && cfg.smallTenants > 1;
    const nodes = shared ? Math.min(cfg.smallNodes, big.nodeCount) : cfg.smallNodes;
    const graph = new SyntheticGraph({
      nodes,
      edges: Math.min(cfg.smallEdges, nodes * 50),
      islandShare: 0,
      seed: cfg.seed * 1000 + 100 + k,
      ...(shared
        ? { naming: (i: number) => ({ label: big.labels[hubs[i] as number] as string, kind: big.kinds[hubs[i] as number] as string }) }
        : { labelPrefix: `t${k + 1}-` }),
    });
    return { tenantId: `bench-small-${k + 1}`, graph, entities: shared ? 'shared' : 'own' };
  });
}

/**
 * Neighbours (depth 2) of the first small tenant and, sampled alternately with it, of the one
 * sharing the big tenant's entities: contention from outside hits both alike, so their ratio
 * says what the shared ids cost even on a busy machine.
 */
function isolationScenario(store: GraphStore, tenants: readonly SmallTenant[], cfg: BenchConfig): Scenario<number> {
  const n = cfg.warmup + ISOLATION_SAMPLES;
  // A case is a sample index k: each tenant queries its own k-th start node against its own truth.
  const sides = tenants.map((t, side) => {
    const nodes = randomNodes(t.graph, n, cfg.seed * 1000 + 50 + side);
    const truth = nodes.map((i) => t.graph.neighborhood(i, 2));
    const query = neighborsRun(store, t.tenantId, t.graph, 2);
    const run: Run<number> = ({ input: k }, check) => query({ input: nodes[k] as number, expected: truth[k] }, check);
    return { tenant: t, run };
  });
  const [own, shared] = sides as [(typeof sides)[number], (typeof sides)[number] | undefined];
  return {
    name: `${own.tenant.tenantId} neighbors-d2`,
    description: 'neighbours, depth 2, both directions',
    cases: Array.from({ length: n }, (_, k) => ({ input: k, expected: undefined })),
    run: own.run,
    ...(shared ? { twin: { label: `${shared.tenant.tenantId} (shared entities)`, run: shared.run } } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Cold starts

async function coldStart(mode: 'snapshot' | 'replay', env: Record<string, string>, timeoutSeconds: number): Promise<ColdResult> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AETERNA_') && !key.startsWith('BENCH_')));
  // Node itself with tsx as a loader, not the tsx CLI: one process, so its PID and memory are the load's.
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), COLD_ENTRY], {
    env: { ...inherited, ...env, [COLD_ENV.mode]: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  owned.children.add(child);
  const tail: string[] = [];
  let result: ColdResult | undefined;
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
  });
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      const parsed = JSON.parse(line) as { graphCold?: ColdResult };
      if (parsed.graphCold) result = parsed.graphCold;
      else say(`  [cold ${mode}] ${line}`);
    } catch {
      say(`  [cold ${mode}] ${line}`);
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timedOut = await Promise.race([exited.then(() => false), sleep(timeoutSeconds * 1000).then(() => true)]);
  if (timedOut) child.kill('SIGKILL');
  const code = await exited;
  owned.children.delete(child);
  // Lines still in the pipe arrive after 'exit'.
  await sleep(100);
  if (result) return result;
  // The child's own message, not its stack: the stack is in the lines printed above.
  const message = tail.find((line) => line.startsWith('graph-cold:')) ?? tail.at(-1) ?? '';
  for (const line of tail) say(`  [cold ${mode}] ${line}`);
  const why = timedOut ? `did not finish within ${timeoutSeconds}s` : `exited with code ${String(code)}: ${message}`;
  const empty = { label: '', rssMiB: Number.NaN, heapUsedMiB: Number.NaN };
  return { mode, ok: false, error: why, openMs: Number.NaN, loadMs: Number.NaN, firstQueryMs: Number.NaN, secondQueryMs: Number.NaN, seq: 0, expectedSeq: 0, before: empty, after: empty, maxRssMiB: Number.NaN, cpuSeconds: Number.NaN };
}

// ---------------------------------------------------------------------------------------------

/**
 * Which code was measured: src/graph changes often, so the commit, how many of its files differ
 * from it, and a hash of their content (which also tells two copies of the tree apart).
 */
function sourceState(): Record<string, string | number> {
  const root = path.join(LOADTEST_DIR, '..');
  const files = readdirSync(path.join(root, 'src/graph'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .sort();
  const hash = createHash('sha256');
  for (const file of files) hash.update(file).update(readFileSync(path.join(root, 'src/graph', file)));
  const state: Record<string, string | number> = { srcGraphSha256: hash.digest('hex').slice(0, 12) };
  const git = (...args: string[]) => execFileSync('git', args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  try {
    state['gitCommit'] = git('rev-parse', '--short', 'HEAD');
    state['srcGraphUncommittedFiles'] = git('status', '--porcelain', '--', 'src/graph').split('\n').filter(Boolean).length;
  } catch {
    // not a git checkout (a copy of the tree): the content hash still names the code
  }
  return state;
}

function finish(report: GraphReport, cfg: BenchConfig): void {
  report.finishedAt = new Date().toISOString();
  report.machine['loadAverageAtEnd'] = Number((os.loadavg()[0] ?? 0).toFixed(2));
  const atStart = report.machine['foreignCpuAtStart'];
  if (typeof atStart === 'number' && atStart > CONTENDED_ROUND) {
    report.notes.push(
      `other processes used ${(atStart * 100).toFixed(0)}% of the CPU just before the run started: absolute numbers are likely depressed and noisier than on an idle machine`,
    );
  }
  report.notes.push(...contendedPhases(report));
  const name = cfg.quick ? 'graph-quick' : 'graph';
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = path.join(RESULTS_DIR, `${name}-${report.startedAt.replace(/[:.]/g, '-')}.json`);
  const md = path.join(RESULTS_DIR, `${name}-latest.md`);
  const markdown = renderMarkdown(report);
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(md, markdown);
  process.stdout.write(`\n${markdown}\n`);
  if (report.warnings.length > 0) loud(`${report.warnings.length} warning(s): see above`);
  say(`wrote ${path.relative(process.cwd(), json)} and ${path.relative(process.cwd(), md)}`);
}

async function run(cfg: BenchConfig, report: GraphReport, deadline: number): Promise<void> {
  const phase = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      report.phases.push({ name, seconds: Math.round(elapsedSince(started) * 10) / 10 });
    }
  };

  say(`graph: generating ${cfg.nodes.toLocaleString('en-US')} nodes / ${cfg.edges.toLocaleString('en-US')} edges (+ ${cfg.smallTenants} small tenants)…`);
  const { big, small } = await phase('generate', async () => {
    const graph = new SyntheticGraph({ nodes: cfg.nodes, edges: cfg.edges, islandShare: ISLAND_SHARE, seed: cfg.seed, tailEdges: TAIL_BATCHES * TAIL_OPS });
    return { big: graph, small: smallTenants(cfg, graph) };
  });
  const degrees = big.degreeSummary();
  report.data = {
    bigDegrees: `max ${degrees.max}, p99 ${degrees.p99}, median ${degrees.p50}; the top 1% of nodes hold ${Math.round(degrees.topPercentEdgeShare * 100)}% of edge ends`,
    bigDegreeSummary: degrees,
    islandNodes: big.nodeCount - big.islandStart,
    islandEdges: big.islandEdges,
    smallTenants: small.map((t) => ({ tenantId: t.tenantId, nodes: t.graph.nodeCount, edges: t.graph.edgeCount, entities: t.entities })),
  };
  say(`== big tenant degrees: ${String(report.data['bigDegrees'])}`);
  report.memory.push(memorySample('start (synthetic graphs generated, nothing open)'));

  const work = mkdtempSync(path.join(os.tmpdir(), 'aeterna-bench-graph-'));
  owned.dirs.add(work);
  const backend = await openBackend(cfg, report);
  report.backend = backend.describe;
  say(`== log: ${backend.describe.db} (${backend.describe.detail})`);
  let main: OpenStore | undefined;
  let baseline: PgBaseline | undefined;
  try {
    main = await openStore(backend, work);
    const store = main.store;
    const database = backend.database;

    // Small tenants first, so their queries can be timed alone and again beside the big tenant.
    const smallPhases = await phase('load small tenants', async () => {
      const phases: LoadPhase[] = [];
      for (const t of small) {
        const { nodes, edges } = await loadTenant(store, t.tenantId, t.graph, cfg, database, false);
        phases.push(nodes, edges);
      }
      return phases;
    });
    if (smallPhases.length > 0) report.load.push(combine(`${small.length} small tenants`, smallPhases));
    report.memory.push(memorySample('small tenants loaded'));
    // The first small tenant, and the one sharing the big tenant's entities, sampled alternately.
    const isolated = small.filter((t, k) => k === 0 || t.entities === 'shared');
    const isolationRuns = (label: string) =>
      phase(`isolation ${label}`, () =>
        measure(isolationScenario(store, isolated, cfg), cfg, report, database, ISOLATION_SAMPLES, Math.max(5, Math.round(cfg.scenarioSeconds / 2))),
      );
    say(`\n== small tenants' neighbours (depth 2) before the big tenant exists`);
    const alone = await isolationRuns('before');

    say(`\n== loading ${BIG}: ${cfg.nodes.toLocaleString('en-US')} nodes, ${cfg.edges.toLocaleString('en-US')} edges in batches of ${cfg.batch.toLocaleString('en-US')}`);
    const bigLoad = await phase('load big tenant', () => loadTenant(store, BIG, big, cfg, database, true));
    report.load.push(bigLoad.nodes, bigLoad.edges);
    const total = bigLoad.nodes.ops + bigLoad.edges.ops;
    say(`== ${BIG} loaded: ${total.toLocaleString('en-US')} ops in ${(bigLoad.nodes.seconds + bigLoad.edges.seconds).toFixed(1)} s`);
    report.memory.push(memorySample('big tenant loaded', await duckdbBytes(store, BIG)));

    if (backend.url) {
      const client = new pg.Client({ connectionString: backend.url });
      await client.connect();
      try {
        report.logBytes = Number((await client.query<{ bytes: string }>("SELECT pg_total_relation_size('graph_events') AS bytes")).rows[0]?.bytes ?? 0);
      } finally {
        await client.end();
      }
      say('== building the PostgreSQL baseline table…');
      const url = backend.url;
      baseline = await phase('baseline table', () => PgBaseline.create(url, [{ tenantId: BIG, graph: big }, ...small]));
      report.baselineTable = { seconds: baseline.loadSeconds, bytes: baseline.tableBytes };
    } else {
      report.notes.push('baseline: PostgreSQL comparison skipped (the log ran on PGlite)');
    }

    say(`\n== queries on ${BIG}`);
    await phase('queries', async () => {
      for (const next of bigScenarios(store, big, cfg, baseline, (s) => measure(s, cfg, report, database))) {
        const measured = await next();
        report.queries.push(measured.query);
        const compared = baselineOf(measured);
        if (compared) report.baseline.push(compared);
      }
    });

    say(`\n== small tenants' neighbours (depth 2) beside the big tenant`);
    const withBig = await isolationRuns('after');
    const side = (m: Measured, k: number) => (k === 0 ? m.query.stats : m.twin?.stats);
    report.isolation = isolated.flatMap((t, k) => {
      const a = side(alone, k);
      const b = side(withBig, k);
      if (!a || !b) return [];
      return [{ tenant: t.tenantId, entities: t.entities, alone: a, withBig: b, ratioP50: b.p50 / a.p50, foreignCpu: [alone.query.foreignCpu, withBig.query.foreignCpu] }];
    });
    report.memory.push(memorySample('after the queries', await duckdbBytes(store, BIG)));
    await baseline?.close();
    baseline = undefined;

    say(`\n== full snapshot of ${BIG}`);
    const snapshots = main.snapshots;
    const snap = await phase('snapshot', async () => {
      const started = performance.now();
      const manifest = await snapshotGraph(store, snapshots, BIG, 'full');
      return { manifest, ms: performance.now() - started };
    });
    const files = Object.fromEntries(SNAPSHOT_TABLES.map((t) => [t, { rows: snap.manifest.files[t].rows, bytes: snap.manifest.files[t].bytes }]));
    const tail = await phase('log tail', () =>
      writeBatches(store, BIG, 'tail edges', TAIL_BATCHES * TAIL_OPS, TAIL_OPS, (a, b) => big.edgeOps(big.edgeCount + a, big.edgeCount + b), database, false),
    );
    report.snapshot = {
      ms: snap.ms,
      seq: snap.manifest.seq,
      rows: Object.values(files).reduce((n, f) => n + f.rows, 0),
      bytes: Object.values(files).reduce((n, f) => n + f.bytes, 0),
      files,
      tail: { batches: tail.batches, ops: tail.ops, ms: tail.seconds * 1000, headSeq: tail.headSeq },
    };
    say(`== snapshot: ${Math.round(snap.ms)} ms, ${report.snapshot.rows.toLocaleString('en-US')} rows, ${(report.snapshot.bytes / 2 ** 20).toFixed(1)} MiB; tail to seq ${tail.headSeq}`);

    // A cold process must not share this one's DuckDB, and PGlite allows one process at a time.
    await main.close();
    main = undefined;
    report.memory.push(memorySample('store closed'));

    const coldNode = big.ids[randomNodes(big, 1, cfg.seed * 1000 + 9, big.islandStart)[0] as number] as string;
    const env: Record<string, string> = {
      [COLD_ENV.dataDir]: path.join(work, 'data'),
      [COLD_ENV.snapshotDir]: path.join(work, 'snapshots'),
      [COLD_ENV.tenant]: BIG,
      [COLD_ENV.nodeId]: coldNode,
      [COLD_ENV.expectedSeq]: String(tail.headSeq),
      ...(backend.url ? { [COLD_ENV.databaseUrl]: backend.url } : {}),
      ...(backend.database ? { [COLD_ENV.databaseName]: backend.database } : {}),
    };
    for (const mode of ['snapshot', 'replay'] as const) {
      const budget = Math.max(30, Math.floor((deadline - Date.now()) / 1000) - 20);
      say(`\n== cold start from ${mode === 'snapshot' ? 'the snapshot + log tail' : 'the whole log'} (a fresh process; at most ${budget} s)…`);
      const cold = await phase(`cold ${mode}`, () => coldStart(mode, env, budget));
      report.cold.push(cold);
      if (!cold.ok) report.warnings.push(`cold start (${mode}) failed: ${cold.error ?? ''}`);
      else if (cold.seq !== cold.expectedSeq) report.warnings.push(`cold start (${mode}) reached seq ${cold.seq}, the log's head is ${cold.expectedSeq}`);
      say(
        cold.ok
          ? `== cold ${mode}: tenant load ${Math.round(cold.loadMs)} ms${cold.restoreMs === undefined ? '' : ` (restore ${Math.round(cold.restoreMs)} ms)`}, ` +
              `first query ${cold.firstQueryMs.toFixed(1)} ms, second ${cold.secondQueryMs.toFixed(1)} ms, RSS ${cold.before.rssMiB} → ${cold.after.rssMiB} MiB (peak ${cold.maxRssMiB})`
          : `!!! cold ${mode} failed: ${cold.error ?? ''}`,
      );
    }
  } finally {
    await baseline?.close().catch(() => undefined);
    await main?.close().catch(() => undefined);
    await backend.close();
    rmSync(work, { recursive: true, force: true });
    owned.dirs.delete(work);
  }
  for (const q of report.queries) if (q.budgetHit) report.notes.push(`${q.name} stopped at its ${cfg.scenarioSeconds} s budget after ${q.stats.samples} samples`);
}

async function main(): Promise<number> {
  const cfg = readConfig(process.argv.slice(2));
  if (!cfg) {
    say(HELP);
    return 0;
  }
  const startedAt = Date.now();
  const report: GraphReport = {
    startedAt: new Date(startedAt).toISOString(),
    machine: { ...machineInfo(['@duckdb/node-api', 'pg']), ...sourceState() },
    config: { ...cfg, databaseUrl: cfg.databaseUrl ? '(given)' : '', islandShare: ISLAND_SHARE, neighborLimit: NEIGHBOR_LIMIT, pathMaxDepth: PATH_DEPTH, walkSteps: WALK_STEPS },
    backend: { db: 'not opened', detail: '' },
    data: {},
    phases: [],
    load: [],
    queries: [],
    baseline: [],
    isolation: [],
    cold: [],
    memory: [],
    warnings: [],
    notes: [],
  };
  armHardTimeout(cfg.timeoutSeconds, (warning) => {
    report.warnings.push(warning);
    loud(`${warning}: writing partial results and exiting`);
    finish(report, cfg);
  });

  // Before anything of ours runs, whatever keeps the CPUs busy is someone else's work.
  const idle = snapshot([process.pid]);
  await sleep(QUIET_PROBE_MS);
  const atStart = foreignShare(idle, snapshot([process.pid]));
  if (atStart !== undefined) report.machine['foreignCpuAtStart'] = Number(atStart.toFixed(3));
  say(`graph benchmark${cfg.quick ? ' (--quick)' : ''}: load average ${report.machine['loadAverageAtStart']}, other processes ${atStart === undefined ? '?' : `${Math.round(atStart * 100)}%`} of the CPU`);

  try {
    await run(cfg, report, startedAt + cfg.timeoutSeconds * 1000);
  } catch (err) {
    report.warnings.push(`the run failed: ${err instanceof Error ? err.message : String(err)}`);
    loud(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
  finish(report, cfg);
  return report.warnings.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`graph: ${err instanceof Error ? err.message : String(err)}\n\n${HELP}`);
    process.exit(2);
  },
);
