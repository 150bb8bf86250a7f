import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  TokenVerifier,
  assertId,
  hasPermission,
  isValidId,
  issueToken,
  loadOrCreateSigningSecret,
  requirePermission,
} from '../../src/tenancy/index.js';

const SECRET = 'unit-secret-0123456789abcdef0123456789abcdef';
const verifier = new TokenVerifier({ keys: { kind: 'secret', secret: SECRET } });

async function verifyError(token: string): Promise<{ code: string; message: string }> {
  try {
    await verifier.verify(token);
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected verification to fail');
}

function sign(claims: Record<string, unknown>, sub = 'alice'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
}

describe('ids', () => {
  it('accepts the documented id shape and nothing else', () => {
    for (const ok of ['acme', 'a', 'A1_b.c-d', 'dropbox', 'x'.repeat(128)]) expect(isValidId(ok), ok).toBe(true);
    for (const bad of ['', '-lead', '_x', '.x', 'x'.repeat(129), 'a b', "a'b", 'a;drop', 'ä', 'a/b', 42, null]) {
      expect(isValidId(bad), String(bad)).toBe(false);
    }
    expect(() => assertId('tenantId', "x' OR 1=1")).toThrow(/tenantId must match/);
  });
});

describe('TokenVerifier', () => {
  it('turns a valid token into a TenantContext', async () => {
    const token = await issueToken(SECRET, { tenantId: 'acme', userId: 'alice', agentId: 'planner', sessionId: 's1', roles: ['viewer', 'developer'], expiresIn: '1h' });
    expect(await verifier.verify(token)).toEqual({ tenantId: 'acme', userId: 'alice', agentId: 'planner', sessionId: 's1', roles: ['viewer', 'developer'] });
  });

  it('defaults roles to developer when the claim is absent', async () => {
    expect((await verifier.verify(await sign({ tenant: 'acme' }))).roles).toEqual(['developer']);
  });

  it('refuses tokens with missing or malformed claims', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{}, 'alice', /tenant/],
      [{ tenant: "acme'--" }, 'alice', /tenant/],
      [{ tenant: 'acme' }, 'bad user', /sub/],
      [{ tenant: 'acme', agent: 'a b' }, 'alice', /agent/],
      [{ tenant: 'acme', roles: ['superuser'] }, 'alice', /roles/],
      [{ tenant: 'acme', roles: [] }, 'alice', /roles/],
      [{ tenant: 'acme', roles: 'admin' }, 'alice', /roles/],
    ];
    for (const [claims, sub, message] of cases) {
      const err = await verifyError(await sign(claims, sub));
      expect(err.code, JSON.stringify(claims)).toBe('UNAUTHENTICATED');
      expect(err.message, JSON.stringify(claims)).toMatch(message);
    }
  });

  it('checks issuer and audience when configured', async () => {
    const strict = new TokenVerifier({ keys: { kind: 'secret', secret: SECRET }, issuer: 'aeterna', audience: 'api' });
    const good = await issueToken(SECRET, { tenantId: 'acme', userId: 'alice', roles: ['viewer'], expiresIn: '1h', issuer: 'aeterna', audience: 'api' });
    expect((await strict.verify(good)).tenantId).toBe('acme');
    const wrong = await issueToken(SECRET, { tenantId: 'acme', userId: 'alice', roles: ['viewer'], expiresIn: '1h', issuer: 'other', audience: 'api' });
    await expect(strict.verify(wrong)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });
});

describe('roles', () => {
  it('grants viewer < developer < admin', () => {
    const ctx = (role: 'viewer' | 'developer' | 'admin') => ({ tenantId: 't', userId: 'u', roles: [role] });
    expect(hasPermission(ctx('viewer'), 'memory:read')).toBe(true);
    expect(hasPermission(ctx('viewer'), 'memory:write')).toBe(false);
    expect(hasPermission(ctx('developer'), 'memory:write')).toBe(true);
    expect(hasPermission(ctx('developer'), 'memory:delete')).toBe(false);
    expect(hasPermission(ctx('admin'), 'memory:delete')).toBe(true);
    expect(() => requirePermission(ctx('viewer'), 'memory:write')).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
  });
});

describe('loadOrCreateSigningSecret', () => {
  it('creates the secret once with mode 0600 and reuses it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-secret-'));
    try {
      const [a, b] = await Promise.all([loadOrCreateSigningSecret(dir), loadOrCreateSigningSecret(dir)]);
      expect(a).toMatch(/^[0-9a-f]{64}$/);
      expect(b).toBe(a);
      expect(await loadOrCreateSigningSecret(dir)).toBe(a);
      expect((await stat(path.join(dir, 'jwt-secret'))).mode & 0o777).toBe(0o600);
      await writeFile(path.join(dir, 'jwt-secret'), 'damaged');
      await expect(loadOrCreateSigningSecret(dir)).rejects.toThrow(/not a 64-character hex secret/);
      expect(await readFile(path.join(dir, 'jwt-secret'), 'utf8')).toBe('damaged');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
