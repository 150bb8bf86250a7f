import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAllNodes, runCli as cli, startNode as start } from '../support/nodes.js';

// Spawned processes start slowly on a loaded 2-core machine: generous time, no timing assertions but the 10 s drain.
describe('aeterna start (embedded mode) and aeterna token', { timeout: 120_000 }, () => {
  let dataDir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-e2e-'));
    env = { AETERNA_DATA_DIR: dataDir };
  });
  afterAll(async () => {
    killAllNodes();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('starts, serves a token from the CLI, keeps data across a restart, and stops on SIGTERM', async () => {
    const first = await start(env);
    expect(first.output()).toContain('embedded mode');
    expect(first.output()).toContain('npx aeterna token');

    const issued = cli(['token', '--tenant', 'acme', '--user', 'alice', '--agent', 'planner', '--roles', 'developer'], env);
    expect(issued.code).toBe(0);
    const token = issued.stdout.trim();
    expect(token.split('.')).toHaveLength(3);

    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const created = await fetch(`${first.url}/v1/memories`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ layer: 'agent', content: 'the planner remembers this across restarts' }),
    });
    expect(created.status).toBe(201);
    const { memory } = (await created.json()) as { memory: { id: string; scopeId: string } };
    expect(memory.scopeId).toBe('planner');

    const stopped = await first.stop();
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(10_000);

    const second = await start(env);
    // Same data dir: same signing secret (the old token still works) and the same rows.
    const got = await fetch(`${second.url}/v1/memories/${memory.id}`, { headers });
    expect(got.status).toBe(200);
    expect(((await got.json()) as { memory: { content: string } }).memory.content).toBe('the planner remembers this across restarts');
    expect((await second.stop()).code).toBe(0);
  });

  it('refuses bad CLI input and bad configuration with exit code 2 and a message', () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['token', '--user', 'alice'], env, /--tenant and --user are required/],
      [['token', '--tenant', 'a b', '--user', 'alice'], env, /--tenant must match/],
      [['token', '--tenant', 'acme', '--user', 'alice', '--roles', 'god'], env, /--roles/],
      [['token', '--tenant', 'acme', '--user', 'alice', '--bogus'], env, /bogus/],
      [['frobnicate'], env, /unknown command/],
      [['start'], { ...env, AETERNA_PORT: 'eighty' }, /AETERNA_PORT/],
      [['start'], { ...env, AETERNA_DATABASE_URL: 'postgres://x@127.0.0.1:1/db' }, /AETERNA_JWT_SECRET or AETERNA_JWKS_URL/],
    ];
    for (const [args, e, message] of cases) {
      const res = cli(args, e);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr, args.join(' ')).toMatch(message);
    }
  });
});
