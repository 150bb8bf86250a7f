import net from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createTestDatabase, requireService, startServices, testDatabaseUrl, testRedisUrl } from '../support/index.js';

// Read before any test stubs the environment.
const pgUrl = requireService('postgres');
const redisUrl = requireService('redis');

/** Each import gets a fresh module, so the "warn once" memory does not leak between tests. */
async function freshEnvModule(): Promise<typeof import('../support/env.js')> {
  vi.resetModules();
  return import('../support/env.js');
}

describe('test environment helpers', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('reads the server URLs and treats blank values as absent', () => {
    vi.stubEnv('AETERNA_TEST_REDIS_URL', 'redis://127.0.0.1:1');
    vi.stubEnv('AETERNA_TEST_DATABASE_URL', '  ');
    expect(testRedisUrl()).toBe('redis://127.0.0.1:1');
    expect(testDatabaseUrl()).toBeUndefined();
  });

  it('knows when services are required', async () => {
    const env = await freshEnvModule();
    vi.stubEnv('AETERNA_TEST_REQUIRE_SERVICES', '1');
    expect(env.servicesRequired()).toBe(true);
    vi.stubEnv('AETERNA_TEST_REQUIRE_SERVICES', '');
    expect(env.servicesRequired()).toBe(false);
    vi.stubEnv('AETERNA_TEST_REQUIRE_SERVICES', '0');
    expect(env.servicesRequired()).toBe(false);
  });

  it('returns the URL of an available service', async () => {
    const env = await freshEnvModule();
    vi.stubEnv('AETERNA_TEST_DATABASE_URL', 'postgres://postgres@127.0.0.1:1/postgres');
    expect(env.requireService('postgres')).toBe('postgres://postgres@127.0.0.1:1/postgres');
  });

  it('skips with a single warning when a service is missing and not required', async () => {
    const env = await freshEnvModule();
    vi.stubEnv('AETERNA_TEST_REDIS_URL', '');
    vi.stubEnv('AETERNA_TEST_REQUIRE_SERVICES', '');
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    expect(env.requireService('redis')).toBeUndefined();
    expect(env.requireService('redis')).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).toMatch(/AETERNA_TEST_REDIS_URL.*SKIPPED/);
  });

  it('throws when a service is missing but required', async () => {
    const env = await freshEnvModule();
    vi.stubEnv('AETERNA_TEST_DATABASE_URL', '');
    vi.stubEnv('AETERNA_TEST_REQUIRE_SERVICES', '1');
    expect(() => env.requireService('postgres')).toThrow(/PostgreSQL is required/);
  });
});

describe('startServices', () => {
  it('starts nothing when asked for nothing', async () => {
    const services = await startServices({ log: () => undefined });
    expect(services).toMatchObject({ problems: [] });
    expect(services.redisUrl).toBeUndefined();
    expect(services.databaseUrl).toBeUndefined();
    await services.stop();
  });

  // Only where the runner managed to start Redis: otherwise this would try apt-get from a test.
  it.skipIf(!redisUrl)('stops the server it started, and stop() can be called twice', async () => {
    const services = await startServices({ redis: true, log: () => undefined });
    expect(services.problems).toEqual([]);
    const port = Number(new URL(services.redisUrl ?? '').port);
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(6379);
    await expect(canConnect(port)).resolves.toBe(true);
    await services.stop();
    await services.stop();
    await expect(canConnect(port)).resolves.toBe(false);
  });
});

describe.skipIf(!redisUrl)('throwaway Redis', () => {
  it('answers PING', async () => {
    const redis = new Redis(redisUrl ?? '', { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      await expect(redis.ping()).resolves.toBe('PONG');
    } finally {
      redis.disconnect();
    }
  });
});

describe.skipIf(!pgUrl)('createTestDatabase', () => {
  const admin = pgUrl ?? '';

  it('creates a private database and drop() removes it even with clients still connected', async () => {
    const db = await createTestDatabase(admin);
    expect(db.name).toMatch(/^aeterna_t_[0-9a-f]{12}$/);
    expect(new URL(db.url).pathname).toBe(`/${db.name}`);
    expect(new URL(db.url).host).toBe(new URL(admin).host);

    const client = new pg.Client({ connectionString: db.url });
    // The server terminates this session during drop(); that surfaces as an 'error' event.
    client.on('error', () => undefined);
    await client.connect();
    const { rows } = await client.query<{ current_database: string }>('select current_database()');
    expect(rows[0]?.current_database).toBe(db.name);

    await db.drop();
    await db.drop();
    await client.end().catch(() => undefined);

    const check = new pg.Client({ connectionString: admin });
    await check.connect();
    try {
      const gone = await check.query('select 1 from pg_database where datname = $1', [db.name]);
      expect(gone.rowCount).toBe(0);
    } finally {
      await check.end();
    }
  });

  it('gives every call its own database', async () => {
    const [a, b] = await Promise.all([createTestDatabase(admin), createTestDatabase(admin)]);
    try {
      expect(a.name).not.toBe(b.name);
    } finally {
      await Promise.all([a.drop(), b.drop()]);
    }
  });
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
