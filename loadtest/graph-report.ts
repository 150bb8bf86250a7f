/** What graph.ts records, the latency summary it condenses samples into, and the markdown it writes. */
import type { GraphStore } from '../src/graph/index.js';
import { CONTENDED_ROUND } from './report.js';

export interface LatencyStats {
  samples: number;
  /** Wall time of the measured samples; queries run one at a time, so opsPerSec = samples / seconds. */
  seconds: number;
  opsPerSec: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles over the samples (ms). */
export function latencyStats(ms: readonly number[], seconds: number): LatencyStats {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length === 0 ? Number.NaN : (sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] as number));
  return {
    samples: sorted.length,
    seconds,
    opsPerSec: seconds > 0 ? sorted.length / seconds : Number.NaN,
    mean: sorted.length === 0 ? Number.NaN : sorted.reduce((a, b) => a + b, 0) / sorted.length,
    p50: at(0.5),
    p95: at(0.95),
    p99: at(0.99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

export interface MemorySample {
  label: string;
  rssMiB: number;
  heapUsedMiB: number;
  /** What DuckDB says it holds (duckdb_memory()), when a projection was open to ask. */
  duckdbMiB?: number;
}

export interface LoadPhase {
  tenant: string;
  what: string;
  ops: number;
  batches: number;
  seconds: number;
  opsPerSec: number;
  /** One GraphStore.write of a whole batch, ms. */
  batchMs: { p50: number; p95: number; max: number };
  /** Median batch time over the first and the last tenth of the batches: does writing slow as the graph grows? */
  firstTenthP50?: number;
  lastTenthP50?: number;
  foreignCpu?: number;
}

export interface QueryResult {
  name: string;
  description: string;
  stats: LatencyStats;
  /** The per-scenario time budget ran out before every sample was taken. */
  budgetHit: boolean;
  /** Answers that disagreed with the in-memory ground truth. */
  mismatches: number;
  /** Median and largest number of nodes (or results) returned. */
  resultSize?: { p50: number; max: number };
  /** The same walk over an in-memory adjacency (the checker's BFS, done before timing): the cost with no database. */
  reference?: LatencyStats;
  foreignCpu?: number;
}

export interface BaselineResult {
  name: string;
  graphStore: LatencyStats;
  postgres: LatencyStats;
  /** PostgreSQL p50 over GraphStore p50: above 1, GraphStore answers faster. */
  ratioP50: number;
  ratioP95: number;
  mismatches: number;
}

export interface IsolationResult {
  tenant: string;
  /** 'shared': the tenant's entities have the big tenant's hub ids (same kind and label). */
  entities: 'own' | 'shared';
  alone: LatencyStats;
  withBig: LatencyStats;
  /** p50 with the big tenant over p50 without it. */
  ratioP50: number;
  /** Other processes' share of the CPU while the tenants were measured alone and with the big tenant. */
  foreignCpu: [number | undefined, number | undefined];
}

export interface SnapshotResult {
  ms: number;
  seq: number;
  rows: number;
  bytes: number;
  files: Record<string, { rows: number; bytes: number }>;
  tail: { batches: number; ops: number; ms: number; headSeq: number };
}

/** How graph.ts tells a graph-cold.ts child what to load (environment variables). */
export const COLD_ENV = {
  mode: 'BENCH_GRAPH_COLD_MODE',
  dataDir: 'BENCH_GRAPH_COLD_DATA_DIR',
  databaseUrl: 'BENCH_GRAPH_COLD_DATABASE_URL',
  databaseName: 'BENCH_GRAPH_COLD_DATABASE_NAME',
  snapshotDir: 'BENCH_GRAPH_COLD_SNAPSHOT_DIR',
  tenant: 'BENCH_GRAPH_COLD_TENANT',
  nodeId: 'BENCH_GRAPH_COLD_NODE',
  expectedSeq: 'BENCH_GRAPH_COLD_EXPECTED_SEQ',
} as const;

export interface ColdResult {
  mode: 'snapshot' | 'replay';
  ok: boolean;
  error?: string;
  /** Opening the database (migrations already applied) and DuckDB, before any tenant is touched. */
  openMs: number;
  /** Loading the big tenant on its first use: snapshot + log tail, or the whole log. */
  loadMs: number;
  /** Inside loadMs: the snapshot restore alone (download, checksum, Parquet into DuckDB). */
  restoreMs?: number;
  /** The first query once the tenant is loaded (cold caches); a user's first answer waits loadMs + this. */
  firstQueryMs: number;
  secondQueryMs: number;
  seq: number;
  expectedSeq: number;
  before: MemorySample;
  after: MemorySample;
  maxRssMiB: number;
  cpuSeconds: number;
  foreignCpu?: number;
}

export interface GraphReport {
  startedAt: string;
  finishedAt?: string;
  machine: Record<string, string | number>;
  config: Record<string, string | number | boolean>;
  backend: { db: string; detail: string };
  data: Record<string, unknown>;
  phases: { name: string; seconds: number }[];
  load: LoadPhase[];
  logBytes?: number;
  baselineTable?: { seconds: number; bytes: number };
  queries: QueryResult[];
  baseline: BaselineResult[];
  isolation: IsolationResult[];
  snapshot?: SnapshotResult;
  cold: ColdResult[];
  memory: MemorySample[];
  warnings: string[];
  notes: string[];
}

const MIB = 2 ** 20;
export const toMiB = (bytes: number): number => Math.round((bytes / MIB) * 10) / 10;

/** The process's memory now; DuckDB's own count when the caller asked it. */
export function memorySample(label: string, duckdbBytes?: number): MemorySample {
  const m = process.memoryUsage();
  return { label, rssMiB: toMiB(m.rss), heapUsedMiB: toMiB(m.heapUsed), ...(duckdbBytes === undefined ? {} : { duckdbMiB: toMiB(duckdbBytes) }) };
}

/** What DuckDB says it holds in memory, all tenants (asked through a tenant's projection lock). */
export function duckdbBytes(store: GraphStore, tenantId: string): Promise<number> {
  return store.withProjection(tenantId, async (conn) => {
    const rows = (await conn.runAndReadAll('SELECT sum(memory_usage_bytes)::DOUBLE AS bytes FROM duckdb_memory()')).getRowObjectsJS();
    return Number(rows[0]?.['bytes'] ?? 0);
  });
}

const num = (n: number | undefined, digits = 0): string =>
  n === undefined || !Number.isFinite(n) ? 'n/a' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
/** Milliseconds with the precision that matters at their size. */
const ms = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n) ? 'n/a' : n < 0.1 ? n.toFixed(3) : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : num(n);
const pct = (share: number | undefined): string => (share === undefined ? '?' : `${Math.round(share * 100)}%`);
const ratio = (n: number): string => (Number.isFinite(n) ? `**${n.toFixed(n < 10 ? 2 : 1)}×**` : 'n/a');
const lat = (s: LatencyStats): string => `${ms(s.p50)} / ${ms(s.p95)} / ${ms(s.p99)}`;
const memCell = (m: MemorySample | undefined): string =>
  m ? `${num(m.rssMiB)} / ${num(m.heapUsedMiB)}${m.duckdbMiB === undefined ? '' : ` / ${num(m.duckdbMiB)}`}` : 'n/a';

export function renderMarkdown(r: GraphReport): string {
  const m = r.machine;
  const c = r.config;
  const lines: string[] = [
    `### Knowledge graph on DuckDB (${r.startedAt.slice(0, 10)})`,
    '',
    `${m['cpuCount']}× ${m['cpuModel']}, ${m['totalMemGiB']} GiB, Node ${m['node']}, @duckdb/node-api ${m['@duckdb/node-api']}. ` +
      `Load average ${m['loadAverageAtStart']} at the start, ${m['loadAverageAtEnd'] ?? '?'} at the end; ` +
      `other processes used ${pct(m['foreignCpuAtStart'] as number | undefined)} of the CPU just before the run. ` +
      `Log: ${r.backend.db} (${r.backend.detail}); projection: DuckDB in memory, as in cluster mode. ` +
      `Code: commit ${m['gitCommit'] ?? '?'}${m['srcGraphUncommittedFiles'] ? ` with ${m['srcGraphUncommittedFiles']} uncommitted file(s) in src/graph` : ''}, src/graph content ${m['srcGraphSha256'] ?? '?'}.`,
    '',
    `Big tenant: ${num(c['nodes'] as number)} nodes / ${num(c['edges'] as number)} edges, power-law-ish degrees (${String(r.data['bigDegrees'] ?? '')}), ` +
      `${RELATION_NOTE}, ${pct(c['islandShare'] as number)} of it in a separate component; ${c['smallTenants']} small tenants × ` +
      `${num(c['smallNodes'] as number)} / ${num(c['smallEdges'] as number)}. Seed ${c['seed']}. Every answer is checked against an in-memory BFS.`,
    '',
    '**Load** through `GraphStore.write` (PostgreSQL `graph_events` + DuckDB projection), batches of ' + `${num(c['batch'] as number)} ops:`,
    '',
    '| Tenant | Ops | Batches | Seconds | Ops/s | Batch p50 / p95 / max ms | First → last tenth p50 ms | Other CPU |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...r.load.map(
      (p) =>
        `| ${p.tenant} ${p.what} | ${num(p.ops)} | ${p.batches} | ${num(p.seconds, 1)} | ${num(p.opsPerSec)} | ` +
        `${ms(p.batchMs.p50)} / ${ms(p.batchMs.p95)} / ${ms(p.batchMs.max)} | ` +
        `${p.firstTenthP50 === undefined ? '' : `${ms(p.firstTenthP50)} → ${ms(p.lastTenthP50)}`} | ${pct(p.foreignCpu)} |`,
    ),
  ];
  if (r.logBytes !== undefined) lines.push('', `graph_events in PostgreSQL after the load: ${num(toMiB(r.logBytes))} MiB.`);

  lines.push(
    '',
    `**Queries** on the big tenant, one at a time, ${c['warmup']} warm-up samples then up to ${c['samples']} (at most ${c['scenarioSeconds']} s per scenario):`,
    '',
    '| Query | Samples | p50 / p95 / p99 ms | max ms | Ops/s | Result size p50 / max | In-memory BFS p50 / p95 ms | Wrong answers | Other CPU |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.queries.map(
      (q) =>
        `| ${q.name}: ${q.description} | ${q.stats.samples}${q.budgetHit ? ' (time-bound)' : ''} | ${lat(q.stats)} | ${ms(q.stats.max)} | ` +
        `${num(q.stats.opsPerSec, 1)} | ${q.resultSize ? `${num(q.resultSize.p50)} / ${num(q.resultSize.max)}` : ''} | ` +
        `${q.reference ? `${ms(q.reference.p50)} / ${ms(q.reference.p95)}` : ''} | ${q.mismatches} | ${pct(q.foreignCpu)} |`,
    ),
    '',
    'In-memory BFS: the benchmark\'s own checker walking the same start nodes over a CSR adjacency in JS (no database, no rows loaded): a floor for what a traversal costs.',
  );

  if (r.baseline.length > 0) {
    lines.push(
      '',
      `**Baseline**: the same queries on the same start nodes and pairs, answered by PostgreSQL over \`bench_edges(tenant_id, source, target)\` ` +
        `with btree indexes on (tenant_id, source) and (tenant_id, target)${r.baselineTable ? ` (${num(toMiB(r.baselineTable.bytes))} MiB with indexes, built in ${num(r.baselineTable.seconds, 1)} s)` : ''}. ` +
        'Neighbours: one SQL statement (two levels, ids only, nearest first, LIMIT 1001); path: the same bidirectional level-by-level search as GraphStore, one `= ANY($frontier)` query per level. ' +
        'Samples alternate between the two engines. The baseline loads ids only and skips validity filters, RLS and the tenant transaction, which favours it.',
      '',
      '| Query | GraphStore p50 / p95 / p99 ms | PostgreSQL p50 / p95 / p99 ms | PostgreSQL / GraphStore p50 | p95 | PostgreSQL wrong answers |',
      '|---|---:|---:|---:|---:|---:|',
      ...r.baseline.map((b) => `| ${b.name} | ${lat(b.graphStore)} | ${lat(b.postgres)} | ${ratio(b.ratioP50)} | ${ratio(b.ratioP95)} | ${b.mismatches} |`),
    );
  } else if (r.notes.some((n) => n.startsWith('baseline'))) {
    lines.push('', '**Baseline**: not run (see notes).');
  }

  if (r.isolation.length > 0) {
    lines.push(
      '',
      "**Tenant isolation**: small tenants' neighbours (depth 2, both directions) before the big tenant was loaded and beside it, the same start nodes; " +
        'the two tenants are sampled alternately, so contention from outside hits both alike.',
      '',
      '| Small tenant | Entities | Alone p50 / p95 / p99 ms | With the big tenant p50 / p95 / p99 ms | With / alone p50 | Other CPU alone / with |',
      '|---|---|---:|---:|---:|---:|',
      ...r.isolation.map(
        (i) =>
          `| ${i.tenant} | ${i.entities === 'shared' ? "shared with the big tenant's hubs (same ids)" : 'its own'} | ${lat(i.alone)} | ${lat(i.withBig)} | ` +
          `${ratio(i.ratioP50)} | ${pct(i.foreignCpu[0])} / ${pct(i.foreignCpu[1])} |`,
      ),
    );
    const own = r.isolation.find((i) => i.entities === 'own');
    const shared = r.isolation.find((i) => i.entities === 'shared');
    if (own && shared) {
      lines.push('', `Slowdown of the shared-entities tenant over the own-entities one's: ${ratio(shared.ratioP50 / own.ratioP50)}.`);
    }
  }

  const s = r.snapshot;
  if (s) {
    const files = Object.entries(s.files)
      .map(([table, f]) => `${table} ${num(f.rows)} rows ${num(toMiB(f.bytes), 1)} MiB`)
      .join('; ');
    lines.push(
      '',
      `**Snapshot** (\`snapshotGraph\`, full, Parquet zstd, to a directory, checksummed and fsynced): ${num(s.ms)} ms for seq ${s.seq}, ` +
        `${num(s.rows)} rows, ${num(toMiB(s.bytes), 1)} MiB (${files}). Then a log tail of ${s.tail.batches} batches / ${num(s.tail.ops)} ops was written (head seq ${s.tail.headSeq}).`,
    );
  }
  if (r.cold.length > 0) {
    const snap = r.cold.find((x) => x.mode === 'snapshot');
    const replay = r.cold.find((x) => x.mode === 'replay');
    lines.push(
      '',
      '**Cold start**: a fresh process with a fresh in-memory DuckDB over the same database loads the big tenant on first use, then answers a neighbours query (depth 1).',
      '',
      '| Cold start | Tenant load ms | of which snapshot restore ms | First query ms | Second query ms | Reached seq | RSS before → after MiB | Peak RSS MiB | DuckDB MiB | CPU s | Other CPU |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...r.cold.map(
        (x) =>
          `| ${x.mode === 'snapshot' ? 'snapshot + log tail' : 'whole log replay (no snapshotter)'}${x.ok ? '' : ` FAILED: ${x.error ?? ''}`} | ${num(x.loadMs)} | ` +
          `${x.restoreMs === undefined ? '' : num(x.restoreMs)} | ${ms(x.firstQueryMs)} | ${ms(x.secondQueryMs)} | ${x.seq} / ${x.expectedSeq} | ` +
          `${num(x.before.rssMiB)} → ${num(x.after.rssMiB)} | ${num(x.maxRssMiB)} | ${num(x.after.duckdbMiB)} | ${num(x.cpuSeconds, 1)} | ${pct(x.foreignCpu)} |`,
      ),
    );
    if (snap?.ok && replay?.ok) {
      const firstAnswer = (x: ColdResult) => x.loadMs + x.firstQueryMs;
      lines.push('', `Time to the first answer, whole log over snapshot + tail: ${ratio(firstAnswer(replay) / firstAnswer(snap))} (${num(firstAnswer(replay))} ms vs ${num(firstAnswer(snap))} ms).`);
    }
  }

  lines.push(
    '',
    '**Memory** of the benchmark process (RSS / JS heap / DuckDB\'s own count, MiB):',
    '',
    '| When | RSS / heap / DuckDB MiB |',
    '|---|---:|',
    ...r.memory.map((x) => `| ${x.label} | ${memCell(x)} |`),
  );
  if (r.notes.length > 0) lines.push('', ...r.notes.map((n) => `Note: ${n}.`));
  if (r.warnings.length > 0) {
    lines.push('', '**⚠ Warnings — do not quote these numbers without reading them:**', '', ...r.warnings.map((w) => `- ${w}`));
  }
  return `${lines.join('\n')}\n`;
}

const RELATION_NOTE = '8 relations (skewed)';

/** Phases during which other processes took a noticeable share of the CPU. */
export function contendedPhases(r: GraphReport): string[] {
  const named = [
    ...r.load.map((p) => ({ name: `load ${p.tenant} ${p.what}`, share: p.foreignCpu })),
    ...r.queries.map((q) => ({ name: q.name, share: q.foreignCpu })),
    ...r.cold.map((x) => ({ name: `cold ${x.mode}`, share: x.foreignCpu })),
  ].filter((p) => (p.share ?? 0) > CONTENDED_ROUND);
  if (named.length === 0) return [];
  const list = named.map((p) => `${p.name} ${pct(p.share)}`).join(', ');
  return [`other processes took over ${CONTENDED_ROUND * 100}% of the CPU during ${named.length} phase(s) (${list}); their latencies include that contention`];
}
