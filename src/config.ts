import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/**
 * Every knob Aeterna reads, in one place. Environment variables are untrusted input: each is
 * parsed and range-checked here, and a bad one stops start-up with a message naming it.
 */
const intInRange = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const unit = z.coerce.number().min(0).max(1);
const url = z.string().url();
const optionalNonEmpty = <T extends z.ZodTypeAny>(schema: T) =>
  z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

const envSchema = z.object({
  AETERNA_HOST: z.string().min(1).default('127.0.0.1'),
  AETERNA_PORT: intInRange(0, 65535).default(8080),
  AETERNA_DATA_DIR: z.string().min(1).default('.aeterna'),
  AETERNA_DATABASE_URL: optionalNonEmpty(url),
  AETERNA_DATABASE_POOL_SIZE: intInRange(1, 200).default(10),
  AETERNA_REDIS_URL: optionalNonEmpty(url),
  AETERNA_JWT_SECRET: optionalNonEmpty(z.string().min(32, 'must be at least 32 characters')),
  AETERNA_JWKS_URL: optionalNonEmpty(url),
  AETERNA_JWT_ISSUER: optionalNonEmpty(z.string()),
  AETERNA_JWT_AUDIENCE: optionalNonEmpty(z.string()),
  AETERNA_EMBED_URL: optionalNonEmpty(url),
  AETERNA_EMBED_MODEL: optionalNonEmpty(z.string().min(1)),
  AETERNA_EMBED_KEY: optionalNonEmpty(z.string()),
  AETERNA_EMBED_DIMS: intInRange(8, 4096).default(384),
  AETERNA_EMBED_TIMEOUT_MS: intInRange(100, 120_000).default(15_000),
  AETERNA_EMBED_CACHE_ENTRIES: intInRange(0, 10_000_000).default(50_000),
  AETERNA_EMBED_CACHE_TTL_SEC: intInRange(1, 30 * 86_400).default(86_400),
  // Cost optimisation (issue 5): the embedding cache's semantic level and per-tenant token budgets.
  AETERNA_EMBED_SEMANTIC_THRESHOLD: z.coerce.number().min(0.5).max(1).default(0.98),
  AETERNA_EMBED_SEMANTIC_TTL_SEC: intInRange(1, 30 * 86_400).default(3600),
  AETERNA_EMBED_SEMANTIC_ENTRIES: intInRange(0, 100_000).default(256),
  AETERNA_BUDGET_EMBED_TOKENS_DAY: intInRange(0, 1e15).default(0),
  AETERNA_BUDGET_EMBED_TOKENS_MONTH: intInRange(0, 1e15).default(0),
  AETERNA_BUDGET_LLM_TOKENS_DAY: intInRange(0, 1e15).default(0),
  AETERNA_BUDGET_LLM_TOKENS_MONTH: intInRange(0, 1e15).default(0),
  AETERNA_BUDGET_ACTION: z.enum(['reject', 'queue', 'warn']).default('reject'),
  AETERNA_BUDGET_WARN_AT: z.coerce.number().gt(0).max(1).default(0.8),
  AETERNA_MAX_BODY_BYTES: intInRange(1024, 64 * 1024 * 1024).default(1024 * 1024),
  AETERNA_MAX_CONTENT_BYTES: intInRange(16, 16 * 1024 * 1024).default(64 * 1024),
  AETERNA_DEDUP_THRESHOLD: unit.default(0.95),
  AETERNA_RECENCY_HALF_LIFE_DAYS: z.coerce.number().positive().max(36_500).default(30),
  AETERNA_NODE_ID: optionalNonEmpty(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1-64 of A-Z a-z 0-9 _ . -')),
  AETERNA_REDIS_SHARDED: z.enum(['true', 'false']).default('false'),
  AETERNA_WS_MAX_MESSAGE_BYTES: intInRange(1024, 64 * 1024 * 1024).default(1024 * 1024),
  AETERNA_WS_MAX_BUFFERED_BYTES: intInRange(16 * 1024, 256 * 1024 * 1024).default(1024 * 1024),
  AETERNA_RATE_LIMIT_PER_SEC: intInRange(1, 1_000_000).default(100),
  AETERNA_RATE_LIMIT_BURST: intInRange(1, 1_000_000).default(200),
  AETERNA_TENANT_MAX_CONNECTIONS: intInRange(1, 10_000_000).default(10_000),
  AETERNA_PING_INTERVAL_MS: intInRange(1000, 600_000).default(25_000),
  AETERNA_PING_TIMEOUT_MS: intInRange(1000, 600_000).default(20_000),
  AETERNA_REPLAY_WINDOW: intInRange(1, 10_000_000).default(10_000),
  AETERNA_RELAY_PARTITIONS: intInRange(1, 4096).default(16),
  AETERNA_RELAY_TICK_MS: intInRange(50, 60_000).default(1000),
  AETERNA_RELAY_LEASE_MS: intInRange(500, 600_000).default(10_000),
  AETERNA_PRESENCE_TTL_MS: intInRange(500, 600_000).default(10_000),
  AETERNA_PRESENCE_HEARTBEAT_MS: intInRange(100, 600_000).default(3000),
  AETERNA_PRESENCE_SWEEP_MS: intInRange(100, 600_000).default(1000),
  AETERNA_DRAIN_MS: intInRange(0, 60_000).default(8000),
  AETERNA_JOB_ATTEMPTS: intInRange(1, 100).default(5),
  AETERNA_JOB_BACKOFF_MS: intInRange(10, 3_600_000).default(1000),
  AETERNA_JOB_CONCURRENCY: intInRange(1, 256).default(4),
  AETERNA_JOB_STALLED_MS: intInRange(500, 600_000).default(30_000),
  AETERNA_JOB_RETAIN_SEC: intInRange(60, 30 * 86_400).default(86_400),
  AETERNA_GRAPH_DUCKDB_PATH: optionalNonEmpty(z.string().min(1)),
  AETERNA_GRAPH_RETENTION_DAYS: z.coerce.number().min(0).max(36_500).default(30),
  AETERNA_GRAPH_MAX_PROPERTIES_BYTES: intInRange(256, 16 * 1024 * 1024).default(16 * 1024),
  AETERNA_GRAPH_SNAPSHOT_EVERY: intInRange(0, 10_000_000).default(1000),
  AETERNA_GRAPH_EXTRACTOR: z.enum(['auto', 'rules', 'llm']).default('auto'),
  AETERNA_SNAPSHOT_DIR: optionalNonEmpty(z.string().min(1)),
  AETERNA_SNAPSHOT_S3_BUCKET: optionalNonEmpty(z.string().regex(/^[a-z0-9][a-z0-9.-]{1,62}$/, 'must be a valid S3 bucket name')),
  AETERNA_SNAPSHOT_S3_PREFIX: z.string().max(512).regex(/^[A-Za-z0-9_./-]*$/, 'must be letters, digits, _ . / -').default('aeterna/graph'),
  AETERNA_SNAPSHOT_S3_ENDPOINT: optionalNonEmpty(url),
  AETERNA_SNAPSHOT_S3_REGION: z.string().min(1).default('us-east-1'),
  AETERNA_SNAPSHOT_S3_ACCESS_KEY: optionalNonEmpty(z.string()),
  AETERNA_SNAPSHOT_S3_SECRET_KEY: optionalNonEmpty(z.string()),
  AETERNA_SNAPSHOT_S3_PATH_STYLE: z.enum(['true', 'false']).default('false'),
  AETERNA_LLM_URL: optionalNonEmpty(url),
  AETERNA_LLM_MODEL: optionalNonEmpty(z.string().min(1)),
  AETERNA_LLM_KEY: optionalNonEmpty(z.string()),
  AETERNA_LLM_TIMEOUT_MS: intInRange(100, 600_000).default(60_000),
  // Context Architect: summary levels, context packing, the semantic answer cache.
  AETERNA_SUMMARY_SENTENCE_TOKENS: intInRange(8, 100_000).default(50),
  AETERNA_SUMMARY_PARAGRAPH_TOKENS: intInRange(8, 100_000).default(200),
  AETERNA_SUMMARY_DETAILED_TOKENS: intInRange(8, 100_000).default(500),
  AETERNA_SUMMARY_MAX_INPUT_TOKENS: intInRange(100, 1_000_000).default(8000),
  AETERNA_CONTEXT_DEFAULT_BUDGET: intInRange(1, 1_000_000).default(4000),
  AETERNA_CONTEXT_MIN_BUDGET: intInRange(1, 1_000_000).default(100),
  AETERNA_CONTEXT_MAX_BUDGET: intInRange(1, 1_000_000).default(32_000),
  AETERNA_CONTEXT_DETAILED_ABOVE: unit.default(0.9),
  AETERNA_CONTEXT_PARAGRAPH_FROM: unit.default(0.7),
  AETERNA_CONTEXT_CANDIDATES: intInRange(1, 100).default(50),
  AETERNA_CONTEXT_MIN_RELEVANCE: unit.default(0.15),
  AETERNA_ANSWER_CACHE_THRESHOLD: unit.default(0.95),
  AETERNA_ANSWER_CACHE_TTL_SEC: intInRange(1, 30 * 86_400).default(600),
  AETERNA_ANSWER_CACHE_ENTRIES: intInRange(0, 10_000_000).default(10_000),
  AETERNA_ANSWER_CACHE_SCOPE_ENTRIES: intInRange(1, 10_000).default(256),
  // Tiered storage (issue 5): hot / warm / cold memories; cold ones archived to Parquet.
  AETERNA_TIER_HOT_DAYS: z.coerce.number().positive().max(36_500).default(7),
  AETERNA_TIER_COLD_DAYS: z.coerce.number().positive().max(36_500).default(90),
  AETERNA_TIER_WARM_MAX_PER_DAY: z.coerce.number().positive().max(1_000_000).default(1),
  AETERNA_TIER_COLD_MAX_PER_WEEK: z.coerce.number().positive().max(1_000_000).default(1),
  AETERNA_TIER_INTERVAL_MS: intInRange(0, 30 * 86_400_000).default(3_600_000),
  AETERNA_TIER_BATCH: intInRange(1, 100_000).default(500),
  AETERNA_TIER_MAX_PER_RUN: intInRange(1, 10_000_000).default(20_000),
  AETERNA_TIER_PREVIEW_TOKENS: intInRange(1, 1000).default(32),
  AETERNA_TIER_ORPHAN_GRACE_SEC: intInRange(0, 365 * 86_400).default(86_400),
  AETERNA_COLD_DIR: optionalNonEmpty(z.string().min(1)),
  AETERNA_COLD_S3_PREFIX: z.string().max(512).regex(/^[A-Za-z0-9_./-]*$/, 'must be letters, digits, _ . / -').default('aeterna/cold'),
  // Note-taking and hindsight learning (issue 5): trajectory capture, session distillation, error patterns.
  AETERNA_TRAJECTORY_MAX_FIELD_BYTES: intInRange(256, 16 * 1024 * 1024).default(8192),
  AETERNA_TRAJECTORY_MAX_BATCH: intInRange(1, 1000).default(100),
  AETERNA_SESSION_IDLE_MS: intInRange(0, 30 * 86_400_000).default(30 * 60_000),
  AETERNA_SESSION_SWEEP_MS: intInRange(0, 86_400_000).default(60_000),
  AETERNA_NOTES_STATE_CHANGING_TOOLS: z
    .string()
    .regex(/^[a-z0-9]+(,[a-z0-9]+)*$/, 'must be comma-separated lower-case words')
    .default('write,create,update,delete,remove,deploy,commit,exec,execute,run,push,merge,insert,put,patch,post,edit,move,rename,install,apply,send,publish,drop,migrate,save,set'),
  AETERNA_NOTES_MAX_TOKENS: intInRange(50, 8000).default(500),
  AETERNA_NOTES_MAX_EVENTS: intInRange(10, 100_000).default(500),
  AETERNA_HINDSIGHT_SIMILARITY: unit.default(0.8),
  AETERNA_HINDSIGHT_QUERY_LIMIT: intInRange(1, 20).default(3),
  AETERNA_HINDSIGHT_PROMOTE_AFTER: intInRange(1, 1_000_000).default(3),
  AETERNA_HINDSIGHT_HALF_LIFE_DAYS: z.coerce.number().positive().max(36_500).default(30),
  AETERNA_HINDSIGHT_STACK_FRAMES: intInRange(0, 20).default(3),
  AETERNA_HINDSIGHT_SCAN_LIMIT: intInRange(10, 1_000_000).default(2000),
  AETERNA_HINDSIGHT_DEFAULT_TEAM: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must match the id rule').default('default'),
  // Meta-Agent (issue 5): build → test → improve runs, and the sandbox their test commands run in.
  AETERNA_META_MAX_ITERATIONS: intInRange(1, 50).default(10),
  AETERNA_META_DEFAULT_TIME_BUDGET_MS: intInRange(1000, 86_400_000).default(300_000),
  AETERNA_META_MAX_TIME_BUDGET_MS: intInRange(1000, 86_400_000).default(3_600_000),
  AETERNA_META_TEST_TIMEOUT_MS: intInRange(100, 3_600_000).default(60_000),
  AETERNA_META_CONTEXT_TOKENS: intInRange(100, 32_000).default(2000),
  AETERNA_META_MAX_SOLUTION_BYTES: intInRange(1024, 4 * 1024 * 1024).default(256 * 1024),
  AETERNA_META_COMMANDS: z
    .string()
    .regex(/^([A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*)?$/, 'must be comma-separated program names')
    .default(''),
  AETERNA_META_SANDBOX_USER: z.string().regex(/^([a-z_][a-z0-9_-]{0,31})?$/, 'must be a user name').default('nobody'),
  AETERNA_META_SANDBOX_CPU_SEC: intInRange(0, 86_400).default(60),
  AETERNA_META_SANDBOX_MEMORY_MB: intInRange(0, 1_048_576).default(2048),
  AETERNA_META_SANDBOX_OUTPUT_BYTES: intInRange(1024, 16 * 1024 * 1024).default(64 * 1024),
  AETERNA_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type DatabaseConfig =
  | { kind: 'pglite'; dataDir: string }
  | { kind: 'postgres'; url: string; poolSize: number };

export type EmbedderConfig =
  | { kind: 'hashing'; dims: number }
  | { kind: 'openai'; url: string; model: string; apiKey?: string; dims: number; timeoutMs: number };

export type SnapshotStoreConfig =
  | { kind: 'dir'; dir: string }
  | {
      kind: 's3';
      bucket: string;
      prefix: string;
      region: string;
      endpoint?: string;
      accessKeyId?: string;
      secretAccessKey?: string;
      forcePathStyle: boolean;
    };

export interface JobsConfig {
  /** Tries per job before it is dead-lettered. */
  attempts: number;
  /** First retry delay; doubles on each further attempt. */
  backoffMs: number;
  /** Jobs a process runs at once, per job kind. */
  concurrency: number;
  /** A job whose worker stops renewing its lock for this long is handed to another worker. */
  stalledMs: number;
  /** Finished jobs are kept this long, so a re-enqueue of the same event id stays a no-op. */
  retainSec: number;
}

export interface GraphConfig {
  /** The process's DuckDB projection: a file in embedded mode, in memory per process in cluster mode. */
  duckdbPath: string;
  /** Soft-deleted nodes and edges are purged after this many days. */
  retentionDays: number;
  maxPropertiesBytes: number;
  /** Write a snapshot after this many graph batches of a tenant (0: only on request). */
  snapshotEvery: number;
  snapshots: SnapshotStoreConfig;
  extractor: 'rules' | 'llm';
}

/** An OpenAI-compatible chat completions endpoint. */
export interface LlmConfig {
  url: string;
  model: string;
  apiKey?: string;
  timeoutMs: number;
}

/** Tiered storage (issue 5). Days and rates are compared as in src/memory/tiering.ts classifyTier. */
export interface TieringConfig {
  /** Touched (accessed, updated or created) within this many days: hot. */
  hotDays: number;
  /** Untouched for more than this many days, and rarely used: cold (archived to Parquet). */
  coldDays: number;
  /** Between hotDays and coldDays, a memory used at least this often per day stays hot. */
  warmMaxPerDay: number;
  /** Past coldDays, a memory used at least this often per week stays warm. */
  coldMaxPerWeek: number;
  /** How often the periodic sweep tiers every tenant (0: only on request). */
  intervalMs: number;
  /** Memories per transaction and per Parquet file. */
  batchSize: number;
  /** Cold moves per tenant per run; the rest wait for the next run. */
  maxPerRun: number;
  /** Tokens of content a cold stub keeps as its preview (at most half the content's). */
  previewTokens: number;
  /** An archive file no stub refers to is deleted once it is this old (a move that died mid-way). */
  orphanGraceSec: number;
  /** Where cold Parquet goes: `{tenant}/cold/{yyyy-mm}/…` in a directory or the snapshot bucket. */
  store: SnapshotStoreConfig;
}

/** Context Architect: summaries of every memory, `context.assemble` and its answer cache. */
export interface ContextConfig {
  /** Token caps of the three summary levels (sentence <= paragraph <= detailed). */
  summaryTokens: { sentence: number; paragraph: number; detailed: number };
  /** A longer memory is cut to this many tokens before the LLM summarises it: this bounds prompt cost. */
  summaryMaxInputTokens: number;
  /** `tokenBudget` of context.assemble: the default and the accepted range. */
  budget: { default: number; min: number; max: number };
  /** Relevance above this packs a memory's detailed summary. */
  detailedAbove: number;
  /** Relevance from this up to `detailedAbove` packs the paragraph; below it, the sentence. */
  paragraphFrom: number;
  /** Search results considered per assemble. */
  candidates: number;
  /** Memories less similar to the query than this are left out. */
  minRelevance: number;
  answerCache: {
    /** Cosine between query embeddings at or above which a cached answer is reused. */
    threshold: number;
    ttlSec: number;
    /** Answers kept in all (in process); 0 turns the cache off. */
    entries: number;
    /** Answers kept per (tenant, effective scope, budget); a lookup compares the query with each (in Redis: fetches them, ~1.6 KiB each). */
    perScopeEntries: number;
  };
}

/** Note-taking agent (issue 5): what a trajectory keeps and when a session counts as over. */
export interface NotesConfig {
  /** Each event's input and output are cut to this many UTF-8 bytes (after redaction), marked truncated. */
  maxFieldBytes: number;
  /** Events in one batched `trajectory.capture`. */
  maxBatch: number;
  /** A session with no capture for this long is ended by the sweep (0: the sweep ends every open session). */
  sessionIdleMs: number;
  /** How often the sweep runs where jobs run (0: never; only `session.end` ends sessions). */
  sweepIntervalMs: number;
  /** Words that make a tool state-changing when its name contains one (`writeFile`, `git_commit`). */
  stateChangingTools: string[];
  /** A distilled note is at most this many tokens. */
  maxNoteTokens: number;
  /** Events of one session read for distillation (the most recent ones). */
  maxEvents: number;
}

/** Hindsight learning (issue 5): error signatures, their matching, ranking and promotion. */
export interface HindsightConfig {
  /** Cosine between signature embeddings at or above which an earlier pattern is similar. */
  similarity: number;
  /** Patterns `hindsight.query` returns when the caller gives no limit. */
  queryLimit: number;
  /** Occurrences after which a pattern with a working resolution is promoted to the team layer. */
  promoteAfter: number;
  /** Recency factor of the ranking halves every this many days since a pattern was last seen or resolved. */
  halfLifeDays: number;
  /** Function names of the top stack frames kept in a signature. */
  stackFrames: number;
  /** Most recently seen patterns compared by embedding per report or query. */
  scanLimit: number;
  /** The team a pattern is promoted to when neither the call nor an earlier report named one. */
  defaultTeamId: string;
}

/** The Meta-Agent (issue 5): limits of a run and the sandbox its test command runs in. */
export interface MetaConfig {
  /** The most iterations a run may ask for (a run asks for 3 unless it says otherwise). */
  maxIterations: number;
  defaultTimeBudgetMs: number;
  maxTimeBudgetMs: number;
  /** One test (a command, or a caller's answer over the socket) waits at most this long. */
  testTimeoutMs: number;
  /** Token budget of the assembled context a build prompt carries. */
  contextTokens: number;
  /** A solution the model proposes is kept up to this many UTF-8 bytes. */
  maxSolutionBytes: number;
  sandbox: {
    /** Programs a test command may start; empty: commands are off and tests go through the caller. */
    allow: string[];
    /** Run commands as this user when the worker runs as root ('' keeps root: not advised). */
    runAs: string;
    cpuSeconds: number;
    memoryMb: number;
    maxOutputBytes: number;
  };
}

export interface AuthConfig {
  /** A shared HS secret; in embedded mode generated once into the data dir when not given. */
  secret?: string;
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
}

/** The embedding cache (issue 5): exact (tenant, model, text hash) and semantic (near-identical text) levels. */
export interface EmbedCacheConfig {
  /** Exact-level entries in process (embedded mode); 0 turns the whole cache off. */
  entries: number;
  ttlSec: number;
  semantic: {
    /** Recent texts remembered per (tenant, model) for near-identical lookups; 0 turns the level off. */
    entries: number;
    ttlSec: number;
    /** Cosine of the texts' lexical sketches at which one reuses the other's embedding. */
    threshold: number;
  };
}

/** Per-tenant token budgets (issue 5). A limit of 0 is unlimited; admins override per tenant. */
export interface BudgetsConfig {
  action: 'reject' | 'queue' | 'warn';
  /** Fraction of a limit at which `budget.warning` is announced. */
  warnAt: number;
  limits: { embed: { day: number; month: number }; llm: { day: number; month: number } };
}

export interface Config {
  mode: 'embedded' | 'cluster';
  host: string;
  port: number;
  dataDir: string;
  database: DatabaseConfig;
  redisUrl?: string;
  auth: AuthConfig;
  embedder: EmbedderConfig;
  embedCache: EmbedCacheConfig;
  budgets: BudgetsConfig;
  limits: { maxBodyBytes: number; maxContentBytes: number };
  memory: { dedupThreshold: number; recencyHalfLifeDays: number };
  realtime: RealtimeConfig;
  jobs: JobsConfig;
  graph: GraphConfig;
  llm?: LlmConfig;
  context: ContextConfig;
  notes: NotesConfig;
  hindsight: HindsightConfig;
  meta: MetaConfig;
  logLevel: z.infer<typeof envSchema>['AETERNA_LOG_LEVEL'];
  tiering: TieringConfig;
}

export interface RealtimeConfig {
  /** Names this process in leases and presence; unique per running process. */
  nodeId: string;
  redisSharded: boolean;
  maxMessageBytes: number;
  /** A socket whose unsent backlog passes this is disconnected as a slow consumer. */
  maxBufferedBytes: number;
  rateLimit: { perSec: number; burst: number };
  tenantMaxConnections: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** Resume replays at most this many events; a larger gap gets resync.required. */
  replayWindow: number;
  relay: { partitions: number; tickMs: number; leaseMs: number };
  presence: { ttlMs: number; heartbeatMs: number; sweepMs: number };
  /** How long SIGTERM waits for in-flight acks before closing sockets. */
  drainMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.AETERNA_DATA_DIR);
  const mode = e.AETERNA_DATABASE_URL ? 'cluster' : 'embedded';
  const problems: string[] = [];
  if (mode === 'cluster' && !e.AETERNA_JWT_SECRET && !e.AETERNA_JWKS_URL) {
    problems.push('AETERNA_JWT_SECRET or AETERNA_JWKS_URL is required when AETERNA_DATABASE_URL is set');
  }
  if (e.AETERNA_EMBED_URL && !e.AETERNA_EMBED_MODEL) {
    problems.push('AETERNA_EMBED_MODEL is required when AETERNA_EMBED_URL is set');
  }
  if (e.AETERNA_PRESENCE_HEARTBEAT_MS >= e.AETERNA_PRESENCE_TTL_MS) {
    problems.push('AETERNA_PRESENCE_HEARTBEAT_MS must be below AETERNA_PRESENCE_TTL_MS');
  }
  if (e.AETERNA_RELAY_TICK_MS * 2 > e.AETERNA_RELAY_LEASE_MS) {
    problems.push('AETERNA_RELAY_TICK_MS must be at most half of AETERNA_RELAY_LEASE_MS (leases are renewed each tick)');
  }
  if (e.AETERNA_LLM_URL && !e.AETERNA_LLM_MODEL) {
    problems.push('AETERNA_LLM_MODEL is required when AETERNA_LLM_URL is set');
  }
  // Context Architect
  if (!(e.AETERNA_SUMMARY_SENTENCE_TOKENS <= e.AETERNA_SUMMARY_PARAGRAPH_TOKENS && e.AETERNA_SUMMARY_PARAGRAPH_TOKENS <= e.AETERNA_SUMMARY_DETAILED_TOKENS)) {
    problems.push('AETERNA_SUMMARY_SENTENCE_TOKENS <= AETERNA_SUMMARY_PARAGRAPH_TOKENS <= AETERNA_SUMMARY_DETAILED_TOKENS must hold');
  }
  if (!(e.AETERNA_CONTEXT_MIN_BUDGET <= e.AETERNA_CONTEXT_DEFAULT_BUDGET && e.AETERNA_CONTEXT_DEFAULT_BUDGET <= e.AETERNA_CONTEXT_MAX_BUDGET)) {
    problems.push('AETERNA_CONTEXT_MIN_BUDGET <= AETERNA_CONTEXT_DEFAULT_BUDGET <= AETERNA_CONTEXT_MAX_BUDGET must hold');
  }
  if (e.AETERNA_CONTEXT_PARAGRAPH_FROM > e.AETERNA_CONTEXT_DETAILED_ABOVE) {
    problems.push('AETERNA_CONTEXT_PARAGRAPH_FROM must not be above AETERNA_CONTEXT_DETAILED_ABOVE');
  }
  if (e.AETERNA_GRAPH_EXTRACTOR === 'llm' && !e.AETERNA_LLM_URL) {
    problems.push('AETERNA_GRAPH_EXTRACTOR=llm needs AETERNA_LLM_URL');
  }
  if (Boolean(e.AETERNA_SNAPSHOT_S3_ACCESS_KEY) !== Boolean(e.AETERNA_SNAPSHOT_S3_SECRET_KEY)) {
    problems.push('AETERNA_SNAPSHOT_S3_ACCESS_KEY and AETERNA_SNAPSHOT_S3_SECRET_KEY go together');
  }
  if (e.AETERNA_TIER_COLD_DAYS <= e.AETERNA_TIER_HOT_DAYS) {
    problems.push('AETERNA_TIER_COLD_DAYS must be above AETERNA_TIER_HOT_DAYS');
  }
  if (e.AETERNA_META_DEFAULT_TIME_BUDGET_MS > e.AETERNA_META_MAX_TIME_BUDGET_MS) {
    problems.push('AETERNA_META_DEFAULT_TIME_BUDGET_MS must not be above AETERNA_META_MAX_TIME_BUDGET_MS');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const llm: LlmConfig | undefined =
    e.AETERNA_LLM_URL && e.AETERNA_LLM_MODEL
      ? { url: e.AETERNA_LLM_URL, model: e.AETERNA_LLM_MODEL, timeoutMs: e.AETERNA_LLM_TIMEOUT_MS, ...(e.AETERNA_LLM_KEY ? { apiKey: e.AETERNA_LLM_KEY } : {}) }
      : undefined;
  const snapshots: SnapshotStoreConfig = e.AETERNA_SNAPSHOT_S3_BUCKET
    ? {
        kind: 's3',
        bucket: e.AETERNA_SNAPSHOT_S3_BUCKET,
        prefix: e.AETERNA_SNAPSHOT_S3_PREFIX.replace(/^\/+|\/+$/g, ''),
        region: e.AETERNA_SNAPSHOT_S3_REGION,
        forcePathStyle: e.AETERNA_SNAPSHOT_S3_PATH_STYLE === 'true',
        ...(e.AETERNA_SNAPSHOT_S3_ENDPOINT ? { endpoint: e.AETERNA_SNAPSHOT_S3_ENDPOINT } : {}),
        ...(e.AETERNA_SNAPSHOT_S3_ACCESS_KEY && e.AETERNA_SNAPSHOT_S3_SECRET_KEY
          ? { accessKeyId: e.AETERNA_SNAPSHOT_S3_ACCESS_KEY, secretAccessKey: e.AETERNA_SNAPSHOT_S3_SECRET_KEY }
          : {}),
      }
    : { kind: 'dir', dir: path.resolve(e.AETERNA_SNAPSHOT_DIR ?? path.join(dataDir, 'snapshots')) };

  return {
    mode,
    host: e.AETERNA_HOST,
    port: e.AETERNA_PORT,
    dataDir,
    database: e.AETERNA_DATABASE_URL
      ? { kind: 'postgres', url: e.AETERNA_DATABASE_URL, poolSize: e.AETERNA_DATABASE_POOL_SIZE }
      : { kind: 'pglite', dataDir: path.join(dataDir, 'pgdata') },
    ...(e.AETERNA_REDIS_URL ? { redisUrl: e.AETERNA_REDIS_URL } : {}),
    auth: {
      ...(e.AETERNA_JWT_SECRET ? { secret: e.AETERNA_JWT_SECRET } : {}),
      ...(e.AETERNA_JWKS_URL ? { jwksUrl: e.AETERNA_JWKS_URL } : {}),
      ...(e.AETERNA_JWT_ISSUER ? { issuer: e.AETERNA_JWT_ISSUER } : {}),
      ...(e.AETERNA_JWT_AUDIENCE ? { audience: e.AETERNA_JWT_AUDIENCE } : {}),
    },
    embedder:
      e.AETERNA_EMBED_URL && e.AETERNA_EMBED_MODEL
        ? {
            kind: 'openai',
            url: e.AETERNA_EMBED_URL,
            model: e.AETERNA_EMBED_MODEL,
            dims: e.AETERNA_EMBED_DIMS,
            timeoutMs: e.AETERNA_EMBED_TIMEOUT_MS,
            ...(e.AETERNA_EMBED_KEY ? { apiKey: e.AETERNA_EMBED_KEY } : {}),
          }
        : { kind: 'hashing', dims: e.AETERNA_EMBED_DIMS },
    embedCache: {
      entries: e.AETERNA_EMBED_CACHE_ENTRIES,
      ttlSec: e.AETERNA_EMBED_CACHE_TTL_SEC,
      semantic: { entries: e.AETERNA_EMBED_SEMANTIC_ENTRIES, ttlSec: e.AETERNA_EMBED_SEMANTIC_TTL_SEC, threshold: e.AETERNA_EMBED_SEMANTIC_THRESHOLD },
    },
    budgets: {
      action: e.AETERNA_BUDGET_ACTION,
      warnAt: e.AETERNA_BUDGET_WARN_AT,
      limits: {
        embed: { day: e.AETERNA_BUDGET_EMBED_TOKENS_DAY, month: e.AETERNA_BUDGET_EMBED_TOKENS_MONTH },
        llm: { day: e.AETERNA_BUDGET_LLM_TOKENS_DAY, month: e.AETERNA_BUDGET_LLM_TOKENS_MONTH },
      },
    },
    limits: { maxBodyBytes: e.AETERNA_MAX_BODY_BYTES, maxContentBytes: e.AETERNA_MAX_CONTENT_BYTES },
    memory: { dedupThreshold: e.AETERNA_DEDUP_THRESHOLD, recencyHalfLifeDays: e.AETERNA_RECENCY_HALF_LIFE_DAYS },
    realtime: {
      // The 'n-' prefix keeps the id valid whatever the hostname starts with.
      nodeId: e.AETERNA_NODE_ID ?? `n-${os.hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 40)}-${process.pid}-${randomBytes(3).toString('hex')}`,
      redisSharded: e.AETERNA_REDIS_SHARDED === 'true',
      maxMessageBytes: e.AETERNA_WS_MAX_MESSAGE_BYTES,
      maxBufferedBytes: e.AETERNA_WS_MAX_BUFFERED_BYTES,
      rateLimit: { perSec: e.AETERNA_RATE_LIMIT_PER_SEC, burst: e.AETERNA_RATE_LIMIT_BURST },
      tenantMaxConnections: e.AETERNA_TENANT_MAX_CONNECTIONS,
      pingIntervalMs: e.AETERNA_PING_INTERVAL_MS,
      pingTimeoutMs: e.AETERNA_PING_TIMEOUT_MS,
      replayWindow: e.AETERNA_REPLAY_WINDOW,
      relay: { partitions: e.AETERNA_RELAY_PARTITIONS, tickMs: e.AETERNA_RELAY_TICK_MS, leaseMs: e.AETERNA_RELAY_LEASE_MS },
      presence: { ttlMs: e.AETERNA_PRESENCE_TTL_MS, heartbeatMs: e.AETERNA_PRESENCE_HEARTBEAT_MS, sweepMs: e.AETERNA_PRESENCE_SWEEP_MS },
      drainMs: e.AETERNA_DRAIN_MS,
    },
    jobs: {
      attempts: e.AETERNA_JOB_ATTEMPTS,
      backoffMs: e.AETERNA_JOB_BACKOFF_MS,
      concurrency: e.AETERNA_JOB_CONCURRENCY,
      stalledMs: e.AETERNA_JOB_STALLED_MS,
      retainSec: e.AETERNA_JOB_RETAIN_SEC,
    },
    graph: {
      // Cluster processes each keep a private projection rebuilt from the log and snapshots.
      duckdbPath: e.AETERNA_GRAPH_DUCKDB_PATH ?? (mode === 'embedded' ? path.join(dataDir, 'graph.duckdb') : ':memory:'),
      retentionDays: e.AETERNA_GRAPH_RETENTION_DAYS,
      maxPropertiesBytes: e.AETERNA_GRAPH_MAX_PROPERTIES_BYTES,
      snapshotEvery: e.AETERNA_GRAPH_SNAPSHOT_EVERY,
      snapshots,
      extractor: e.AETERNA_GRAPH_EXTRACTOR === 'auto' ? (llm ? 'llm' : 'rules') : e.AETERNA_GRAPH_EXTRACTOR,
    },
    ...(llm ? { llm } : {}),
    // Context Architect
    context: {
      summaryTokens: {
        sentence: e.AETERNA_SUMMARY_SENTENCE_TOKENS,
        paragraph: e.AETERNA_SUMMARY_PARAGRAPH_TOKENS,
        detailed: e.AETERNA_SUMMARY_DETAILED_TOKENS,
      },
      summaryMaxInputTokens: e.AETERNA_SUMMARY_MAX_INPUT_TOKENS,
      budget: { default: e.AETERNA_CONTEXT_DEFAULT_BUDGET, min: e.AETERNA_CONTEXT_MIN_BUDGET, max: e.AETERNA_CONTEXT_MAX_BUDGET },
      detailedAbove: e.AETERNA_CONTEXT_DETAILED_ABOVE,
      paragraphFrom: e.AETERNA_CONTEXT_PARAGRAPH_FROM,
      candidates: e.AETERNA_CONTEXT_CANDIDATES,
      minRelevance: e.AETERNA_CONTEXT_MIN_RELEVANCE,
      answerCache: {
        threshold: e.AETERNA_ANSWER_CACHE_THRESHOLD,
        ttlSec: e.AETERNA_ANSWER_CACHE_TTL_SEC,
        entries: e.AETERNA_ANSWER_CACHE_ENTRIES,
        perScopeEntries: e.AETERNA_ANSWER_CACHE_SCOPE_ENTRIES,
      },
    },
    tiering: {
      hotDays: e.AETERNA_TIER_HOT_DAYS,
      coldDays: e.AETERNA_TIER_COLD_DAYS,
      warmMaxPerDay: e.AETERNA_TIER_WARM_MAX_PER_DAY,
      coldMaxPerWeek: e.AETERNA_TIER_COLD_MAX_PER_WEEK,
      intervalMs: e.AETERNA_TIER_INTERVAL_MS,
      batchSize: e.AETERNA_TIER_BATCH,
      maxPerRun: e.AETERNA_TIER_MAX_PER_RUN,
      previewTokens: e.AETERNA_TIER_PREVIEW_TOKENS,
      orphanGraceSec: e.AETERNA_TIER_ORPHAN_GRACE_SEC,
      // Same kind, bucket and credentials as graph snapshots, under a root of its own, so a graph
      // snapshot listing never walks the cold archive (and vice versa).
      store:
        snapshots.kind === 's3'
          ? { ...snapshots, prefix: e.AETERNA_COLD_S3_PREFIX.replace(/^\/+|\/+$/g, '') }
          : { kind: 'dir', dir: path.resolve(e.AETERNA_COLD_DIR ?? path.join(dataDir, 'cold')) },
    },
    notes: {
      maxFieldBytes: e.AETERNA_TRAJECTORY_MAX_FIELD_BYTES,
      maxBatch: e.AETERNA_TRAJECTORY_MAX_BATCH,
      sessionIdleMs: e.AETERNA_SESSION_IDLE_MS,
      sweepIntervalMs: e.AETERNA_SESSION_SWEEP_MS,
      stateChangingTools: e.AETERNA_NOTES_STATE_CHANGING_TOOLS.split(','),
      maxNoteTokens: e.AETERNA_NOTES_MAX_TOKENS,
      maxEvents: e.AETERNA_NOTES_MAX_EVENTS,
    },
    hindsight: {
      similarity: e.AETERNA_HINDSIGHT_SIMILARITY,
      queryLimit: e.AETERNA_HINDSIGHT_QUERY_LIMIT,
      promoteAfter: e.AETERNA_HINDSIGHT_PROMOTE_AFTER,
      halfLifeDays: e.AETERNA_HINDSIGHT_HALF_LIFE_DAYS,
      stackFrames: e.AETERNA_HINDSIGHT_STACK_FRAMES,
      scanLimit: e.AETERNA_HINDSIGHT_SCAN_LIMIT,
      defaultTeamId: e.AETERNA_HINDSIGHT_DEFAULT_TEAM,
    },
    meta: {
      maxIterations: e.AETERNA_META_MAX_ITERATIONS,
      defaultTimeBudgetMs: e.AETERNA_META_DEFAULT_TIME_BUDGET_MS,
      maxTimeBudgetMs: e.AETERNA_META_MAX_TIME_BUDGET_MS,
      testTimeoutMs: e.AETERNA_META_TEST_TIMEOUT_MS,
      contextTokens: e.AETERNA_META_CONTEXT_TOKENS,
      maxSolutionBytes: e.AETERNA_META_MAX_SOLUTION_BYTES,
      sandbox: {
        allow: e.AETERNA_META_COMMANDS === '' ? [] : e.AETERNA_META_COMMANDS.split(','),
        runAs: e.AETERNA_META_SANDBOX_USER,
        cpuSeconds: e.AETERNA_META_SANDBOX_CPU_SEC,
        memoryMb: e.AETERNA_META_SANDBOX_MEMORY_MB,
        maxOutputBytes: e.AETERNA_META_SANDBOX_OUTPUT_BYTES,
      },
    },
    logLevel: e.AETERNA_LOG_LEVEL,
  };
}
