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
  AETERNA_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type DatabaseConfig =
  | { kind: 'pglite'; dataDir: string }
  | { kind: 'postgres'; url: string; poolSize: number };

export type EmbedderConfig =
  | { kind: 'hashing'; dims: number }
  | { kind: 'openai'; url: string; model: string; apiKey?: string; dims: number; timeoutMs: number };

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
  logLevel: z.infer<typeof envSchema>['AETERNA_LOG_LEVEL'];
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
  if (problems.length > 0) throw new ConfigError(problems);

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
    logLevel: e.AETERNA_LOG_LEVEL,
  };
}
