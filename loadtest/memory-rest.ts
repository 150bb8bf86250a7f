/**
 * REST benchmark: uWS gateway vs a node:http baseline over the same core, embedded and PostgreSQL
 * mode. `npm run bench:rest -- --help`. Never part of `npm test`. See loadtest/README.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { createTestDatabase, startServices, type RunningServices, type TestDatabase } from '../test/support/index.js';
import { prng, searchQueries, shuffled } from './corpus.js';
import { foreignShare, postmasterOf, snapshot } from './cpu.js';
import {
  CONTENDED_ROUND,
  MODES,
  TRANSPORTS,
  badRounds,
  condense,
  contendedRounds,
  renderMarkdown,
  thinRounds,
  type ModeName,
  type ModeReport,
  type Round,
  type RunReport,
  type Transport,
} from './report.js';
import type { ReadyLine } from './rest-server.js';
import { armHardTimeout, intSetting, LOADTEST_DIR, loud, machineInfo, ownResources, RESULTS_DIR, say, sleep } from './settings.js';

const SERVER_ENTRY = path.join(LOADTEST_DIR, 'rest-server.ts');
const SEARCH_QUERIES = 50;
const QUIET_PROBE_MS = 3000;

const HELP = `usage: npm run bench:rest -- [options]     (every option also reads the BENCH_* variable named)
  --modes embedded,postgres   BENCH_MODES            which backends to run, in order
  --memories N                BENCH_MEMORIES         memories seeded into the benchmark tenant (10000)
  --seconds S                 BENCH_SECONDS          length of one measured round (5)
  --warmup S                  BENCH_WARMUP_SECONDS   warm-up per transport and scenario, discarded (2)
  --rounds R                  BENCH_ROUNDS           measured rounds per transport and scenario (3)
  --connections C             BENCH_CONNECTIONS      autocannon connections (16)
  --seed-concurrency K        BENCH_SEED_CONCURRENCY adds in flight while seeding (8)
  --other-tenants T           BENCH_OTHER_TENANTS    small neighbour tenants, 50 memories each (9)
  --ready-timeout S           BENCH_READY_TIMEOUT    seconds a server may take to seed and listen (600)
  --timeout S                 BENCH_TIMEOUT          hard limit for the whole run (1500)`;

interface BenchConfig {
  modes: ModeName[];
  memories: number;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  connections: number;
  seedConcurrency: number;
  otherTenants: number;
  otherTenantMemories: number;
  readyTimeoutSeconds: number;
  timeoutSeconds: number;
  postgresPoolSize: number;
}

function readConfig(argv: string[]): BenchConfig | undefined {
  const flags = ['modes', 'memories', 'seconds', 'warmup', 'rounds', 'connections', 'seed-concurrency', 'other-tenants', 'ready-timeout', 'timeout'];
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const flag of flags) options[flag] = { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true });
  if (values.help) return undefined;
  const raw = (flag: string, variable: string) => {
    const value = values[flag];
    return typeof value === 'string' ? value : process.env[variable];
  };
  const int = (flag: string, variable: string, fallback: number, min = 1, max?: number) =>
    intSetting(`--${flag} / ${variable}`, raw(flag, variable), fallback, min, max);
  const modes = (raw('modes', 'BENCH_MODES') ?? MODES.join(','))
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  const unknown = modes.filter((m) => !(MODES as readonly string[]).includes(m));
  if (unknown.length > 0 || modes.length === 0) throw new Error(`--modes / BENCH_MODES takes ${MODES.join(',')}; got "${modes.join(',')}"`);
  const connections = int('connections', 'BENCH_CONNECTIONS', 16, 1, 190);
  return {
    modes: modes as ModeName[],
    memories: int('memories', 'BENCH_MEMORIES', 10_000),
    seconds: int('seconds', 'BENCH_SECONDS', 5),
    warmupSeconds: int('warmup', 'BENCH_WARMUP_SECONDS', 2, 0),
    rounds: int('rounds', 'BENCH_ROUNDS', 3),
    connections,
    seedConcurrency: int('seed-concurrency', 'BENCH_SEED_CONCURRENCY', 8, 1, 256),
    otherTenants: int('other-tenants', 'BENCH_OTHER_TENANTS', 9, 0, 1000),
    otherTenantMemories: 50,
    readyTimeoutSeconds: int('ready-timeout', 'BENCH_READY_TIMEOUT', 600),
    timeoutSeconds: int('timeout', 'BENCH_TIMEOUT', 1500),
    // Above the connection count, so requests never queue for a database connection; the
    // throwaway server allows 200.
    postgresPoolSize: Math.max(20, connections + 4),
  };
}

const owned = ownResources();

// ---------------------------------------------------------------------------------------------
// The server child

interface ServerChild {
  ready: ReadyLine;
  pid: number;
  stop(): Promise<void>;
}

function childEnv(cfg: BenchConfig, dataDir: string, databaseUrl: string | undefined): NodeJS.ProcessEnv {
  // A developer's own AETERNA_DATABASE_URL would silently turn the embedded run into a second PostgreSQL run.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AETERNA_') && !key.startsWith('BENCH_')));
  return {
    ...inherited,
    AETERNA_HOST: '127.0.0.1',
    AETERNA_DATA_DIR: dataDir,
    AETERNA_JWT_SECRET: randomBytes(32).toString('hex'),
    AETERNA_LOG_LEVEL: 'warn',
    ...(databaseUrl ? { AETERNA_DATABASE_URL: databaseUrl, AETERNA_DATABASE_POOL_SIZE: String(cfg.postgresPoolSize) } : {}),
    BENCH_MEMORIES: String(cfg.memories),
    BENCH_SEED_CONCURRENCY: String(cfg.seedConcurrency),
    BENCH_OTHER_TENANTS: String(cfg.otherTenants),
    BENCH_OTHER_TENANT_MEMORIES: String(cfg.otherTenantMemories),
    BENCH_SERVER_MAX_SECONDS: String(cfg.timeoutSeconds),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  if (await Promise.race([exited.then(() => false), sleep(5000).then(() => true)])) {
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(2000)]);
  }
  owned.children.delete(child);
}

function isReadyLine(value: unknown): value is ReadyLine {
  const v = value as Partial<ReadyLine> | null;
  if (typeof v !== 'object' || v === null || v.ready !== true || typeof v.token !== 'string') return false;
  const ports = [v.uwsPort, v.nodePort, v.controlPort];
  return ports.every((p) => typeof p === 'number') && Array.isArray(v.ids) && v.ids.length > 0;
}

async function startServer(mode: ModeName, env: NodeJS.ProcessEnv, timeoutSeconds: number): Promise<ServerChild> {
  // Node itself with tsx as a loader, not the tsx CLI: one process, so its PID is the server's.
  const tsx = import.meta.resolve('tsx');
  const child = spawn(process.execPath, ['--import', tsx, SERVER_ENTRY], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  owned.children.add(child);
  const tail: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    say(`  [${mode} server] ${line}`);
  });
  const stop = () => stopChild(child);
  const ready = await new Promise<ReadyLine>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server was not ready within ${timeoutSeconds}s (see --ready-timeout)`)), timeoutSeconds * 1000);
    const settle = (fn: () => void) => {
      clearTimeout(timer);
      fn();
    };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return;
      }
      if (isReadyLine(parsed)) settle(() => resolve(parsed));
    });
    child.once('error', (err) => settle(() => reject(err)));
    child.once('exit', (code, signal) =>
      settle(() => reject(new Error(`the server exited before it was ready (code ${String(code)}, signal ${String(signal)}):\n    ${tail.join('\n    ')}`))),
    );
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  return { ready, pid: child.pid as number, stop };
}

// ---------------------------------------------------------------------------------------------
// Load

interface Scenario {
  name: string;
  /** A fresh request list per run, so every run (either transport) walks the same sequence from its start. */
  requests(ready: ReadyLine): autocannon.Request[];
}

/** One request template whose path or body advances through `items` on every send. */
function cycling(base: autocannon.Request, items: readonly string[], apply: (req: autocannon.Request, item: string) => autocannon.Request): autocannon.Request[] {
  let next = 0;
  return [{ ...base, setupRequest: (req) => apply(req, items[next++ % items.length] as string) }];
}

const auth = (ready: ReadyLine) => ({ authorization: `Bearer ${ready.token}` });

const SCENARIOS: Scenario[] = [
  {
    name: 'get-by-id',
    requests: (ready) =>
      cycling({ method: 'GET', headers: auth(ready) }, shuffled(ready.ids, prng(7)), (req, id) => ({ ...req, path: `/v1/memories/${id}` })),
  },
  {
    name: 'search',
    requests: (ready) =>
      cycling(
        { method: 'POST', path: '/v1/memories/search', headers: { ...auth(ready), 'content-type': 'application/json' } },
        searchQueries(SEARCH_QUERIES, 42).map((query) => JSON.stringify({ query, limit: 10 })),
        (req, body) => ({ ...req, body }),
      ),
  },
];

const REQUEST_TIMEOUT_SECONDS = 10;
const DRAIN_LIMIT_MS = 60_000;

/**
 * Until the server has finished the requests autocannon dropped when time ran out: it completes
 * them anyway, and on a slow scenario they would still hold the CPU and the database while the
 * other transport's run starts, billing one transport for the other's work.
 */
async function drain(controlPort: number): Promise<void> {
  const deadline = Date.now() + DRAIN_LIMIT_MS;
  for (;;) {
    const { inflight } = (await (await fetch(`http://127.0.0.1:${controlPort}/inflight`)).json()) as { inflight: number };
    if (inflight === 0) return;
    if (Date.now() > deadline) throw new Error(`the server still had ${inflight} requests in flight ${DRAIN_LIMIT_MS / 1000}s after a run ended`);
    await sleep(50);
  }
}

/** The server under load, and every process whose CPU time counts as ours. */
interface Target {
  ready: ReadyLine;
  pids: number[];
  /** The benchmark database: the PostgreSQL server behind it is ours too. */
  database?: string;
}

async function blast(
  target: Target,
  transport: Transport,
  requests: autocannon.Request[],
  seconds: number,
  connections: number,
): Promise<{ result: autocannon.Result; foreignCpu: number | undefined }> {
  const { ready } = target;
  const before = snapshot(target.pids, target.database);
  const result = await autocannon({
    url: `http://127.0.0.1:${transport === 'uws' ? ready.uwsPort : ready.nodePort}`,
    connections,
    duration: seconds,
    pipelining: 1,
    timeout: REQUEST_TIMEOUT_SECONDS,
    requests,
  });
  const foreignCpu = foreignShare(before, snapshot(target.pids, target.database));
  await drain(ready.controlPort);
  return { result, foreignCpu };
}

function toRound(scenario: string, transport: Transport, round: number, r: autocannon.Result, foreignCpu: number | undefined): Round {
  return {
    scenario,
    transport,
    round,
    rps: r['2xx'] / r.duration,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    requests: r.requests.total,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([code, s]) => [code, s.count])),
    seconds: r.duration,
    ...(foreignCpu === undefined ? {} : { foreignCpu }),
  };
}

/** One request per scenario and transport before any load: a 401 or an empty search here would void the run. */
async function preflight(ready: ReadyLine): Promise<void> {
  for (const transport of TRANSPORTS) {
    const base = `http://127.0.0.1:${transport === 'uws' ? ready.uwsPort : ready.nodePort}`;
    const headers = { ...auth(ready), 'content-type': 'application/json' };
    const got = await fetch(`${base}/v1/memories/${ready.ids[0] ?? ''}`, { headers });
    const found = await fetch(`${base}/v1/memories/search`, { method: 'POST', headers, body: JSON.stringify({ query: searchQueries(1, 42)[0], limit: 10 }) });
    const hits = ((await found.json()) as { results?: unknown[] }).results?.length ?? 0;
    await got.arrayBuffer();
    if (got.status !== 200 || found.status !== 200 || hits === 0) {
      throw new Error(`preflight on ${transport}: GET by id answered ${got.status}, search answered ${found.status} with ${hits} results`);
    }
  }
}

async function measure(mode: ModeName, target: Target, cfg: BenchConfig, report: ModeReport): Promise<void> {
  const { ready } = target;
  for (const scenario of SCENARIOS) {
    if (cfg.warmupSeconds > 0) {
      for (const transport of TRANSPORTS) await blast(target, transport, scenario.requests(ready), cfg.warmupSeconds, cfg.connections);
    }
    for (let round = 1; round <= cfg.rounds; round++) {
      for (const transport of TRANSPORTS) {
        const run = await blast(target, transport, scenario.requests(ready), cfg.seconds, cfg.connections);
        const r = toRound(scenario.name, transport, round, run.result, run.foreignCpu);
        report.rounds.push(r);
        const flag = r.errors + r.timeouts + r.non2xx > 0 ? '   <-- !!! FAILURES' : '';
        const foreign = r.foreignCpu === undefined ? '' : `  other CPU ${(r.foreignCpu * 100).toFixed(0)}%`;
        say(
          `[${mode}] ${scenario.name.padEnd(9)} round ${round}/${cfg.rounds} ${transport.padEnd(4)} ` +
            `${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50} ms  p90 ${r.p90} ms  p99 ${r.p99} ms  ` +
            `errors ${r.errors}  timeouts ${r.timeouts}  non-2xx ${r.non2xx}${foreign}${flag}`,
        );
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One mode: backing services, server, load, teardown

async function runMode(mode: ModeName, cfg: BenchConfig, report: ModeReport): Promise<void> {
  let services: RunningServices | undefined;
  let database: TestDatabase | undefined;
  let server: ServerChild | undefined;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `aeterna-bench-${mode}-`));
  owned.dirs.add(dataDir);
  const skip = (reason: string) => {
    report.status = 'skipped';
    report.reason = reason;
    loud(`${mode} mode SKIPPED: ${reason}`);
  };
  try {
    if (mode === 'postgres') {
      services = await startServices({ postgres: true, log: (line) => say(`  [services] ${line}`) });
      if (!services.databaseUrl) {
        skip(services.problems.join('; ') || 'PostgreSQL could not be started');
        return;
      }
      try {
        database = await createTestDatabase(services.databaseUrl);
      } catch (err) {
        skip(`could not create a database: ${(err as Error).message}`);
        return;
      }
    }
    say(`\n== ${mode}: starting the server and seeding ${cfg.memories} memories…`);
    server = await startServer(mode, childEnv(cfg, dataDir, database?.url), cfg.readyTimeoutSeconds);
    report.backend = server.ready.backend;
    report.seeding = server.ready.seeding;
    say(`== ${mode}: ready (uWS :${server.ready.uwsPort}, node :${server.ready.nodePort}; ${server.ready.backend.db}, ${server.ready.backend.vectors})`);
    await preflight(server.ready);
    if (database && postmasterOf(database.name) === undefined) say(`== ${mode}: PostgreSQL's processes not found; "other CPU" will include its work`);
    await measure(mode, { ready: server.ready, pids: [process.pid, server.pid], ...(database ? { database: database.name } : {}) }, cfg, report);
    report.status = 'ok';
  } catch (err) {
    report.status = 'failed';
    report.reason = (err as Error).message;
    loud(`${mode} mode FAILED: ${report.reason}`);
  } finally {
    await server?.stop();
    await database?.drop().catch((err: unknown) => say(`could not drop the benchmark database: ${(err as Error).message}`));
    await services?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    owned.dirs.delete(dataDir);
  }
}

// ---------------------------------------------------------------------------------------------

function finish(report: RunReport): void {
  report.finishedAt = new Date().toISOString();
  const atStart = report.machine['foreignCpuAtStart'];
  if (typeof atStart === 'number' && atStart > CONTENDED_ROUND) {
    report.notes.push(
      `other processes used ${(atStart * 100).toFixed(0)}% of the CPU just before the run started: ` +
        'absolute numbers are likely depressed and noisier than on an idle machine',
    );
  }
  for (const mode of report.modes) {
    // Here rather than after the last round, so a run cut short still reports what it measured.
    Object.assign(mode, condense(mode.rounds));
    if (mode.status !== 'ok') report.warnings.push(`${mode.mode} mode ${mode.status}: ${mode.reason ?? ''}`);
    report.warnings.push(...badRounds(mode.mode, mode.rounds));
    report.notes.push(...thinRounds(mode.mode, mode.rounds), ...contendedRounds(mode.mode, mode.rounds));
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = path.join(RESULTS_DIR, `memory-rest-${report.startedAt.replace(/[:.]/g, '-')}.json`);
  const md = path.join(RESULTS_DIR, 'memory-rest-latest.md');
  const markdown = renderMarkdown(report);
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(md, markdown);
  process.stdout.write(`\n${markdown}\n`);
  if (report.warnings.length > 0) loud(`${report.warnings.length} warning(s): these results include failures — see above`);
  say(`wrote ${path.relative(process.cwd(), json)} and ${path.relative(process.cwd(), md)}`);
}

async function main(): Promise<number> {
  const cfg = readConfig(process.argv.slice(2));
  if (!cfg) {
    say(HELP);
    return 0;
  }
  const report: RunReport = {
    startedAt: new Date().toISOString(),
    machine: machineInfo(['uWebSockets.js', 'autocannon']),
    config: { ...cfg, searchQueries: SEARCH_QUERIES, scenarios: SCENARIOS.map((s) => s.name) },
    modes: [],
    warnings: [],
    notes: [],
  };
  armHardTimeout(cfg.timeoutSeconds, (warning) => {
    report.warnings.push(warning);
    loud(`${warning}: writing partial results and exiting`);
    finish(report);
  });

  // Before anything of ours runs, whatever keeps the CPUs busy is someone else's work. (The load
  // average cannot say this: it lags by minutes and counts our own previous run.)
  const idle = snapshot([process.pid]);
  await sleep(QUIET_PROBE_MS);
  const atStart = foreignShare(idle, snapshot([process.pid]));
  if (atStart !== undefined) report.machine['foreignCpuAtStart'] = Number(atStart.toFixed(3));

  say(`memory-rest: ${cfg.modes.join(', ')}; ${cfg.memories} memories; ${cfg.rounds} rounds × ${cfg.seconds}s × ${cfg.connections} connections`);
  for (const mode of cfg.modes) {
    const modeReport: ModeReport = { mode, status: 'failed', reason: 'did not finish', rounds: [], medians: [], ratios: [] };
    report.modes.push(modeReport);
    await runMode(mode, cfg, modeReport);
  }
  finish(report);
  return report.warnings.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`memory-rest: ${err instanceof Error ? err.message : String(err)}\n\n${HELP}`);
    process.exit(2);
  },
);
