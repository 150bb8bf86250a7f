import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/aeterna.js');

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** Starts `aeterna start` the way `npm start` does and waits for its banner. */
function start(env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, [BIN, 'start'], {
    cwd: ROOT,
    env: { ...process.env, AETERNA_PORT: '0', AETERNA_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 30 s:\n${out}`)), 30_000);
    const poll = setInterval(() => {
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match?.[1]) {
        clearTimeout(timer);
        clearInterval(poll);
        resolve({ child, url: match[1], output: () => out });
      }
    }, 50);
    child.on('exit', (code) => {
      clearTimeout(timer);
      clearInterval(poll);
      reject(new Error(`exited with ${code} before listening:\n${out}`));
    });
  });
}

function stop(child: ChildProcess): Promise<{ code: number | null; ms: number }> {
  const began = Date.now();
  return new Promise((resolve) => {
    child.on('exit', (code) => resolve({ code, ms: Date.now() - began }));
    child.kill('SIGTERM');
  });
}

function cli(args: string[], env: Record<string, string>): { code: number | null; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe('aeterna start (embedded mode) and aeterna token', () => {
  let dataDir: string;
  let env: Record<string, string>;
  const running: ChildProcess[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'aeterna-e2e-'));
    env = { AETERNA_DATA_DIR: dataDir };
  });
  afterAll(async () => {
    for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('starts, serves a token from the CLI, keeps data across a restart, and stops on SIGTERM', async () => {
    const first = await start(env);
    running.push(first.child);
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

    const stopped = await stop(first.child);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(10_000);

    const second = await start(env);
    running.push(second.child);
    // Same data dir: same signing secret (the old token still works) and the same rows.
    const got = await fetch(`${second.url}/v1/memories/${memory.id}`, { headers });
    expect(got.status).toBe(200);
    expect(((await got.json()) as { memory: { content: string } }).memory.content).toBe('the planner remembers this across restarts');
    expect((await stop(second.child)).code).toBe(0);
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
