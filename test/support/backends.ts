import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config.js';
import { openCore, type Core } from '../../src/core.js';
import { createLogger } from '../../src/obs/index.js';
import { issueToken, type Role, type TenantContext } from '../../src/tenancy/index.js';
import { requireService } from './env.js';
import { createTestDatabase } from './services.js';

export const TEST_JWT_SECRET = 'test-secret-0123456789abcdef0123456789abcdef';

export interface TestCore {
  core: Core;
  config: Config;
  close(): Promise<void>;
}

export type BackendName = 'pglite' | 'postgres';

/**
 * The backends a core test runs against: embedded PGlite always, a real PostgreSQL when the test
 * runner started one (a fresh database per call, so files never see each other's rows).
 */
export function backends(): BackendName[] {
  return requireService('postgres') ? ['pglite', 'postgres'] : ['pglite'];
}

export async function openTestCore(backend: BackendName, env: Record<string, string> = {}): Promise<TestCore> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-test-'));
  const database = backend === 'postgres' ? await createTestDatabase(requireService('postgres') as string) : undefined;
  const config = loadConfig({
    AETERNA_DATA_DIR: dataDir,
    AETERNA_JWT_SECRET: TEST_JWT_SECRET,
    AETERNA_LOG_LEVEL: 'silent',
    ...(database ? { AETERNA_DATABASE_URL: database.url, AETERNA_DATABASE_POOL_SIZE: '20' } : {}),
    ...env,
  });
  const core = await openCore(config, createLogger('silent'));
  return {
    core,
    config,
    async close() {
      await core.close();
      await database?.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function tenantCtx(tenantId: string, userId = 'alice', roles: Role[] = ['developer'], extra: Partial<TenantContext> = {}): TenantContext {
  return { tenantId, userId, roles, ...extra };
}

export function tokenFor(ctx: { tenantId: string; userId: string; roles: readonly Role[]; agentId?: string }, expiresIn = '1h'): Promise<string> {
  return issueToken(TEST_JWT_SECRET, { ...ctx, expiresIn });
}

/** The error a promise rejects with, for asserting on its code and details. */
export async function rejectionOf(promise: Promise<unknown>): Promise<{ code?: string; message: string; details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (err) {
    return err as { code?: string; message: string; details?: Record<string, unknown> };
  }
  throw new Error('expected the promise to reject, but it resolved');
}
