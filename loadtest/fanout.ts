/**
 * WebSocket fan-out benchmark: N subscribers in one room, M events/s, deliveries/s and latency
 * from commit to receipt; the real gateway on one node and on two nodes via Redis, and plain
 * socket.io on uWS vs on node:http as the transport baseline. `npx tsx loadtest/fanout.ts --help`.
 * Never part of `npm test`. See "fanout" in loadtest/README.md.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { TEST_JWT_SECRET, tokenFor } from '../test/support/backends.js';
import { createTestDatabase, startServices, type RunningServices, type TestDatabase } from '../test/support/index.js';
import { prng } from './corpus.js';
import { foreignShare, snapshot, type CpuSnapshot } from './cpu.js';
import {
  GROUPS,
  condense,
  renderMarkdown,
  roundProblems,
  type FanoutReport,
  type FanoutRound,
  type GroupName,
  type GroupReport,
  type LabelNumbers,
  type Load,
  type NodeMemory,
  type ScenarioName,
  type WriteStats,
} from './fanout-report.js';
import {
  BENCH_SESSION,
  BENCH_TENANT,
  LatencyHistogram,
  benchContent,
  paced,
  roundTag,
  rpcTo,
  type ChildRpc,
  type ClientOps,
  type ConnectProgress,
  type ConnectRequest,
  type EmitRequest,
  type OpMap,
  type RoundSample,
  type ServerKind,
  type ServerOps,
  type ServerReady,
  type ServerStats,
} from './fanout-shared.js';
import { armHardTimeout, intSetting, LOADTEST_DIR, machineInfo, RESULTS_DIR, sleep } from './settings.js';

const SERVER_ENTRY = path.join(LOADTEST_DIR, 'fanout-server.ts');
const CLIENTS_ENTRY = path.join(LOADTEST_DIR, 'fanout-clients.ts');

const HELP = `usage: npx tsx loadtest/fanout.ts [options]     (every option also reads the FANOUT_* variable named)
  --subscribers N     FANOUT_SUBSCRIBERS   sockets in the one room, per scenario (1000)
  --rate M            FANOUT_RATE          events/s: REST writes for the gateway, synthetic for the rest (20)
  --stress-rate S     FANOUT_STRESS_RATE   synthetic events/s of the stress rounds; 0 skips them (100)
  --seconds S         FANOUT_SECONDS       length of one round (5)
  --rounds R          FANOUT_ROUNDS        measured rounds per scenario and load (3)
  --warmup S          FANOUT_WARMUP        warm-up round per scenario, discarded; 0 skips it (2)
  --workers W         FANOUT_WORKERS       subscriber worker processes (2)
  --batch B           FANOUT_BATCH         sockets each worker connects at once (250)
  --groups LIST       FANOUT_GROUPS        ${GROUPS.join(',')} (all)
  --drain S           FANOUT_DRAIN         seconds a round may take to deliver after its last event (10)
  --timeout S         FANOUT_TIMEOUT       hard limit for the whole run (600)`;

interface FanoutConfig {
  subscribers: number;
  rate: number;
  stressRate: number;
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  workers: number;
  batch: number;
  groups: GroupName[];
  drainSeconds: number;
  timeoutSeconds: number;
  /** REST writes in flight before the writer skips one (and says so). */
  maxWritesInFlight: number;
}

function readConfig(argv: string[]): FanoutConfig | undefined {
  const flags = ['subscribers', 'rate', 'stress-rate', 'seconds', 'rounds', 'warmup', 'workers', 'batch', 'groups', 'drain', 'timeout'];
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const flag of flags) options[flag] = { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true });
  if (values.help) return undefined;
  const variable = (flag: string) => `FANOUT_${flag.toUpperCase().replace(/-/g, '_')}`;
  const raw = (flag: string) => {
    const value = values[flag];
    return typeof value === 'string' ? value : process.env[variable(flag)];
  };
  const int = (flag: string, fallback: number, min = 1, max?: number) => intSetting(`--${flag} / ${variable(flag)}`, raw(flag), fallback, min, max);
  const groups = (raw('groups') ?? GROUPS.join(','))
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  const unknown = groups.filter((g) => !(GROUPS as readonly string[]).includes(g));
  if (unknown.length > 0 || groups.length === 0) throw new Error(`--groups / FANOUT_GROUPS takes ${GROUPS.join(',')}; got "${groups.join(',')}"`);
  return {
    subscribers: int('subscribers', 1000, 1, 100_000),
    rate: int('rate', 20, 1, 100_000),
    stressRate: int('stress-rate', 100, 0, 100_000),
    seconds: int('seconds', 5),
    rounds: int('rounds', 3),
    warmupSeconds: int('warmup', 2, 0),
    workers: int('workers', 2, 1, 64),
    batch: int('batch', 250, 1, 10_000),
    groups: groups as GroupName[],
    drainSeconds: int('drain', 10),
    timeoutSeconds: int('timeout', 600),
    maxWritesInFlight: 32,
  };
}

// ---------------------------------------------------------------------------------------------
// Everything this run owns, so that an early exit (hard timeout, Ctrl-C, a crash) still releases it.

const owned = { children: new Set<ChildProcess>(), dirs: new Set<string>() };

// A signal's default action skips 'exit' handlers; exiting explicitly runs them.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => process.exit(128 + os.constants.signals[signal]));
process.on('exit', () => {
  for (const child of owned.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of owned.dirs) rmSync(dir, { recursive: true, force: true });
});

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

function loud(line: string): void {
  say(`\n!!! ${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// Children: servers and subscriber workers, each a Node process with tsx as a loader (so its PID
// is the process doing the work) and an IPC channel for requests.

interface Child<Ops extends OpMap> {
  name: string;
  pid: number;
  rpc: ChildRpc<Ops>;
  /** Warning and error lines the child logged (pino levels 40+), e.g. a relay losing its lease under load. */
  logged: string[];
  /** The first event of this name the child sends. */
  once(event: string, timeoutMs: number): Promise<unknown>;
  stop(): Promise<void>;
}

function startChild<Ops extends OpMap>(name: string, entry: string, args: string[], env: NodeJS.ProcessEnv, onEvent: (event: string, data: unknown) => void = () => {}): Child<Ops> {
  const child = fork(entry, args, {
    execArgv: ['--import', import.meta.resolve('tsx'), '--expose-gc'],
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  owned.children.add(child);
  const tail: string[] = [];
  const logged: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      const level = /"level":(\d+)/.exec(line)?.[1];
      if (level !== undefined && Number(level) >= 40) logged.push(/"msg":"([^"]*)"/.exec(line)?.[1] ?? line);
      say(`  [${name}] ${line}`);
    });
  }
  const waiters = new Map<string, (data: unknown) => void>();
  const rpc = rpcTo<Ops>(child, name, (event, data) => {
    waiters.get(event)?.(data);
    waiters.delete(event);
    onEvent(event, data);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    name,
    pid: child.pid as number,
    rpc,
    logged,
    once(event, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name} sent no "${event}" within ${timeoutMs / 1000}s`)), timeoutMs);
        waiters.set(event, (data) => {
          clearTimeout(timer);
          resolve(data);
        });
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`${name} exited (code ${String(child.exitCode)}) before "${event}":\n    ${tail.join('\n    ')}`));
        });
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        if (await Promise.race([exited.then(() => false), sleep(5000).then(() => true)])) {
          child.kill('SIGKILL');
          await Promise.race([exited, sleep(2000)]);
        }
      }
      owned.children.delete(child);
    },
  };
}

interface ServerHandle extends Child<ServerOps> {
  label: string;
  ready: ServerReady;
}

async function startServer(kind: ServerKind, label: string, env: NodeJS.ProcessEnv, cfg: FanoutConfig): Promise<ServerHandle> {
  const child = startChild<ServerOps>(`${label} server`, SERVER_ENTRY, [kind], { ...env, FANOUT_SERVER_MAX_SECONDS: String(cfg.timeoutSeconds + 60) });
  try {
    const ready = (await child.once('ready', 120_000)) as ServerReady;
    say(`== ${label}: ${kind} server ready on 127.0.0.1:${ready.port} (pid ${ready.pid}; ${Object.values(ready.detail).join(', ')})`);
    return { ...child, label, ready };
  } catch (err) {
    await child.stop();
    throw err;
  }
}

type Worker = Child<ClientOps>;

function startWorkers(cfg: FanoutConfig, progress: (worker: number, p: ConnectProgress) => void): Worker[] {
  return Array.from({ length: cfg.workers }, (_, i) =>
    startChild<ClientOps>(`clients ${i + 1}`, CLIENTS_ENTRY, [], process.env, (event, data) => {
      if (event === 'progress') progress(i, data as ConnectProgress);
    }),
  );
}

/** `total` split as evenly as possible over `parts`. */
const shares = (total: number, parts: number): number[] => Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));

/** Per label and worker, how many are connected: the progress line sums them. */
class ConnectMeter {
  private readonly counts = new Map<string, number[]>();
  private readonly started = new Map<string, number>();
  private readonly totals = new Map<string, number>();

  begin(label: string, total: number, workers: number): void {
    this.counts.set(label, new Array<number>(workers).fill(0));
    this.started.set(label, performance.now());
    this.totals.set(label, total);
  }

  update(worker: number, p: ConnectProgress): void {
    const list = this.counts.get(p.label);
    if (!list) return;
    list[worker] = p.connected;
    const sum = list.reduce((a, b) => a + b, 0);
    const seconds = (performance.now() - (this.started.get(p.label) ?? 0)) / 1000;
    say(`  [${p.label}] connected ${sum}/${this.totals.get(p.label) ?? '?'} (${(sum / seconds).toFixed(0)}/s)`);
  }
}

async function connectAll(
  workers: Worker[],
  meter: ConnectMeter,
  req: Omit<ConnectRequest, 'count'>,
  total: number,
): Promise<{ label: string; sockets: number; seconds: number }> {
  meter.begin(req.label, total, workers.length);
  const started = performance.now();
  const counts = shares(total, workers.length);
  // Generous: 10,000 sockets through a busy gateway on two cores take a while, and a stuck one fails the call.
  await Promise.all(workers.map((w, i) => ((counts[i] ?? 0) > 0 ? w.rpc.call('connect', { ...req, count: counts[i] ?? 0 }, 600_000) : undefined)));
  return { label: req.label, sockets: total, seconds: (performance.now() - started) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// Measuring

async function gcStats(servers: readonly ServerHandle[]): Promise<ServerStats[]> {
  return Promise.all(servers.map((s) => s.rpc.call('stats', { gc: true })));
}

function memoryOf(group: GroupName, servers: readonly ServerHandle[], before: ServerStats[], after: ServerStats[]): NodeMemory[] {
  return servers.map((s, i) => {
    const b = before[i] as ServerStats;
    const a = after[i] as ServerStats;
    const per = (delta: number) => (a.connections > 0 ? delta / a.connections : Number.NaN);
    return {
      group,
      label: s.label,
      connections: a.connections,
      rssBefore: b.rss,
      rssAfter: a.rss,
      heapBefore: b.heapUsed,
      heapAfter: a.heapUsed,
      rssPerConnection: per(a.rss - b.rss),
      heapPerConnection: per(a.heapUsed - b.heapUsed),
    };
  });
}

/**
 * Processes of ours besides the children, for the other-CPU figure: Redis, and PostgreSQL's
 * postmaster (snapshot() also finds that one, with its whole tree, through the database name).
 */
const servicePids = new Set<number>();

interface Context {
  cfg: FanoutConfig;
  workers: Worker[];
  /** Every server of the group: their CPU counts as ours. */
  all: ServerHandle[];
  database?: string;
  nextRound: () => number;
}

interface Variant {
  scenario: ScenarioName;
  /** The servers whose subscribers receive this scenario's events, and whose CPU it costs. */
  servers: ServerHandle[];
  /** Labels of the subscribers that should receive. */
  labels: string[];
  drive: { kind: 'emit'; via: ServerHandle; rooms: EmitRequest['rooms'] } | { kind: 'write'; url: string; token: string };
}

interface Driven {
  events: number;
  lateMs: number;
  writes?: WriteStats;
}

/**
 * REST writes at `rate` for `seconds`, open loop, to one node: each a new session memory tagged
 * with the round. Waits for every write to be answered, so the committed count is final.
 */
async function writeRound(url: string, token: string, round: number, rate: number, seconds: number, maxInFlight: number): Promise<Driven> {
  const random = prng(round);
  const latency = new LatencyHistogram();
  const stats: WriteStats = { attempted: 0, committed: 0, merged: 0, failed: 0, skipped: 0, statuses: {}, p50: 0, p99: 0 };
  const inflight = new Set<Promise<void>>();
  const pace = await paced(rate, seconds, (i) => {
    if (inflight.size >= maxInFlight) {
      stats.skipped += 1;
      return;
    }
    stats.attempted += 1;
    const started = performance.now();
    const body = JSON.stringify({ layer: 'session', sessionId: BENCH_SESSION, content: benchContent(random, round, i), tags: ['fanout'], metadata: roundTag(round, i) });
    const request = fetch(`${url}/v1/memories`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body })
      .then(async (res) => {
        await res.arrayBuffer();
        latency.record(performance.now() - started);
        stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
        if (res.status === 201) stats.committed += 1;
        else if (res.status === 200) stats.merged += 1;
        else stats.failed += 1;
      })
      .catch(() => {
        stats.failed += 1;
      })
      .finally(() => inflight.delete(request));
    inflight.add(request);
  });
  await Promise.all(inflight);
  stats.p50 = latency.percentile(0.5);
  stats.p99 = latency.percentile(0.99);
  return { events: stats.committed, lateMs: pace.maxLateMs, writes: stats };
}

async function drive(variant: Variant, round: number, rate: number, seconds: number, cfg: FanoutConfig): Promise<Driven> {
  const d = variant.drive;
  if (d.kind === 'write') return writeRound(d.url, d.token, round, rate, seconds, cfg.maxWritesInFlight);
  const paced = await d.via.rpc.call('emit', { round, rate, seconds, rooms: d.rooms }, (seconds + 120) * 1000);
  return { events: paced.fired, lateMs: paced.maxLateMs };
}

/** Sockets connected for these labels as the workers see them, and the workers' CPU so far. */
async function workerState(workers: readonly Worker[], labels: readonly string[]): Promise<{ subscribers: number; cpuUs: number }> {
  const health = await Promise.all(workers.map((w) => w.rpc.call('health', {})));
  return {
    subscribers: health.reduce((n, h) => n + labels.reduce((m, label) => m + (h.connected[label] ?? 0), 0), 0),
    cpuUs: health.reduce((n, h) => n + h.cpuUs, 0),
  };
}

/**
 * After a round that fell behind, until its backlog stops arriving: leftovers still being sent
 * and decoded would otherwise eat into the next round's CPU and bill it for this one's.
 */
async function quiesce(workers: readonly Worker[], limitSeconds: number): Promise<void> {
  const stray = async () => (await Promise.all(workers.map((w) => w.rpc.call('health', {})))).reduce((n, h) => n + h.stray, 0);
  const deadline = Date.now() + limitSeconds * 1000;
  let seen = await stray();
  say(`  (waiting for the backlog to stop arriving before the next round)`);
  while (Date.now() < deadline) {
    await sleep(500);
    const now = await stray();
    if (now === seen) return;
    seen = now;
  }
}

async function runRound(ctx: Context, variant: Variant, load: Load, rate: number, seconds: number, roundNo: number): Promise<FanoutRound> {
  const { cfg, workers } = ctx;
  const id = ctx.nextRound();
  const { subscribers, cpuUs: clientCpuBefore } = await workerState(workers, variant.labels);
  const pids = [process.pid, ...ctx.all.map((s) => s.pid), ...workers.map((w) => w.pid), ...servicePids];
  const statsBefore = await Promise.all(variant.servers.map((s) => s.rpc.call('stats', { gc: false })));
  const cpuBefore: CpuSnapshot | undefined = snapshot(pids, ctx.database);
  const started = Date.now();

  const driven = await drive(variant, id, rate, seconds, cfg);
  const expected = driven.events * subscribers;
  const drainStarted = Date.now();
  for (;;) {
    const counts = await Promise.all(workers.map((w) => w.rpc.call('count', { round: id })));
    if (counts.reduce((n, c) => n + c.received, 0) >= expected || Date.now() - drainStarted > cfg.drainSeconds * 1000) break;
    await sleep(50);
  }
  const drainSeconds = (Date.now() - drainStarted) / 1000;
  const statsAfter = await Promise.all(variant.servers.map((s) => s.rpc.call('stats', { gc: false })));
  const foreignCpu = foreignShare(cpuBefore, snapshot(pids, ctx.database));
  const samples = await Promise.all(workers.map((w) => w.rpc.call('collect', { round: id })));
  const clientCpuUs = (await workerState(workers, [])).cpuUs - clientCpuBefore;
  if (samples.reduce((n, s) => n + Object.values(s).reduce((m, x) => m + x.received, 0), 0) < expected) await quiesce(workers, cfg.drainSeconds);

  const all = new LatencyHistogram();
  const byLabel = new Map<string, { hist: LatencyHistogram; delivered: number }>();
  let delivered = 0;
  let last = started;
  for (const perLabel of samples) {
    for (const [label, sample] of Object.entries(perLabel) as Array<[string, RoundSample]>) {
      delivered += sample.received;
      last = Math.max(last, sample.last);
      all.add(sample.latency, sample.negative);
      const entry = byLabel.get(label) ?? { hist: new LatencyHistogram(), delivered: 0 };
      entry.hist.add(sample.latency);
      entry.delivered += sample.received;
      byLabel.set(label, entry);
    }
  }
  const wallSeconds = (Date.now() - started) / 1000;
  const cpuUs = statsAfter.reduce((n, s, i) => n + s.cpuUs - (statsBefore[i] as ServerStats).cpuUs, 0);
  const loops = statsAfter.map((s, i) => {
    const b = statsBefore[i] as ServerStats;
    const active = s.loopActiveMs - b.loopActiveMs;
    const total = active + s.loopIdleMs - b.loopIdleMs;
    return total > 0 ? active / total : 0;
  });
  return {
    scenario: variant.scenario,
    load,
    round: roundNo,
    rate,
    seconds,
    events: driven.events,
    subscribers,
    expected,
    delivered,
    deliveriesPerSec: delivered / Math.max(seconds, (last - started) / 1000),
    p50: all.percentile(0.5),
    p90: all.percentile(0.9),
    p99: all.percentile(0.99),
    max: all.percentile(1),
    negative: all.negative,
    // What the server holds, not what the clients believe: a server that dropped sockets (a ping
    // timeout while its loop was blocked) would otherwise pass for one delivering to fewer subscribers.
    serverConnections: statsBefore.reduce((n, s) => n + s.connections, 0),
    serverCpuUsPerDelivery: delivered > 0 ? cpuUs / delivered : Number.NaN,
    clientCpuUsPerDelivery: delivered > 0 ? clientCpuUs / delivered : Number.NaN,
    serverCores: cpuUs / 1e6 / wallSeconds,
    serverLoop: Math.max(0, ...loops),
    paceLateMs: driven.lateMs,
    byLabel: Object.fromEntries(
      [...byLabel].map(([label, e]): [string, LabelNumbers] => [label, { delivered: e.delivered, p50: e.hist.percentile(0.5), p99: e.hist.percentile(0.99) }]),
    ),
    ...(driven.writes ? { writes: driven.writes } : {}),
    drainSeconds,
    load1: os.loadavg()[0] ?? 0,
    ...(foreignCpu === undefined ? {} : { foreignCpu }),
  };
}

function describeRound(group: GroupName, r: FanoutRound): string {
  const labels = Object.keys(r.byLabel).length > 1 ? `  [${Object.entries(r.byLabel).map(([l, n]) => `${l} p50 ${n.p50} p99 ${n.p99}`).join('; ')}]` : '';
  const writes = r.writes ? `  writes p50 ${r.writes.p50} p99 ${r.writes.p99} ms` : '';
  const short = r.delivered < r.expected ? `   <-- !!! ${r.expected - r.delivered} MISSING` : '';
  return (
    `[${group}] ${r.scenario.padEnd(20)} ${r.load.padEnd(7)} round ${r.round}: ${r.events} events × ${r.subscribers} → ` +
    `${Math.round(r.deliveriesPerSec).toLocaleString('en-US').padStart(9)} deliveries/s  p50 ${r.p50} ms  p99 ${r.p99} ms  max ${r.max} ms  ` +
    `server ${r.serverCpuUsPerDelivery.toFixed(2)} µs/delivery, loop ${(r.serverLoop * 100).toFixed(0)}%; clients ${r.clientCpuUsPerDelivery.toFixed(2)} µs/delivery${writes}${labels}${short}`
  );
}

/**
 * A warm-up round per variant (discarded), then `rounds` rounds of every variant in turn, so
 * drift over the run (heap growth, page cache, a neighbour's compile) hits each alike.
 */
async function measure(ctx: Context, group: GroupReport, variants: Variant[], loads: Array<{ load: Load; rate: number; only?: (v: Variant) => boolean }>): Promise<void> {
  const { cfg } = ctx;
  if (cfg.warmupSeconds > 0) {
    for (const variant of variants) {
      say(`[${group.group}] warm-up ${variant.scenario} (${cfg.warmupSeconds}s at ${cfg.rate}/s)`);
      await runRound(ctx, variant, 'nominal', cfg.rate, cfg.warmupSeconds, 0);
    }
  }
  for (const { load, rate, only } of loads) {
    const mine = variants.filter((v) => !only || only(v));
    for (let round = 1; round <= cfg.rounds; round++) {
      for (const variant of mine) {
        say(`[${group.group}] ${variant.scenario} ${load} round ${round}/${cfg.rounds}: ${rate} events/s for ${cfg.seconds}s…`);
        const r = await runRound(ctx, variant, load, rate, cfg.seconds, round);
        group.rounds.push(r);
        say(describeRound(group.group, r));
      }
    }
  }
}

function loadsOf(cfg: FanoutConfig, stressable: (v: Variant) => boolean): Array<{ load: Load; rate: number; only?: (v: Variant) => boolean }> {
  return [{ load: 'nominal', rate: cfg.rate }, ...(cfg.stressRate > 0 ? [{ load: 'stress' as const, rate: cfg.stressRate, only: stressable }] : [])];
}

// ---------------------------------------------------------------------------------------------
// The groups

async function withWorkers(cfg: FanoutConfig, run: (workers: Worker[], meter: ConnectMeter) => Promise<void>): Promise<void> {
  const meter = new ConnectMeter();
  const workers = startWorkers(cfg, (i, p) => meter.update(i, p));
  try {
    await run(workers, meter);
  } finally {
    await Promise.allSettled(workers.map((w) => w.rpc.call('close', {}, 30_000)));
    await Promise.allSettled(workers.map((w) => w.stop()));
  }
}

/** Throws when a worker lost sockets: a round with silently fewer subscribers measures something else. */
async function checkHealth(workers: readonly Worker[], report: FanoutReport, group: GroupName): Promise<void> {
  const health = await Promise.all(workers.map((w) => w.rpc.call('health', {})));
  const lost: string[] = [];
  for (const h of health) {
    for (const [label, reasons] of Object.entries(h.disconnects)) {
      for (const [reason, count] of Object.entries(reasons)) lost.push(`${label}: ${count} × ${reason}`);
    }
  }
  if (lost.length > 0) report.warnings.push(`${group}: subscribers were disconnected during the run (${lost.join(', ')})`);
  const stray = health.reduce((n, h) => n + h.stray, 0);
  if (stray > 0) report.notes.push(`${group}: ${stray} deliveries arrived after their round was collected (past the drain limit) and were not counted`);
}

/** Servers that logged warnings get a note: what a node complains about under load is part of the result. */
function noteLogged(servers: readonly ServerHandle[], report: FanoutReport, group: GroupName): void {
  for (const s of servers) {
    if (s.logged.length === 0) continue;
    const distinct = [...new Set(s.logged.map((m) => m.replace(/\d+/g, 'N')))];
    report.notes.push(`${group}: server ${s.label} logged ${s.logged.length} warning(s): ${distinct.slice(0, 3).map((m) => `"${m}"`).join(', ')}`);
  }
}

/** Plain socket.io on uWS and on node:http, both up at once, so their rounds can alternate. */
async function runTransport(ctx: Omit<Context, 'all' | 'workers'>, group: GroupReport, report: FanoutReport): Promise<void> {
  const { cfg } = ctx;
  const servers: ServerHandle[] = [];
  try {
    servers.push(await startServer('uws', 'uws', process.env, cfg), await startServer('node', 'node', process.env, cfg));
    group.servers = servers.map((s) => ({ ...s.ready, label: s.label }));
    const [uws, node] = servers as [ServerHandle, ServerHandle];
    await withWorkers(cfg, async (workers, meter) => {
      const before = await gcStats(servers);
      for (const s of servers) {
        say(`== ${group.group}: connecting ${cfg.subscribers} subscribers to ${s.label}…`);
        group.connect.push(await connectAll(workers, meter, { label: s.label, url: `http://127.0.0.1:${s.ready.port}`, batch: cfg.batch }, cfg.subscribers));
      }
      await sleep(1000);
      group.memory.push(...memoryOf(group.group, servers, before, await gcStats(servers)));
      const full: Context = { ...ctx, workers, all: servers };
      const variants: Variant[] = [
        { scenario: 'uws', servers: [uws], labels: ['uws'], drive: { kind: 'emit', via: uws, rooms: 'each' } },
        { scenario: 'node', servers: [node], labels: ['node'], drive: { kind: 'emit', via: node, rooms: 'each' } },
        { scenario: 'uws-multiroom', servers: [uws], labels: ['uws'], drive: { kind: 'emit', via: uws, rooms: 'together' } },
      ];
      await measure(full, group, variants, loadsOf(cfg, () => true));
      await checkHealth(workers, report, group.group);
    });
    group.status = 'ok';
  } finally {
    noteLogged(servers, report, group.group);
    await Promise.allSettled(servers.map((s) => s.stop()));
  }
}

/**
 * The real gateway in cluster configuration (PostgreSQL; Redis with two nodes): subscribers
 * `subscribe` to the session room, REST writes on node A commit memories, the relay broadcasts.
 */
async function runGateway(
  nodes: 1 | 2,
  ctx: Omit<Context, 'all' | 'workers' | 'database'>,
  services: RunningServices,
  group: GroupReport,
  report: FanoutReport,
  dataDir: string,
): Promise<void> {
  const { cfg } = ctx;
  if (!services.databaseUrl || (nodes === 2 && !services.redisUrl)) {
    group.status = 'skipped';
    group.reason = services.problems.join('; ') || 'PostgreSQL/Redis could not be started';
    loud(`${group.group} SKIPPED: ${group.reason}`);
    return;
  }
  let database: TestDatabase | undefined;
  const servers: ServerHandle[] = [];
  try {
    database = await createTestDatabase(services.databaseUrl);
    // Only what the benchmark sets: a developer's own AETERNA_* must not change what is measured.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AETERNA_') && !key.startsWith('FANOUT_')));
    const env = (nodeId: string): NodeJS.ProcessEnv => ({
      ...inherited,
      AETERNA_DATABASE_URL: database?.url,
      ...(nodes === 2 ? { AETERNA_REDIS_URL: services.redisUrl } : {}),
      AETERNA_JWT_SECRET: TEST_JWT_SECRET,
      AETERNA_DATA_DIR: dataDir,
      AETERNA_NODE_ID: nodeId,
      AETERNA_LOG_LEVEL: 'warn',
      // The default (10,000 per node) is exactly the 10k run's size; the benchmark measures fan-out, not the cap.
      AETERNA_TENANT_MAX_CONNECTIONS: String(cfg.subscribers * 2),
    });
    // A first, alone: it takes every relay lease on start, so the relay (and its database reads) runs on A, where the writes land.
    servers.push(await startServer('gateway', 'A', env('fanout-a'), cfg));
    if (nodes === 2) servers.push(await startServer('gateway', 'B', env('fanout-b'), cfg));
    group.servers = servers.map((s) => ({ ...s.ready, label: s.label }));
    const a = servers[0] as ServerHandle;
    const reader = await tokenFor({ tenantId: BENCH_TENANT, userId: 'reader', roles: ['developer'] }, '2h');
    const writer = await tokenFor({ tenantId: BENCH_TENANT, userId: 'writer', roles: ['developer'] }, '2h');
    await withWorkers(cfg, async (workers, meter) => {
      const before = await gcStats(servers);
      const perNode = shares(cfg.subscribers, servers.length);
      for (const [i, s] of servers.entries()) {
        say(`== ${group.group}: connecting and subscribing ${perNode[i]} subscribers on node ${s.label}…`);
        const req = { label: s.label, url: `http://127.0.0.1:${s.ready.port}`, batch: cfg.batch, token: reader, subscribe: { layers: ['session'] as ['session'], scopes: { sessionId: BENCH_SESSION } } };
        group.connect.push(await connectAll(workers, meter, req, perNode[i] ?? 0));
      }
      await sleep(1000);
      group.memory.push(...memoryOf(group.group, servers, before, await gcStats(servers)));
      const full: Context = { ...ctx, workers, all: servers, database: database?.name as string };
      const labels = servers.map((s) => s.label);
      const prefix = nodes === 1 ? 'gateway-1node' : 'gateway-2node';
      const variants: Variant[] = [
        { scenario: prefix, servers, labels, drive: { kind: 'write', url: `http://127.0.0.1:${a.ready.port}`, token: writer } },
        { scenario: `${prefix}-direct`, servers, labels, drive: { kind: 'emit', via: a, rooms: 'each' } },
      ];
      // Stress only the synthetic path: the REST writer would measure PostgreSQL's insert rate instead.
      await measure(full, group, variants, loadsOf(cfg, (v) => v.drive.kind === 'emit'));
      await checkHealth(workers, report, group.group);
    });
    group.status = 'ok';
  } finally {
    noteLogged(servers, report, group.group);
    await Promise.allSettled(servers.map((s) => s.stop()));
    await database?.drop().catch((err: unknown) => say(`could not drop the benchmark database: ${(err as Error).message}`));
  }
}

// ---------------------------------------------------------------------------------------------

/** The soft "Max open files" of this process (inherited by the children), or undefined off Linux. */
function openFileLimit(): { soft: number; hard: number } | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const [soft, hard] = (line?.match(/\d+|unlimited/g) ?? []).map((v) => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v)));
    return soft !== undefined && hard !== undefined ? { soft, hard } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every socket is a file descriptor: a server holds all N, a worker its share of both transport
 * servers' sockets. Children inherit this process's limit and cannot raise it past the hard one.
 */
function checkFileLimit(cfg: FanoutConfig): string {
  const limit = openFileLimit();
  if (!limit) return 'unknown';
  const headroom = 256;
  const need = Math.max(cfg.subscribers, 2 * Math.ceil(cfg.subscribers / cfg.workers)) + headroom;
  if (limit.soft < need) {
    const fix = limit.hard >= need ? `run \`ulimit -n ${need}\` (hard limit ${limit.hard}) first` : `the hard limit is ${limit.hard}: raise it (limits.conf / systemd) or use more --workers and fewer --subscribers`;
    throw new Error(`${cfg.subscribers} subscribers need about ${need} open files per process, but ulimit -n is ${limit.soft}: ${fix}`);
  }
  return `${limit.soft} (hard ${limit.hard})`;
}

function finish(report: FanoutReport): void {
  report.finishedAt = new Date().toISOString();
  const rounds = report.groups.flatMap((g) => g.rounds);
  Object.assign(report, condense(rounds));
  const { warnings, notes } = roundProblems(rounds);
  report.warnings.push(...report.groups.filter((g) => g.status !== 'ok').map((g) => `${g.group} ${g.status}: ${g.reason ?? ''}`), ...warnings);
  report.notes.push(...notes);
  const { loadAverageAtStart, cpuCount } = report.machine;
  if (Number(loadAverageAtStart) > Number(cpuCount) / 2) {
    report.notes.push(`other processes were busy when the run started (1-minute load average ${loadAverageAtStart} on ${cpuCount} CPUs): absolute numbers are depressed`);
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = path.join(RESULTS_DIR, `fanout-${report.startedAt.replace(/[:.]/g, '-')}.json`);
  const md = path.join(RESULTS_DIR, 'fanout-latest.md');
  const markdown = renderMarkdown(report);
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(md, markdown);
  process.stdout.write(`\n${markdown}\n`);
  if (report.warnings.length > 0) loud(`${report.warnings.length} warning(s): see above`);
  say(`wrote ${path.relative(process.cwd(), json)} and ${path.relative(process.cwd(), md)}`);
}

async function main(): Promise<number> {
  const cfg = readConfig(process.argv.slice(2));
  if (!cfg) {
    say(HELP);
    return 0;
  }
  const fdLimit = checkFileLimit(cfg);
  const startedAt = new Date().toISOString();
  const report: FanoutReport = {
    startedAt,
    machine: { ...machineInfo(['socket.io', 'socket.io-client', 'uWebSockets.js', 'ws']), openFileLimit: fdLimit },
    config: { ...cfg, tenant: BENCH_TENANT, session: BENCH_SESSION },
    groups: [],
    medians: [],
    ratios: [],
    warnings: [],
    notes: [],
  };
  armHardTimeout(cfg.timeoutSeconds, (warning) => {
    report.warnings.push(warning);
    loud(`${warning}: writing partial results and exiting`);
    finish(report);
  });

  say(
    `fanout: ${cfg.groups.join(', ')}; ${cfg.subscribers} subscribers in ${cfg.workers} worker(s); ${cfg.rate} events/s nominal, ` +
      `${cfg.stressRate || 'no'} events/s stress; ${cfg.rounds} rounds × ${cfg.seconds}s; open files ${fdLimit}`,
  );
  let roundId = 0;
  const base = { cfg, nextRound: () => ++roundId };
  const gateways = cfg.groups.filter((g) => g !== 'transport');
  let services: RunningServices | undefined;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aeterna-fanout-'));
  owned.dirs.add(dataDir);
  try {
    for (const name of cfg.groups) {
      const group: GroupReport = { group: name, status: 'failed', reason: 'did not finish', servers: [], connect: [], memory: [], rounds: [] };
      report.groups.push(group);
      say(`\n== ${name}`);
      try {
        if (name === 'transport') {
          await runTransport(base, group, report);
          continue;
        }
        services ??= await startServices({
          postgres: true,
          redis: gateways.includes('gateway-2node'),
          log: (line) => {
            say(`  [services] ${line}`);
            // Their CPU is ours in the other-CPU figure; startServices names the PIDs only in its log.
            const pid = /(?:PostgreSQL|Redis) ready .*\(pid (\d+)/.exec(line)?.[1];
            if (pid) servicePids.add(Number(pid));
          },
        });
        await runGateway(name === 'gateway-1node' ? 1 : 2, base, services, group, report, dataDir);
      } catch (err) {
        group.status = 'failed';
        group.reason = (err as Error).message;
        loud(`${name} FAILED: ${group.reason}`);
      }
    }
  } finally {
    await services?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    owned.dirs.delete(dataDir);
  }
  finish(report);
  return report.warnings.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`fanout: ${err instanceof Error ? err.message : String(err)}\n\n${HELP}`);
    process.exit(2);
  },
);
