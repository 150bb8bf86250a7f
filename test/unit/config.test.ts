import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('defaults to embedded mode on 127.0.0.1:8080 with data under ./.aeterna', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      mode: 'embedded',
      host: '127.0.0.1',
      port: 8080,
      dataDir: path.resolve('.aeterna'),
      database: { kind: 'pglite', dataDir: path.resolve('.aeterna', 'pgdata') },
      embedder: { kind: 'hashing', dims: 384 },
      limits: { maxBodyBytes: 1024 * 1024, maxContentBytes: 64 * 1024 },
      memory: { dedupThreshold: 0.95 },
    });
  });

  it('switches to cluster mode with a database URL and requires a JWT key source there', () => {
    expect(problemsOf({ AETERNA_DATABASE_URL: 'postgres://u@h/db' })).toEqual([
      'AETERNA_JWT_SECRET or AETERNA_JWKS_URL is required when AETERNA_DATABASE_URL is set',
    ]);
    const config = loadConfig({ AETERNA_DATABASE_URL: 'postgres://u@h/db', AETERNA_JWT_SECRET: 's'.repeat(32), AETERNA_DATABASE_POOL_SIZE: '5' });
    expect(config).toMatchObject({ mode: 'cluster', database: { kind: 'postgres', url: 'postgres://u@h/db', poolSize: 5 } });
  });

  it('selects the OpenAI-compatible embedder only with a model', () => {
    expect(problemsOf({ AETERNA_EMBED_URL: 'http://127.0.0.1:1/v1' })).toEqual([
      'AETERNA_EMBED_MODEL is required when AETERNA_EMBED_URL is set',
    ]);
    const config = loadConfig({ AETERNA_EMBED_URL: 'http://127.0.0.1:1/v1', AETERNA_EMBED_MODEL: 'nomic-embed-text', AETERNA_EMBED_DIMS: '768' });
    expect(config.embedder).toMatchObject({ kind: 'openai', model: 'nomic-embed-text', dims: 768 });
  });

  it('names every bad variable at once', () => {
    const problems = problemsOf({
      AETERNA_PORT: '70000',
      AETERNA_MAX_BODY_BYTES: 'lots',
      AETERNA_DATABASE_URL: 'not a url',
      AETERNA_JWT_SECRET: 'short',
      AETERNA_LOG_LEVEL: 'chatty',
      AETERNA_DEDUP_THRESHOLD: '1.5',
    });
    for (const name of ['AETERNA_PORT', 'AETERNA_MAX_BODY_BYTES', 'AETERNA_DATABASE_URL', 'AETERNA_JWT_SECRET', 'AETERNA_LOG_LEVEL', 'AETERNA_DEDUP_THRESHOLD']) {
      expect(problems.some((p) => p.startsWith(name)), name).toBe(true);
    }
  });

  it('treats empty variables as unset', () => {
    expect(loadConfig({ AETERNA_DATABASE_URL: '', AETERNA_REDIS_URL: '' }).mode).toBe('embedded');
  });

  it('keeps Meta-Agent commands off unless programs are listed, and checks its limits', () => {
    expect(loadConfig({}).meta).toMatchObject({ maxIterations: 10, sandbox: { allow: [], runAs: 'nobody' } });
    expect(loadConfig({ AETERNA_META_COMMANDS: 'npm,pytest' }).meta.sandbox.allow).toEqual(['npm', 'pytest']);
    for (const [name, value] of [
      ['AETERNA_META_COMMANDS', 'sh;rm'],
      ['AETERNA_META_COMMANDS', '/bin/sh'],
      ['AETERNA_META_SANDBOX_USER', 'Root Admin'],
      ['AETERNA_META_MAX_ITERATIONS', '0'],
      ['AETERNA_META_TEST_TIMEOUT_MS', 'soon'],
    ] as const) {
      expect(problemsOf({ [name]: value }).some((p) => p.startsWith(name)), `${name}=${value}`).toBe(true);
    }
    expect(problemsOf({ AETERNA_META_DEFAULT_TIME_BUDGET_MS: '600000', AETERNA_META_MAX_TIME_BUDGET_MS: '60000' })).toEqual([
      'AETERNA_META_DEFAULT_TIME_BUDGET_MS must not be above AETERNA_META_MAX_TIME_BUDGET_MS',
    ]);
  });
});
