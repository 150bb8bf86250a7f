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
  AETERNA_SNAPSHOT_S3_PREFIX: z.string().max(512).regex(/^[A-Za-z0-9_.\/-]*$/, 'must be letters, digits, _ . / -').default('aeterna/graph'),
  AETERNA_SNAPSHOT_S3_ENDPOINT: optionalNonEmpty(url),
  AETERNA_SNAPSHOT_S3_REGION: z.string().min(1).default('us-east-1'),
  AETERNA_SNAPSHOT_S3_ACCESS_KEY: optionalNonEmpty(z.string()),
  AETERNA_SNAPSHOT_S3_SECRET_KEY: optionalNonEmpty(z.string()),
  AETERNA_SNAPSHOT_S3_PATH_STYLE: z.enum(['true', 'false']).default('false'),
  AETERNA_LLM_URL: optionalNonEmpty(url),
  AETERNA_LLM_MODEL: optionalNonEmpty(z.string().min(1)),
  AETERNA_LLM_KEY: optionalNonEmpty(z.string()),
  AETERNA_LLM_TIMEOUT_MS: intInRange(100, 600_000).default(60_000),
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

export interface AuthConfig {
  /** A shared HS secret; in embedded mode generated once into the data dir when not given. */
  secret?: string;
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
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
  embedCache: { entries: number; ttlSec: number };
  limits: { maxBodyBytes: number; maxContentBytes: number };
  memory: { dedupThreshold: number; recencyHalfLifeDays: number };
  realtime: RealtimeConfig;
  jobs: JobsConfig;
  graph: GraphConfig;
  llm?: LlmConfig;
  logLevel: z.infer<typeof envSchema>['AETERNA_LOG_LEVEL'];
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
  if (e.AETERNA_GRAPH_EXTRACTOR === 'llm' && !e.AETERNA_LLM_URL) {
    problems.push('AETERNA_GRAPH_EXTRACTOR=llm needs AETERNA_LLM_URL');
  }
  if (Boolean(e.AETERNA_SNAPSHOT_S3_ACCESS_KEY) !== Boolean(e.AETERNA_SNAPSHOT_S3_SECRET_KEY)) {
    problems.push('AETERNA_SNAPSHOT_S3_ACCESS_KEY and AETERNA_SNAPSHOT_S3_SECRET_KEY go together');
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
    embedCache: { entries: e.AETERNA_EMBED_CACHE_ENTRIES, ttlSec: e.AETERNA_EMBED_CACHE_TTL_SEC },
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
    logLevel: e.AETERNA_LOG_LEVEL,
  };
}
