/**
 * Tiering benchmark: N memories aged artificially (their timestamps moved back 91–450 days), one
 * tiering run that moves them all to cold Parquet, then restores (a sample one get at a time,
 * the rest in bulk), every row checksummed before and after. The baseline in the same run is a
 * get of a hot memory, against which a get that restores from cold is compared. Under 2 minutes
 * with the defaults. `npx tsx loadtest/tiering.ts --help`. Never part of `npm test`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { openCore, type Core } from '../src/core.js';
import { toPgVector } from '../src/embed/index.js';
import { createSnapshotStore } from '../src/graph/index.js';
import { ColdStore, MemoryService, TieringService, type ColdBatch, type ColdRow } from '../src/memory/index.js';
import { createLogger } from '../src/obs/index.js';
import { newId } from '../src/store/index.js';
import { actorOf } from '../src/tenancy/index.js';
import { TEST_JWT_SECRET, tenantCtx } from '../test/support/backends.js';
import { createTestDatabase, type TestDatabase } from '../test/support/index.js';
import { memoryText, prng } from './corpus.js';
import { armHardTimeout, intSetting, machineInfo, RESULTS_DIR } from './settings.js';

const TENANT = 'bench-tier';
const SEED_CHUNK = 500;

const HELP = `usage: npx tsx loadtest/tiering.ts [options]   (each option also reads the AETERNA_BENCH_* variable named)
  --memories N   AETERNA_BENCH_TIER_MEMORIES   memories aged to cold and moved (2000)
  --batch B      AETERNA_BENCH_TIER_BATCH      memories per transaction and Parquet file (AETERNA_TIER_BATCH, 500)
  --gets G       AETERNA_BENCH_TIER_GETS       gets timed on hot memories and on cold ones (100)
  --seed K       AETERNA_BENCH_TIER_SEED       PRNG seed of the texts (1)
  --timeout S    AETERNA_BENCH_TIER_TIMEOUT    hard limit for the whole run (115)
  --database URL AETERNA_BENCH_DATABASE_URL    a PostgreSQL superuser URL to create a fresh database on
                                               (default: embedded PGlite)`;

interface Latency {
  count: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  meanMs: number;
}

interface TieringBenchReport {
  kind: 'tiering';
  startedAt: string;
  database: 'pglite' | 'postgres';
  settings: { memories: number; batch: number; gets: number; seed: number };
  machine: Record<string, string | number>;
  seedMs: number;
  move: { memories: number; ms: number; perSec: number; archiveWriteMs: number; files: number; archiveBytes: number };
  liveContentBytes: { before: number; after: number };
  restoreBulk: { memories: number; ms: number; perSec: number; archiveReadMs: number };
  gets: { hot: Latency; cold: Latency; coldOverHotP50: number };
  roundTrip: { checked: number; identical: number; mismatches: string[] };
  warnings: string[];
}

function latency(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => Number((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(2));
  const mean = sorted.reduce((s, v) => s + v, 0) / Math.max(1, sorted.length);
  return { count: sorted.length, p50Ms: at(0.5), p95Ms: at(0.95), p99Ms: at(0.99), meanMs: Number(mean.toFixed(2)) };
}

const perSec = (n: number, ms: number): number => Math.round((n / Math.max(ms, 1)) * 1000);

/** Times the archive's own share of a run: Parquet through DuckDB, the store, the read-back checks. */
class TimedColdStore extends ColdStore {
  writeMs = 0;
  readMs = 0;
  bytes = 0;
  files = 0;

  override async write(tenantId: string, month: string, rows: readonly ColdRow[]): Promise<ColdBatch> {
    const started = performance.now();
    const batch = await super.write(tenantId, month, rows);
    this.writeMs += performance.now() - started;
    this.bytes += batch.bytes;
    this.files += 1;
    return batch;
  }

  override async read(tenantId: string, key: string, ids: readonly string[]): Promise<Map<string, ColdRow>> {
    const started = performance.now();
    try {
      return await super.read(tenantId, key, ids);
    } finally {
      this.readMs += performance.now() - started;
    }
  }
}

/** Every stored column of each memory, hashed: timestamps to the microsecond, the embedding exactly. */
async function rowChecksums(core: Core, ids: readonly string[], omit: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < ids.length; i += SEED_CHUNK) {
    const chunk = ids.slice(i, i + SEED_CHUNK);
    await core.db.withTenant(TENANT, async (sql) => {
      const res = await sql.query<Record<string, unknown> & { id: string }>(
        `SELECT id, layer, scope_id, content, metadata::text AS metadata, tags, importance::text AS importance, embedding_model,
                content_hash, version, access_count, created_by::text AS created_by,
                to_char(last_accessed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS last_accessed_at,
                to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS created_at,
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS updated_at
           FROM memories WHERE id = ANY($1::uuid[])`,
        [chunk],
      );
      const vectors = await core.vectors.vectorsOf(sql, chunk);
      for (const row of res.rows) {
        const kept = Object.fromEntries(Object.entries(row).filter(([k]) => !omit.includes(k)));
        const text = JSON.stringify({ ...kept, embedding: Array.from(vectors.get(row.id) ?? []) });
        out.set(row.id, createHash('sha256').update(text).digest('hex'));
      }
    });
  }
  return out;
}

/** Inserts memories straight into the table (the benchmark is about tiering, not the add path). */
async function seed(core: Core, texts: readonly string[], layerScope: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < texts.length; i += SEED_CHUNK) {
    const chunk = texts.slice(i, i + SEED_CHUNK);
    const vectors = await core.embeddings.embed(TENANT, chunk);
    const chunkIds = chunk.map(() => newId());
    // With pgvector the vectors go in with the rows (one statement, not one per row: the HNSW
    // insert is the same, the per-statement cost is not); otherwise through the index's upsert.
    const inline = core.vectors.name === 'pgvector-hnsw';
    await core.db.withTenant(TENANT, async (sql) => {
      await sql.query(
        `INSERT INTO memories (id, tenant_id, layer, scope_id, content, metadata, tags, importance, content_hash, created_by, embedding, embedding_model)
         SELECT s.id, $1, 'project', $2, s.content, jsonb_build_object('n', s.n, 'source', 'bench'), ARRAY['bench', 'tier'], 0.5, s.hash,
                '{"userId":"bench"}'::jsonb, ${inline ? 's.embedding::vector' : 'NULL'}, ${inline ? '$8' : 'NULL'}
           FROM unnest($3::uuid[], $4::text[], $5::text[], $6::int[], $7::text[]) AS s(id, content, hash, n, embedding)`,
        [
          TENANT,
          layerScope,
          chunkIds,
          chunk,
          chunk.map((c) => createHash('sha256').update(c).digest('hex')),
          chunk.map((_, j) => i + j),
          vectors.map((v) => toPgVector(v)),
          ...(inline ? [core.embeddings.model] : []),
        ],
      );
      if (!inline) for (const [j, id] of chunkIds.entries()) await core.vectors.upsert(sql, id, vectors[j] as Float32Array, core.embeddings.model);
    });
    ids.push(...chunkIds);
  }
  return ids;
}

function renderMarkdown(r: TieringBenchReport): string {
  const lines = [
    `# Tiering benchmark (${r.startedAt})`,
    '',
    `${r.settings.memories} memories on ${r.database}, ${r.settings.batch} per batch; machine: ${r.machine['cpuCount']} × ${r.machine['cpuModel']}, load ${r.machine['loadAverageAtStart']} at start.`,
    '',
    '| step | memories | time | memories/s | archive share |',
    '|---|---:|---:|---:|---:|',
    `| move to cold (classify, Parquet + verify, stub transaction, events) | ${r.move.memories} | ${(r.move.ms / 1000).toFixed(2)} s | ${r.move.perSec} | ${Math.round((r.move.archiveWriteMs / Math.max(r.move.ms, 1)) * 100)} % |`,
    `| restore in bulk (read + verify, one transaction per file) | ${r.restoreBulk.memories} | ${(r.restoreBulk.ms / 1000).toFixed(2)} s | ${r.restoreBulk.perSec} | ${Math.round((r.restoreBulk.archiveReadMs / Math.max(r.restoreBulk.ms, 1)) * 100)} % |`,
    '',
    `Archive: ${r.move.files} Parquet files, ${(r.move.archiveBytes / 1024).toFixed(0)} KiB. Live table content: ${(r.liveContentBytes.before / 1024).toFixed(0)} KiB before, ${(r.liveContentBytes.after / 1024).toFixed(0)} KiB after the move.`,
    '',
    '| get | n | p50 | p95 | p99 |',
    '|---|---:|---:|---:|---:|',
    `| hot memory (baseline) | ${r.gets.hot.count} | ${r.gets.hot.p50Ms} ms | ${r.gets.hot.p95Ms} ms | ${r.gets.hot.p99Ms} ms |`,
    `| cold memory (restores it) | ${r.gets.cold.count} | ${r.gets.cold.p50Ms} ms | ${r.gets.cold.p95Ms} ms | ${r.gets.cold.p99Ms} ms |`,
    '',
    `A cold get costs ${r.gets.coldOverHotP50}× a hot one at p50.`,
    '',
    `Round trip: ${r.roundTrip.identical} of ${r.roundTrip.checked} rows identical after cold and back (every column; for the gets, all but the access they record).`,
  ];
  if (r.warnings.length > 0) lines.push('', '**Warnings**', '', ...r.warnings.map((w) => `- ${w}`));
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      memories: { type: 'string' },
      batch: { type: 'string' },
      gets: { type: 'string' },
      seed: { type: 'string' },
      timeout: { type: 'string' },
      database: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const env = process.env;
  const settings = {
    memories: intSetting('--memories', values.memories ?? env['AETERNA_BENCH_TIER_MEMORIES'], 2000, 1, 1_000_000),
    batch: intSetting('--batch', values.batch ?? env['AETERNA_BENCH_TIER_BATCH'], 500, 1, 100_000),
    gets: intSetting('--gets', values.gets ?? env['AETERNA_BENCH_TIER_GETS'], 100, 1, 100_000),
    seed: intSetting('--seed', values.seed ?? env['AETERNA_BENCH_TIER_SEED'], 1, 0),
  };
  const timeoutSec = intSetting('--timeout', values.timeout ?? env['AETERNA_BENCH_TIER_TIMEOUT'], 115, 10, 86_400);
  const databaseUrl = values.database ?? env['AETERNA_BENCH_DATABASE_URL'];
  const startedAt = new Date().toISOString();
  const stamp = startedAt.replace(/[:.]/g, '-');
  const warnings: string[] = [];
  const write = (report: Partial<TieringBenchReport>) => {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(path.join(RESULTS_DIR, `tiering-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`);
  };
  armHardTimeout(timeoutSec, (warning) => write({ kind: 'tiering', startedAt, settings, warnings: [...warnings, warning] }));

  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aeterna-bench-tier-'));
  let database: TestDatabase | undefined;
  let core: Core | undefined;
  let tiering: TieringService | undefined;
  try {
    if (databaseUrl) database = await createTestDatabase(databaseUrl);
    const config = loadConfig({
      AETERNA_DATA_DIR: dataDir,
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_LOG_LEVEL: 'silent',
      AETERNA_TIER_BATCH: String(settings.batch),
      AETERNA_TIER_MAX_PER_RUN: String(settings.memories),
      ...(database ? { AETERNA_DATABASE_URL: database.url } : {}),
    });
    const log = createLogger('silent');
    core = await openCore(config, log);
    const timed = new TimedColdStore({ store: createSnapshotStore(config.tiering.store), tmpDir: path.join(dataDir, 'tmp'), log });
    tiering = new TieringService({ db: core.db, vectors: core.vectors, cold: timed, config: config.tiering, log, commits: core.commits });
    const memory = new MemoryService({
      db: core.db,
      embeddings: core.embeddings,
      vectors: core.vectors,
      maxContentBytes: config.limits.maxContentBytes,
      dedupThreshold: config.memory.dedupThreshold,
      recencyHalfLifeDays: config.memory.recencyHalfLifeDays,
      commits: core.commits,
      cold: tiering,
    });
    const ctx = tenantCtx(TENANT, 'bench');
    process.stdout.write(`tiering bench: ${settings.memories} memories on ${core.db.kind}, batch ${settings.batch} (${actorOf(ctx).userId})\n`);

    const random = prng(settings.seed);
    const seedStarted = performance.now();
    const coldIds = await seed(core, Array.from({ length: settings.memories }, (_, i) => `${memoryText(random)} [#${i}]`), 'archive');
    const hotIds = await seed(core, Array.from({ length: settings.gets }, (_, i) => `${memoryText(random)} [hot #${i}]`), 'live');
    // Idle 91–450 days, spread over a year of months, alive 30 days longer, never read.
    await core.db.withTenant(TENANT, (sql) =>
      sql.query(
        `UPDATE memories SET last_accessed_at = NULL, access_count = 0,
           updated_at = now() - make_interval(days => 91 + (abs(hashtext(id::text)) % 360)),
           created_at = now() - make_interval(days => 121 + (abs(hashtext(id::text)) % 360))
         WHERE id = ANY($1::uuid[])`,
        [coldIds],
      ),
    );
    const seedMs = Math.round(performance.now() - seedStarted);
    process.stdout.write(`  seeded and aged ${coldIds.length + hotIds.length} memories in ${seedMs} ms\n`);
    // Gets record an access: their rows are compared without the two access columns.
    const sample = coldIds.filter((_, i) => i % Math.max(1, Math.floor(coldIds.length / settings.gets)) === 0).slice(0, settings.gets);
    const sampled = new Set(sample);
    const rest = coldIds.filter((id) => !sampled.has(id));
    const ACCESS = ['tier', 'cold_key', 'access_count', 'last_accessed_at'];
    const before = new Map([...(await rowChecksums(core, rest, ['tier', 'cold_key'])), ...(await rowChecksums(core, sample, ACCESS))]);
    const statsBefore = await tiering.stats(TENANT);

    const moveStarted = performance.now();
    const run = await tiering.run(TENANT);
    const moveMs = Math.round(performance.now() - moveStarted);
    if (run.moved.cold !== settings.memories) warnings.push(`moved ${run.moved.cold} of ${settings.memories} memories to cold`);
    const statsAfter = await tiering.stats(TENANT);
    process.stdout.write(`  moved ${run.moved.cold} to cold in ${moveMs} ms (${perSec(run.moved.cold, moveMs)}/s)\n`);

    const hotSamples: number[] = [];
    for (const id of hotIds) {
      const started = performance.now();
      await memory.get(ctx, id);
      hotSamples.push(performance.now() - started);
    }
    const coldSamples: number[] = [];
    for (const id of sample) {
      const started = performance.now();
      const got = await memory.get(ctx, id);
      coldSamples.push(performance.now() - started);
      if (got.tier !== 'cold') warnings.push(`get of ${id} was not served from cold`);
    }
    process.stdout.write(`  ${sample.length} cold gets, p50 ${latency(coldSamples).p50Ms} ms (hot ${latency(hotSamples).p50Ms} ms)\n`);

    const readBefore = timed.readMs;
    const restoreStarted = performance.now();
    const restored = await tiering.restore(TENANT, rest);
    const restoreMs = Math.round(performance.now() - restoreStarted);
    process.stdout.write(`  restored ${restored} in bulk in ${restoreMs} ms (${perSec(restored, restoreMs)}/s)\n`);

    const after = new Map([...(await rowChecksums(core, rest, ['tier', 'cold_key'])), ...(await rowChecksums(core, sample, ACCESS))]);
    const mismatches = coldIds.filter((id) => after.get(id) === undefined || after.get(id) !== before.get(id));
    if (mismatches.length > 0) warnings.push(`${mismatches.length} rows differ after the round trip`);

    const hot = latency(hotSamples);
    const cold = latency(coldSamples);
    const report: TieringBenchReport = {
      kind: 'tiering',
      startedAt,
      database: core.db.kind,
      settings,
      machine: machineInfo(['@duckdb/node-api', 'pg']),
      seedMs,
      move: { memories: run.moved.cold, ms: moveMs, perSec: perSec(run.moved.cold, moveMs), archiveWriteMs: Math.round(timed.writeMs), files: timed.files, archiveBytes: timed.bytes },
      liveContentBytes: { before: statsBefore.tiers.hot.contentBytes + statsBefore.tiers.warm.contentBytes, after: statsAfter.tiers.hot.contentBytes + statsAfter.tiers.warm.contentBytes + statsAfter.tiers.cold.contentBytes },
      restoreBulk: { memories: restored, ms: restoreMs, perSec: perSec(restored, restoreMs), archiveReadMs: Math.round(timed.readMs - readBefore) },
      gets: { hot, cold, coldOverHotP50: Number((cold.p50Ms / Math.max(hot.p50Ms, 0.01)).toFixed(1)) },
      roundTrip: { checked: rest.length + sample.length, identical: rest.length + sample.length - mismatches.length, mismatches: mismatches.slice(0, 20) },
      warnings,
    };
    write(report);
    writeFileSync(path.join(RESULTS_DIR, `tiering-${report.database}-latest.md`), renderMarkdown(report));
    process.stdout.write(renderMarkdown(report));
    return warnings.length > 0 ? 1 : 0;
  } finally {
    await tiering?.close();
    await core?.close();
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`tiering bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(2);
  },
);
