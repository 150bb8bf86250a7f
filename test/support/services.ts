/**
 * Throwaway Redis and PostgreSQL servers for the test suite (and the load test).
 *
 * Every server runs from a fresh temp directory on a free loopback port and is stopped by the PID
 * we spawned, so the machine's own services (a PostgreSQL on 5432, a Redis on 6379) are never
 * connected to, reconfigured or signalled. Failures are reported in `problems` instead of thrown:
 * whether a missing server is a skip or a failure is the caller's decision.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface StartServicesOptions {
  redis?: boolean;
  postgres?: boolean;
  log?: (line: string) => void;
}

export interface RunningServices {
  redisUrl?: string;
  databaseUrl?: string;
  /** One sentence per service that could not be started, e.g. "PostgreSQL could not be started: …". */
  problems: string[];
  /** Idempotent; never throws. */
  stop(): Promise<void>;
}

export const REDIS_LABEL = 'Redis';
export const POSTGRES_LABEL = 'PostgreSQL';

const READY_TIMEOUT_MS = 30_000;
const OUTPUT_TAIL_CHARS = 4_000;
const PORT_ATTEMPTS = 3;

/** A server child we own. `signalOnStop` is what makes that server shut down cleanly. */
interface OwnedProcess {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
  output: OutputTail;
  signalOnStop: NodeJS.Signals;
  /** What to send from a synchronous 'exit' handler, where we cannot wait for a clean shutdown. */
  signalOnAbort: NodeJS.Signals;
  graceMs: number;
}

class OutputTail {
  private text = '';
  append(chunk: Buffer | string): void {
    this.text = (this.text + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
  }
  lines(max = 15): string {
    return this.text.trimEnd().split('\n').slice(-max).join('\n');
  }
  includes(needle: RegExp): boolean {
    return needle.test(this.text);
  }
}

// ---------------------------------------------------------------------------------------------
// Small process helpers

interface RunResult {
  code: number | null;
  output: string;
  error?: Error;
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const tail = new OutputTail();
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    } catch (error) {
      resolve({ code: null, output: '', error: error as Error });
      return;
    }
    child.stdout?.on('data', (d: Buffer) => tail.append(d));
    child.stderr?.on('data', (d: Buffer) => tail.append(d));
    child.on('error', (error) => resolve({ code: null, output: tail.lines(), error }));
    child.on('close', (code) => resolve({ code, output: tail.lines() }));
  });
}

function describeFailure(what: string, result: RunResult): string {
  if (result.error) return `${what} could not run: ${result.error.message}`;
  const output = result.output ? `:\n${indent(result.output)}` : ' (no output)';
  return `${what} exited with code ${String(result.code)}${output}`;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return false;
    await fs.access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  // sbin is often missing from a non-login root PATH, yet useradd/apt-get live there.
  for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin']) {
    const candidate = path.join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function elapsed(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)}s`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The kernel may hand the same port to someone else between close() and our server's bind; callers retry on EADDRINUSE. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not read the port the kernel picked'))));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Installing missing servers (Debian/Ubuntu, as root only)

let aptUpdated = false;

/** Returns undefined on success, otherwise the reason it could not be installed. */
async function aptInstall(pkg: string, log: (line: string) => void): Promise<string | undefined> {
  if (!isRoot()) return `it is not installed, and we are not root so cannot "apt-get install ${pkg}" (install it, or run as root)`;
  const aptGet = await findOnPath('apt-get');
  if (!aptGet) return `it is not installed and there is no apt-get to install ${pkg} with`;
  // Without this, debconf may stop and wait for an answer nobody will type.
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const started = Date.now();
  log(`installing ${pkg} with apt-get… (this can take a minute)`);
  let result = await run(aptGet, ['install', '-y', pkg], { env });
  if (result.code !== 0 && !aptUpdated) {
    // A fresh image usually has empty package lists; refresh them once for the whole run.
    aptUpdated = true;
    log('apt-get install failed; running apt-get update once and retrying…');
    const update = await run(aptGet, ['update'], { env });
    if (update.code !== 0) return describeFailure('apt-get update', update);
    result = await run(aptGet, ['install', '-y', pkg], { env });
  }
  if (result.code !== 0) return describeFailure(`apt-get install -y ${pkg}`, result);
  log(`installed ${pkg} in ${elapsed(started)}`);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Owning server processes

function spawnOwned(
  name: string,
  cmd: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; uid?: number; gid?: number; signalOnStop: NodeJS.Signals; signalOnAbort: NodeJS.Signals; graceMs: number },
): OwnedProcess {
  const output = new OutputTail();
  // detached: a Ctrl-C in the terminal reaches the runner and vitest, not the servers, so they
  // stay up until the runner has finished with them and shuts them down itself.
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: opts.env,
    cwd: opts.cwd,
    ...(opts.uid === undefined ? {} : { uid: opts.uid }),
    ...(opts.gid === undefined ? {} : { gid: opts.gid }),
  });
  child.stdout?.on('data', (d: Buffer) => output.append(d));
  child.stderr?.on('data', (d: Buffer) => output.append(d));
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    child.once('exit', () => resolve());
    child.once('error', (error) => {
      output.append(`\n${error.message}\n`);
      resolve();
    });
  });
  return { name, child, exited, output, signalOnStop: opts.signalOnStop, signalOnAbort: opts.signalOnAbort, graceMs: opts.graceMs };
}

function isRunning(proc: OwnedProcess): boolean {
  return proc.child.pid !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
}

async function stopOwned(proc: OwnedProcess): Promise<void> {
  const pid = proc.child.pid;
  if (pid === undefined || !isRunning(proc)) return;
  try {
    process.kill(pid, proc.signalOnStop);
  } catch {
    return; // already gone
  }
  const timedOut = await Promise.race([proc.exited.then(() => false), sleep(proc.graceMs).then(() => true)]);
  if (timedOut && isRunning(proc)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    await Promise.race([proc.exited, sleep(2_000)]);
  }
}

async function waitUntil(
  proc: OwnedProcess,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<'ready' | 'exited' | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isRunning(proc)) return 'exited';
    if (await probe()) return 'ready';
    if (!isRunning(proc)) return 'exited';
    await sleep(100);
  }
  return 'timeout';
}

// ---------------------------------------------------------------------------------------------
// Redis

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      reply += d.toString();
      // "-LOADING" and friends mean "up but not serving yet": keep polling.
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

async function startRedis(root: string, log: (line: string) => void, own: (p: OwnedProcess) => void): Promise<{ url: string } | { problem: string }> {
  let binary = await findOnPath('redis-server');
  if (!binary) {
    const reason = await aptInstall('redis-server', log);
    if (reason) return { problem: `redis-server: ${reason}` };
    binary = await findOnPath('redis-server');
    if (!binary) return { problem: 'redis-server is still not on PATH after apt-get installed it' };
  }
  const dir = path.join(root, 'redis');
  await fs.mkdir(dir, { recursive: true });
  let lastFailure = '';
  for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    const started = Date.now();
    const proc = spawnOwned(
      'redis-server',
      binary,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--logfile', ''],
      { env: process.env, cwd: dir, signalOnStop: 'SIGTERM', signalOnAbort: 'SIGKILL', graceMs: 5_000 },
    );
    own(proc);
    const outcome = await waitUntil(proc, () => redisPing(port), READY_TIMEOUT_MS);
    if (outcome === 'ready') {
      log(`Redis ready on 127.0.0.1:${port} (pid ${String(proc.child.pid)}, ${elapsed(started)})`);
      return { url: `redis://127.0.0.1:${port}` };
    }
    await stopOwned(proc);
    lastFailure =
      outcome === 'timeout'
        ? `redis-server did not answer PING on 127.0.0.1:${port} within ${READY_TIMEOUT_MS / 1000}s:\n${indent(proc.output.lines())}`
        : `redis-server exited during start-up:\n${indent(proc.output.lines())}`;
    if (!proc.output.includes(/address already in use/i)) break;
    log(`port ${port} was taken before redis-server could bind it; retrying on another port`);
  }
  return { problem: lastFailure };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

interface PgBinaries {
  initdb: string;
  postgres: string;
  version: string;
}

async function findPostgres(): Promise<PgBinaries | undefined> {
  // Debian keeps the server binaries out of PATH, one directory per major version.
  const base = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = (await fs.readdir(base)).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  } catch {
    // no Debian-style layout
  }
  for (const version of versions) {
    const bin = path.join(base, version, 'bin');
    const initdb = path.join(bin, 'initdb');
    const postgres = path.join(bin, 'postgres');
    if ((await isExecutable(initdb)) && (await isExecutable(postgres))) return { initdb, postgres, version };
  }
  const initdb = await findOnPath('initdb');
  const postgres = await findOnPath('postgres');
  if (initdb && postgres) return { initdb, postgres, version: 'from PATH' };
  return undefined;
}

interface Account {
  uid: number;
  gid: number;
}

async function postgresAccount(log: (line: string) => void): Promise<Account | { problem: string }> {
  const lookup = async (): Promise<Account | undefined> => {
    const result = await run('getent', ['passwd', 'postgres']);
    const fields = result.code === 0 ? result.output.trim().split(':') : [];
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    return fields.length >= 4 && Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  };
  const existing = await lookup();
  if (existing) return existing;
  const useradd = await findOnPath('useradd');
  if (!useradd) return { problem: 'PostgreSQL refuses to run as root, there is no "postgres" user to run it as, and no useradd to create one' };
  log('creating system user "postgres" (PostgreSQL refuses to run as root)…');
  const created = await run(useradd, ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
  if (created.code !== 0) return { problem: describeFailure('useradd --system postgres', created) };
  return (await lookup()) ?? { problem: 'created the "postgres" user but getent cannot find it' };
}

/** Walks up from `dir` and names the first directory `account` cannot pass through. */
async function untraversableAncestor(dir: string, account: Account): Promise<string | undefined> {
  for (let current = path.dirname(dir); ; current = path.dirname(current)) {
    const stat = await fs.stat(current);
    const bits = stat.uid === account.uid ? 0o100 : stat.gid === account.gid ? 0o010 : 0o001;
    if ((stat.mode & bits) === 0) return current;
    if (current === path.dirname(current)) return undefined;
  }
}

async function pgReady(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function startPostgres(root: string, log: (line: string) => void, own: (p: OwnedProcess) => void): Promise<{ url: string } | { problem: string }> {
  let binaries = await findPostgres();
  if (!binaries) {
    const reason = await aptInstall('postgresql', log);
    if (reason) return { problem: `PostgreSQL server binaries (initdb, postgres): ${reason}` };
    binaries = await findPostgres();
    if (!binaries) return { problem: 'initdb/postgres are still missing after apt-get installed postgresql' };
  }

  let account: Account | undefined;
  if (isRoot()) {
    const found = await postgresAccount(log);
    if ('problem' in found) return found;
    account = found;
  }
  const dataDir = path.join(root, 'pg');
  // initdb insists on a private data directory.
  await fs.mkdir(dataDir, { mode: 0o700 });
  if (account) {
    await fs.chown(dataDir, account.uid, account.gid);
    const blocked = await untraversableAncestor(dataDir, account);
    if (blocked) {
      return { problem: `the "postgres" user cannot enter ${blocked}, so it cannot reach its data directory; point TMPDIR at a world-traversable directory such as /tmp` };
    }
  }
  const asOwner = account ? { uid: account.uid, gid: account.gid } : {};
  // A clean environment: PGDATA/PGPORT/locale settings from the developer's shell must not leak in.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', HOME: dataDir };

  log(`initialising a PostgreSQL ${binaries.version} cluster…`);
  const initStarted = Date.now();
  // --no-locale: a fresh machine may not have the developer's locale generated, and C collation
  // keeps ORDER BY identical everywhere.
  const init = await run(binaries.initdb, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--no-locale'], {
    env,
    cwd: root,
    ...asOwner,
  });
  if (init.code !== 0) return { problem: describeFailure('initdb', init) };

  let lastFailure = '';
  for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    const proc = spawnOwned(
      'postgres',
      binaries.postgres,
      [
        '-D', dataDir, '-p', String(port), '-h', '127.0.0.1', '-k', dataDir,
        '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200',
      ],
      // SIGINT is PostgreSQL's "fast" shutdown (disconnect clients, checkpoint, exit); SIGTERM
      // would wait for every client to leave. SIGQUIT is "immediate": no checkpoint, for aborts.
      { env, cwd: root, ...asOwner, signalOnStop: 'SIGINT', signalOnAbort: 'SIGQUIT', graceMs: 10_000 },
    );
    own(proc);
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const outcome = await waitUntil(proc, () => pgReady(url), READY_TIMEOUT_MS);
    if (outcome === 'ready') {
      log(`PostgreSQL ready on 127.0.0.1:${port} (pid ${String(proc.child.pid)}, ${elapsed(initStarted)} including initdb)`);
      return { url };
    }
    await stopOwned(proc);
    lastFailure =
      outcome === 'timeout'
        ? `postgres did not accept connections on 127.0.0.1:${port} within ${READY_TIMEOUT_MS / 1000}s:\n${indent(proc.output.lines())}`
        : `postgres exited during start-up:\n${indent(proc.output.lines())}`;
    if (!proc.output.includes(/address already in use|could not bind/i)) break;
    log(`port ${port} was taken before postgres could bind it; retrying on another port`);
  }
  return { problem: lastFailure };
}

// ---------------------------------------------------------------------------------------------
// The Python client the JSON endpoint is tested with

export const PYTHON_CLIENT_LABEL = 'python3-socketio';
const PYTHON = '/usr/bin/python3';

async function pythonClientImports(): Promise<boolean> {
  return (await run(PYTHON, ['-c', 'import socketio, websocket, requests'], {})).code === 0;
}

/**
 * Debian's python3-socketio (with python3-websocket and python3-requests for its two transports): a real
 * non-JavaScript socket.io client. Returns the interpreter's path, or a problem sentence.
 */
export async function ensurePythonClient(log: (line: string) => void): Promise<{ python?: string; problem?: string }> {
  if (await pythonClientImports()) return { python: PYTHON };
  for (const pkg of ['python3-socketio', 'python3-websocket', 'python3-requests']) {
    const problem = await aptInstall(pkg, log);
    if (problem) return { problem: `${PYTHON_CLIENT_LABEL} could not be installed: ${problem}` };
  }
  return (await pythonClientImports()) ? { python: PYTHON } : { problem: `${PYTHON_CLIENT_LABEL} is installed but ${PYTHON} cannot import it` };
}

// ---------------------------------------------------------------------------------------------
// Public API

export async function startServices(opts: StartServicesOptions): Promise<RunningServices> {
  const log = opts.log ?? ((line: string) => console.error(`[services] ${line}`));
  const problems: string[] = [];
  const owned: OwnedProcess[] = [];
  const own = (p: OwnedProcess) => owned.push(p);
  let root: string | undefined;

  // Last-resort cleanup for a runner that dies on an exception: 'exit' handlers must be
  // synchronous, so the servers get a signal that needs no waiting and the directory goes now.
  const onExit = () => {
    for (const proc of owned) {
      if (isRunning(proc) && proc.child.pid !== undefined) {
        try {
          process.kill(proc.child.pid, proc.signalOnAbort);
        } catch {
          // already gone
        }
      }
    }
    if (root) rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  };
  // A handled signal no longer terminates the process, so after cleaning up we exit with the
  // code the shell would have reported for that signal.
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) log(`${signal} received: stopping the test servers…`);
    void stop().finally(() => process.exit(128 + (os.constants.signals[signal] ?? 1)));
  };
  const onSigint = () => onSignal('SIGINT');
  const onSigterm = () => onSignal('SIGTERM');
  const onSighup = () => onSignal('SIGHUP');
  // `on`, not `once`: a second Ctrl-C while we are stopping must not fall back to the default
  // action, which would kill the runner and leave the servers behind.
  process.on('exit', onExit);
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  process.on('SIGHUP', onSighup);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all(owned.map((proc) => stopOwned(proc).catch(() => undefined)));
      if (root) await fs.rm(root, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
      process.removeListener('exit', onExit);
      process.removeListener('SIGINT', onSigint);
      process.removeListener('SIGTERM', onSigterm);
      process.removeListener('SIGHUP', onSighup);
    })();
    return stopping;
  };

  const result: RunningServices = { problems, stop };
  if (!opts.redis && !opts.postgres) return result;

  try {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'aeterna-test-'));
    // mkdtemp makes it 0700; the unprivileged postgres user has to pass through it.
    await fs.chmod(root, 0o755);
    log(`temp dir ${root}`);
  } catch (error) {
    const reason = `could not create a temp directory in ${os.tmpdir()}: ${(error as Error).message}`;
    if (opts.redis) problems.push(`${REDIS_LABEL} could not be started: ${reason}`);
    if (opts.postgres) problems.push(`${POSTGRES_LABEL} could not be started: ${reason}`);
    return result;
  }
  const dir = root;

  // apt-get takes a lock, so two installs cannot overlap: install Redis (if needed) before
  // PostgreSQL starts looking. Once binaries exist the two start-ups proceed in parallel.
  const settle = async (label: string, start: () => Promise<{ url: string } | { problem: string }>): Promise<string | undefined> => {
    try {
      const outcome = await start();
      if ('url' in outcome) return outcome.url;
      problems.push(`${label} could not be started: ${outcome.problem}`);
    } catch (error) {
      problems.push(`${label} could not be started: ${(error as Error).message}`);
    }
    return undefined;
  };
  const needsRedisInstall = opts.redis === true && (await findOnPath('redis-server')) === undefined;
  const redisPromise = opts.redis ? settle(REDIS_LABEL, () => startRedis(dir, log, own)) : Promise.resolve(undefined);
  if (needsRedisInstall) await redisPromise;
  const postgresPromise = opts.postgres ? settle(POSTGRES_LABEL, () => startPostgres(dir, log, own)) : Promise.resolve(undefined);
  const [redisUrl, databaseUrl] = await Promise.all([redisPromise, postgresPromise]);
  if (redisUrl) result.redisUrl = redisUrl;
  if (databaseUrl) result.databaseUrl = databaseUrl;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Per-test databases

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/**
 * A fresh, uniquely named database on the server behind `adminUrl` (a superuser URL, as
 * `AETERNA_TEST_DATABASE_URL` is), so test files running in parallel never share tables.
 */
export async function createTestDatabase(adminUrl: string): Promise<TestDatabase> {
  const name = `aeterna_t_${randomBytes(6).toString('hex')}`;
  await withAdmin(adminUrl, (client) => client.query(`create database ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;

  let dropping: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropping ??= withAdmin(adminUrl, async (client) => {
      // A pool that is still reconnecting can slip in between terminate and drop; go again.
      for (let attempt = 1; ; attempt++) {
        await client.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name]);
        try {
          await client.query(`drop database if exists ${name}`);
          return;
        } catch (error) {
          const objectInUse = (error as { code?: string }).code === '55006';
          if (!objectInUse || attempt >= 5) throw error;
          await sleep(100 * attempt);
        }
      }
    });
    return dropping;
  };
  return { url: url.toString(), name, drop };
}

async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
