/**
 * Context Architect benchmark: `context.assemble` latency over a 10k-memory tenant in embedded
 * mode (PGlite + pgvector HNSW, in this process), answer cache cold vs warm, against plain
 * `memory.search` (the candidate lookup assemble starts with) as the baseline, all in one run.
 * `npm run bench:context -- --help`. Never part of `npm test`. See "context" in loadtest/README.md.
 *
 * Seeding (MemoryService.add runs at ~70/s, so 10k adds alone would take minutes): the memories go
 * in through the same SQL add runs (INSERT, then the vector index's upsert of the embedding the
 * configured embedder computes), 500 per transaction, without add's dedup search and without
 * events (no relay runs here), into the database before the core opens; opening the core then
 * builds the HNSW index over them in one go, as a bulk load would, instead of one insertion per
 * row. Summaries for most memories go in as the rows the cca.summarize job writes, made by the
 * same extractive summariser; assemble makes the rest on the fly, as while the job lags behind.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ContextApi, ExtractiveSummarizer, createContextServices, type ContextServices } from '../src/cca/index.js';
import { loadConfig } from '../src/config.js';
import { openCore, type Core } from '../src/core.js';
import { contentHash, createEmbeddingService, type EmbeddingService } from '../src/embed/index.js';
import { countTokens, createLogger } from '../src/obs/index.js';
import { SUMMARY_LEVELS, type ContextAssembleResult } from '../src/protocol/index.js';
import { newId, openDb, type Db } from '../src/store/index.js';
import type { TenantContext } from '../src/tenancy/index.js';
import { createVectorIndex } from '../src/vector/index.js';
import type { Config } from '../src/config.js';
import { memoryText, prng, searchQueries } from './corpus.js';
import { foreignShare, snapshot, type CpuSnapshot } from './cpu.js';
import { latencyStats, type LatencyStats } from './graph-report.js';
import { armHardTimeout, intSetting, machineInfo, RESULTS_DIR } from './settings.js';

const TENANT = 'bench';
const SCOPES = 8;
const BATCH = 500;
const SEED = 20_251_125;

const HELP = `context.assemble latency, answer cache cold vs warm, memory.search as the baseline (embedded mode)

  --memories N      memories in the tenant (BENCH_MEMORIES, default 10000)
  --queries N       distinct queries per scenario (BENCH_QUERIES, default 200)
  --budget N        tokenBudget of every assemble (BENCH_BUDGET, default 4000)
  --summarized P    percent of memories with stored summaries (BENCH_SUMMARIZED, default 80)
  --timeout S       hard stop, results so far are written (BENCH_TIMEOUT, default 170)
  --help`;

interface Cfg {
  memories: number;
  queries: number;
  budget: number;
  summarizedPercent: number;
  timeoutSeconds: number;
}

interface Scenario {
  name: string;
  what: string;
  stats: LatencyStats;
  /** Share of the CPU other processes used while it ran (0..1); above ~0.15 the numbers are noisy. */
  foreignCpu?: number;
}

interface Report {
  startedAt: string;
  machine: Record<string, string | number>;
  config: Cfg & { scopes: number; summaryCaps: Record<string, number>; candidates: number; minRelevance: number };
  seeding: { memories: number; contentTokens: number; seconds: number; perSecond: number; summarized: number; summarySeconds: number; indexBuildSeconds: number };
  scenarios: Scenario[];
  answers: { meanUsed: number; meanTokens: number; maxTokens: number; levels: Record<string, number>; cache: unknown };
  warnings: string[];
  notes: string[];
}

const say = (line: string) => process.stdout.write(`${line}\n`);

function readConfig(argv: string[]): Cfg | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      memories: { type: 'string' },
      queries: { type: 'string' },
      budget: { type: 'string' },
      summarized: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return undefined;
  const env = process.env;
  return {
    memories: intSetting('--memories', values.memories ?? env['BENCH_MEMORIES'], 10_000, 100, 1_000_000),
    queries: intSetting('--queries', values.queries ?? env['BENCH_QUERIES'], 200, 10, 100_000),
    budget: intSetting('--budget', values.budget ?? env['BENCH_BUDGET'], 4000, 100, 32_000),
    summarizedPercent: intSetting('--summarized', values.summarized ?? env['BENCH_SUMMARIZED'], 80, 0, 100),
    timeoutSeconds: intSetting('--timeout', values.timeout ?? env['BENCH_TIMEOUT'], 170, 10, 3600),
  };
}

/** Memories of 1 to ~40 sentences: short notes mostly, some long enough that every level differs. */
function memoryContent(random: () => number): string {
  const r = random();
  const sentences = r < 0.6 ? 1 + Math.floor(random() * 2) : r < 0.9 ? 3 + Math.floor(random() * 8) : 12 + Math.floor(random() * 30);
  return Array.from({ length: sentences }, () => memoryText(random)).join(' ');
}

/** The seeding described at the top: MemoryService.add's SQL in batches, then the job's summary rows. */
async function seed(config: Config, cfg: Cfg, report: Report): Promise<void> {
  // Migrations run; the HNSW index does not exist until the core opens (its prepare hook makes it).
  const db: Db = await openDb(config.database);
  const embeddings: EmbeddingService = createEmbeddingService({ embedder: config.embedder, embedCache: config.embedCache });
  try {
    await seedRows(db, embeddings, config, cfg, report);
  } finally {
    await db.close();
    await embeddings.close();
  }
}

async function seedRows(db: Db, embeddings: EmbeddingService, config: Config, cfg: Cfg, report: Report): Promise<void> {
  const vectorIndex = createVectorIndex(db.capabilities, embeddings.dims);
  const random = prng(SEED);
  const summarizer = new ExtractiveSummarizer(config.context.summaryTokens);
  const actor = JSON.stringify({ userId: 'bench', agentId: 'seed' });
  const started = Date.now();
  let summaryMs = 0;
  let contentTokens = 0;
  let summarized = 0;
  for (let done = 0; done < cfg.memories; done += BATCH) {
    const texts = Array.from({ length: Math.min(BATCH, cfg.memories - done) }, () => memoryContent(random));
    const vectors = await embeddings.embed(TENANT, texts);
    const rows = texts.map((content, i) => ({ id: newId(), content, hash: contentHash(content), scope: `p${(done + i) % SCOPES}` }));
    const t0 = Date.now();
    const summaries = rows.flatMap((r, i) => ((done + i) % 100 < cfg.summarizedPercent ? [{ id: r.id, hash: r.hash, levels: summarizer.levels(r.content) }] : []));
    summaryMs += Date.now() - t0;
    for (const t of texts) contentTokens += countTokens(t);
    await db.withTenant(TENANT, async (sql) => {
      const params: unknown[] = [];
      const values = rows.map((r) => {
        params.push(r.id, TENANT, 'project', r.scope, r.content, r.hash, actor);
        const n = params.length;
        return `($${n - 6}, $${n - 5}, $${n - 4}, $${n - 3}, $${n - 2}, '{}'::jsonb, '{}'::text[], 0.5, $${n - 1}, $${n}::jsonb)`;
      });
      await sql.query(
        `INSERT INTO memories (id, tenant_id, layer, scope_id, content, metadata, tags, importance, content_hash, created_by) VALUES ${values.join(', ')}`,
        params,
      );
      for (const [i, r] of rows.entries()) await vectorIndex.upsert(sql, r.id, vectors[i] as Float32Array, embeddings.model);
      if (summaries.length === 0) return;
      const sp: unknown[] = [];
      const sv = summaries.flatMap((s) =>
        SUMMARY_LEVELS.map((level) => {
          sp.push(TENANT, s.id, level, s.hash, s.levels[level], countTokens(s.levels[level]));
          const n = sp.length;
          return `($${n - 5}, $${n - 4}, $${n - 3}, $${n - 2}, $${n - 1}, $${n}, 'extractive')`;
        }),
      );
      await sql.query(`INSERT INTO memory_summaries (tenant_id, memory_id, level, content_hash, summary, tokens, summarizer) VALUES ${sv.join(', ')}`, sp);
    });
    summarized += summaries.length;
    if ((done / BATCH) % 4 === 3) say(`  seeded ${done + rows.length} / ${cfg.memories} (${Math.round(((done + rows.length) * 1000) / (Date.now() - started))}/s)`);
  }
  const seconds = (Date.now() - started) / 1000;
  report.seeding = {
    ...report.seeding,
    memories: cfg.memories,
    contentTokens,
    seconds: Number(seconds.toFixed(1)),
    perSecond: Math.round(cfg.memories / seconds),
    summarized,
    summarySeconds: Number((summaryMs / 1000).toFixed(1)),
  };
}

async function timed<T>(samples: number[], fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  samples.push(performance.now() - t0);
  return out;
}

function scenario(name: string, what: string, samples: number[], seconds: number, cpu: [CpuSnapshot | undefined, CpuSnapshot | undefined]): Scenario {
  const foreign = foreignShare(cpu[0], cpu[1]);
  return { name, what, stats: latencyStats(samples, seconds), ...(foreign === undefined ? {} : { foreignCpu: Number(foreign.toFixed(3)) }) };
}

async function measure(core: Core, services: ContextServices, cfg: Cfg, report: Report): Promise<void> {
  const ctx: TenantContext = { tenantId: TENANT, userId: 'bench', roles: ['viewer'] };
  const api = new ContextApi({ context: services.context, summaries: services.summaries, memory: core.memory, config: core.config.context });
  const queries = [...new Set(searchQueries(cfg.queries * 2, SEED + 1))].slice(0, cfg.queries);
  const { candidates, minRelevance } = core.config.context;
  const search = (query: string) => core.memory.search(ctx, { query, limit: candidates, threshold: minRelevance });
  const assemble = (query: string) => api.assemble(ctx, { query, tokenBudget: cfg.budget });

  // Warm the process (JIT, PGlite's buffers) on other queries, unmeasured.
  for (const q of searchQueries(20, SEED + 2)) await assemble(`${q} warmup`);

  // Baseline and cold interleaved per query, so both see the same state of caches and tables.
  const base: number[] = [];
  const cold: number[] = [];
  const answers: ContextAssembleResult[] = [];
  let cpu0 = snapshot([process.pid]);
  const t0 = performance.now();
  let baseMs = 0;
  for (const q of queries) {
    const b0 = performance.now();
    await timed(base, () => search(q));
    baseMs += performance.now() - b0;
    const answer = await timed(cold, () => assemble(q));
    if (answer.cached) report.warnings.push(`cold query "${q}" was served from the cache`);
    answers.push(answer);
    if (answers.length % 50 === 0) say(`  baseline + cold: ${answers.length} / ${queries.length}`);
  }
  const cpu1 = snapshot([process.pid]);
  const total = (performance.now() - t0) / 1000;
  report.scenarios.push(scenario('search (baseline)', `memory.search, limit ${candidates}, threshold ${minRelevance}: the candidate lookup assemble starts with`, base, baseMs / 1000, [cpu0, cpu1]));
  report.scenarios.push(scenario('assemble, cache cold', `context.assemble, budget ${cfg.budget}, every query new: search + summaries + packing + cache write`, cold, total - baseMs / 1000, [cpu0, cpu1]));

  const warm: number[] = [];
  cpu0 = snapshot([process.pid]);
  const w0 = performance.now();
  for (const q of queries) {
    const again = await timed(warm, () => assemble(q));
    if (!again.cached) report.warnings.push(`warm query "${q}" missed the cache`);
  }
  report.scenarios.push(scenario('assemble, cache warm', 'the same queries again: query embedding + cache lookup + one SQL check of the sources', warm, (performance.now() - w0) / 1000, [cpu0, snapshot([process.pid])]));

  const levels: Record<string, number> = { sentence: 0, paragraph: 0, detailed: 0 };
  for (const a of answers) for (const u of a.used) levels[u.level] = (levels[u.level] ?? 0) + 1;
  report.answers = {
    meanUsed: Number((answers.reduce((s, a) => s + a.used.length, 0) / Math.max(1, answers.length)).toFixed(1)),
    meanTokens: Math.round(answers.reduce((s, a) => s + a.tokens, 0) / Math.max(1, answers.length)),
    maxTokens: Math.max(0, ...answers.map((a) => a.tokens)),
    levels,
    cache: services.context.stats().cache,
  };
  if (report.answers.maxTokens > cfg.budget) report.warnings.push(`an answer used ${report.answers.maxTokens} tokens, over the budget of ${cfg.budget}`);
  if (answers.every((a) => a.used.length === 0)) report.warnings.push('every answer was empty: the numbers measure nothing');
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : '—');

function markdown(r: Report): string {
  const lines = [
    `# context.assemble at ${r.config.memories.toLocaleString('en-US')} memories (embedded)`,
    '',
    `${r.startedAt} · ${r.machine['cpuModel']} × ${r.machine['cpuCount']} · load average at start ${r.machine['loadAverageAtStart']} · Node ${r.machine['node']}`,
    '',
    `Seeded ${r.seeding.memories} memories (${r.seeding.contentTokens.toLocaleString('en-US')} tokens of content, ${r.config.scopes} project scopes) in ${r.seeding.seconds} s (${r.seeding.perSecond}/s); ` +
      `${r.seeding.summarized} of them with stored summaries (the others are summarised on the fly); opening the core then built the HNSW index in ${r.seeding.indexBuildSeconds} s. Budget ${r.config.budget}, ${r.config.queries} distinct queries, ` +
      `${r.config.candidates} candidates per query, relevance floor ${r.config.minRelevance}. One query at a time.`,
    '',
    '| scenario | p50 ms | p95 ms | p99 ms | mean ms | queries/s | other CPU |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...r.scenarios.map(
      (s) =>
        `| ${s.name} | ${fmt(s.stats.p50)} | ${fmt(s.stats.p95)} | ${fmt(s.stats.p99)} | ${fmt(s.stats.mean)} | ${fmt(s.stats.opsPerSec)} | ${s.foreignCpu === undefined ? '?' : `${Math.round(s.foreignCpu * 100)}%`} |`,
    ),
    '',
    ...r.scenarios.map((s) => `- **${s.name}**: ${s.what}.`),
    '',
    `Answers: ${r.answers.meanUsed} memories and ${r.answers.meanTokens} tokens on average (max ${r.answers.maxTokens}); levels packed: ` +
      `${Object.entries(r.answers.levels)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}. Cache: ${JSON.stringify(r.answers.cache)}.`,
    ...(r.warnings.length > 0 ? ['', '**Warnings**', ...r.warnings.map((w) => `- ${w}`)] : []),
    ...(r.notes.length > 0 ? ['', ...r.notes.map((n) => `- ${n}`)] : []),
    '',
  ];
  return lines.join('\n');
}

function finish(report: Report): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS_DIR, `context-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`);
  const md = markdown(report);
  writeFileSync(path.join(RESULTS_DIR, 'context-latest.md'), md);
  say(`\n${md}`);
}

async function main(): Promise<number> {
  const cfg = readConfig(process.argv.slice(2));
  if (!cfg) {
    say(HELP);
    return 0;
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aeterna-bench-context-'));
  const config = loadConfig({ AETERNA_DATA_DIR: dataDir, AETERNA_LOG_LEVEL: 'silent', AETERNA_JWT_SECRET: 'bench-secret-0123456789abcdef0123456789abcdef' });
  const report: Report = {
    startedAt: new Date().toISOString(),
    machine: machineInfo(['pg', 'gpt-tokenizer']),
    config: {
      ...cfg,
      scopes: SCOPES,
      summaryCaps: config.context.summaryTokens,
      candidates: config.context.candidates,
      minRelevance: config.context.minRelevance,
    },
    seeding: { memories: 0, contentTokens: 0, seconds: 0, perSecond: 0, summarized: 0, summarySeconds: 0, indexBuildSeconds: 0 },
    scenarios: [],
    answers: { meanUsed: 0, meanTokens: 0, maxTokens: 0, levels: {}, cache: null },
    warnings: [],
    notes: [],
  };
  if (cfg.memories !== 10_000) report.notes.push(`Run at ${cfg.memories} memories, not the 10,000 the issue names.`);
  armHardTimeout(cfg.timeoutSeconds, (warning) => {
    report.warnings.push(warning);
    finish(report);
    rmSync(dataDir, { recursive: true, force: true });
  });
  say(`context benchmark: ${cfg.memories} memories, ${cfg.queries} queries, budget ${cfg.budget} (load average ${report.machine['loadAverageAtStart']})`);
  let core: Core | undefined;
  let services: ContextServices | undefined;
  try {
    say('seeding…');
    await seed(config, cfg, report);
    say(`seeded in ${report.seeding.seconds} s; opening the core (builds the HNSW index)…`);
    const opened = Date.now();
    core = await openCore(config, createLogger('silent'));
    report.seeding.indexBuildSeconds = Number(((Date.now() - opened) / 1000).toFixed(1));
    await core.db.withTenant(TENANT, (sql) => sql.query('ANALYZE memories'));
    services = createContextServices({ config, db: core.db, memory: core.memory, embeddings: core.embeddings, llm: undefined });
    say(`core open in ${report.seeding.indexBuildSeconds} s; measuring…`);
    await measure(core, services, cfg, report);
  } catch (err) {
    report.warnings.push(`the run failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await services?.close().catch(() => undefined);
    await core?.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }
  finish(report);
  return report.warnings.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`context: ${err instanceof Error ? err.message : String(err)}\n\n${HELP}`);
    process.exit(2);
  },
);
