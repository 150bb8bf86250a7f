import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuthConfig } from '../config.js';
import type { TokenKeySource } from './jwt.js';

const SECRET_PATTERN = /^[0-9a-f]{64}$/;

/**
 * The embedded mode's JWT signing secret: generated once, kept in the data dir (mode 0600), so
 * tokens survive restarts. A damaged file is an error, never silently replaced: replacing it
 * would invalidate every token already handed out.
 */
export async function loadOrCreateSigningSecret(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'jwt-secret');
  try {
    const secret = (await readFile(file, 'utf8')).trim();
    if (!SECRET_PATTERN.test(secret)) throw new Error(`${file} is not a 64-character hex secret; delete it to generate a new one`);
    return secret;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('hex');
  try {
    // 'wx' fails if a concurrent start created it first; then theirs wins.
    await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateSigningSecret(dataDir);
    throw err;
  }
}

/**
 * Which keys verify tokens, and the secret that signs them when Aeterna issues its own: the
 * configured HS secret, else a JWKS (no local signing), else the data dir's generated secret.
 */
export async function resolveTokenKeys(auth: AuthConfig, dataDir: string): Promise<{ keys: TokenKeySource; signingSecret?: string }> {
  if (auth.secret) return { keys: { kind: 'secret', secret: auth.secret }, signingSecret: auth.secret };
  if (auth.jwksUrl) return { keys: { kind: 'jwks', url: auth.jwksUrl } };
  const secret = await loadOrCreateSigningSecret(dataDir);
  return { keys: { kind: 'secret', secret }, signingSecret: secret };
}
