/** What fanout.ts records per round, how it condenses rounds into medians and ratios, and the markdown it writes. */
import { CONTENDED_ROUND, median } from './report.js';
import type { ServerReady } from './fanout-shared.js';

export const GROUPS = ['transport', 'gateway-1node', 'gateway-2node'] as const;
export type GroupName = (typeof GROUPS)[number];

export type ScenarioName = 'uws' | 'node' | 'uws-multiroom' | 'gateway-1node' | 'gateway-1node-direct' | 'gateway-2node' | 'gateway-2node-direct';
/** `nominal`: the write rate of the end-to-end scenarios; `stress`: a rate meant to find the ceiling. */
export type Load = 'nominal' | 'stress';

/** One line each, for the table: what exactly a scenario runs. */
export const SCENARIO_TEXT: Record<ScenarioName, string> = {
  uws: 'socket.io + msgpack on uWS, one broadcast per room (as the relay), synthetic events, no DB',
  node: 'socket.io + msgpack on node:http, one broadcast per room (as the relay), synthetic events, no DB',
  'uws-multiroom': 'socket.io + msgpack on uWS, one broadcast to both rooms (the relay before 68c19a7), no DB',
  'gateway-1node': 'gateway, 1 node: REST write → PostgreSQL commit → relay → rooms',
  'gateway-1node-direct': "gateway, 1 node: synthetic events through the relay's sink, no DB",
  'gateway-2node': 'gateway, 2 nodes + Redis adapter: REST write on A, half the subscribers on each',
  'gateway-2node-direct': "gateway, 2 nodes: synthetic events through A's relay sink, via Redis to B",
};

export interface WriteStats {
  attempted: number;
  /** 201: a new memory, hence one `memory.added` event. */
  committed: number;
  /** 200: merged into a near-duplicate by the dedup path; its event is not `memory.added`. */
  merged: number;
  failed: number;
  /** Writes not sent because too many were already in flight: the offered rate was not met. */
  skipped: number;
  statuses: Record<string, number>;
  /** REST round trip of a write, ms. */
  p50: number;
  p99: number;
}

export interface LabelNumbers {
  delivered: number;
  p50: number;
  p99: number;
}

export interface FanoutRound {
  scenario: ScenarioName;
  load: Load;
  round: number;
  /** Offered events per second. */
  rate: number;
  seconds: number;
  /** Events emitted (synthetic) or committed (REST writes answered 201). */
  events: number;
  subscribers: number;
  /** events × subscribers. */
  expected: number;
  delivered: number;
  /** Deliveries over the round, from its start to the last receipt (at least `seconds`). */
  deliveriesPerSec: number;
  /** Latency from `at` to receipt, ms. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Receipts that read earlier than their `at`: clock trouble. */
  negative: number;
  /** Connections the round's server(s) held as it started; below `subscribers` means sockets were lost. */
  serverConnections: number;
  /** CPU time of the server process(es) per delivery, µs: the transport's cost, whoever else is busy. */
  serverCpuUsPerDelivery: number;
  /** CPU time of the subscriber workers per delivery, µs: what receiving and decoding costs. */
  clientCpuUsPerDelivery: number;
  /** Server CPU seconds per wall second (1.0 = one core fully used). */
  serverCores: number;
  /** The busiest server's event loop utilisation over the round (0..1). */
  serverLoop: number;
  /** How late the emitter's or writer's timer fired at worst, ms. */
  paceLateMs: number;
  byLabel: Record<string, LabelNumbers>;
  writes?: WriteStats;
  /** From the end of emitting or writing until every delivery arrived (or the drain limit). */
  drainSeconds: number;
  load1: number;
  /** Share of the machine's CPU used by processes outside the benchmark during the round. */
  foreignCpu?: number;
}

export interface NodeMemory {
  group: GroupName;
  label: string;
  connections: number;
  rssBefore: number;
  rssAfter: number;
  heapBefore: number;
  heapAfter: number;
  /** (RSS after − before) / connections, bytes. */
  rssPerConnection: number;
  heapPerConnection: number;
}

export interface GroupReport {
  group: GroupName;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  servers: Array<ServerReady & { label: string }>;
  connect: Array<{ label: string; sockets: number; seconds: number }>;
  memory: NodeMemory[];
  rounds: FanoutRound[];
}

export interface Median {
  scenario: ScenarioName;
  load: Load;
  rounds: number;
  rate: number;
  subscribers: number;
  deliveriesPerSec: number;
  /** Share of the expected deliveries that arrived, summed over rounds. */
  deliveredShare: number;
  p50: number;
  p99: number;
  serverCpuUsPerDelivery: number;
  clientCpuUsPerDelivery: number;
  serverLoop: number;
  writeP50?: number;
  writeP99?: number;
}

export interface Ratio {
  load: Load;
  /** The uWS scenario compared with `node`. */
  uws: ScenarioName;
  /** uWS over Node of median deliveries/s: above 1, uWS delivered more. */
  deliveries: number;
  /** Median server CPU per delivery, µs, of each. */
  uwsCpuUs: number;
  nodeCpuUs: number;
  /** Node over uWS of median server CPU per delivery: above 1, Node spent more per delivery. */
  cpuPerDelivery: number;
  p50: number;
  /** uWS over Node of median p99: below 1, uWS's tail is shorter. */
  p99: number;
}

export interface FanoutReport {
  startedAt: string;
  finishedAt?: string;
  machine: Record<string, string | number>;
  config: Record<string, string | number | string[]>;
  groups: GroupReport[];
  medians: Median[];
  ratios: Ratio[];
  warnings: string[];
  notes: string[];
}

/** A round delivering less than this share of what it should counts as lossy. */
export const LOSSY_ROUND = 0.999;

export function condense(rounds: readonly FanoutRound[]): { medians: Median[]; ratios: Ratio[] } {
  const keys = [...new Set(rounds.map((r) => `${r.scenario}|${r.load}`))];
  const medians = keys.map((key): Median => {
    const mine = rounds.filter((r) => `${r.scenario}|${r.load}` === key);
    const first = mine[0] as FanoutRound;
    const of = (pick: (r: FanoutRound) => number) => median(mine.map(pick));
    const expected = mine.reduce((n, r) => n + r.expected, 0);
    const withWrites = mine.filter((r) => r.writes);
    return {
      scenario: first.scenario,
      load: first.load,
      rounds: mine.length,
      rate: first.rate,
      subscribers: first.subscribers,
      deliveriesPerSec: of((r) => r.deliveriesPerSec),
      deliveredShare: expected > 0 ? mine.reduce((n, r) => n + r.delivered, 0) / expected : Number.NaN,
      p50: of((r) => r.p50),
      p99: of((r) => r.p99),
      serverCpuUsPerDelivery: of((r) => r.serverCpuUsPerDelivery),
      clientCpuUsPerDelivery: of((r) => r.clientCpuUsPerDelivery),
      serverLoop: of((r) => r.serverLoop),
      ...(withWrites.length > 0
        ? { writeP50: median(withWrites.map((r) => r.writes?.p50 ?? Number.NaN)), writeP99: median(withWrites.map((r) => r.writes?.p99 ?? Number.NaN)) }
        : {}),
    };
  });
  const ratios = medians.flatMap((m): Ratio[] => {
    if (m.scenario !== 'uws' && m.scenario !== 'uws-multiroom') return [];
    const node = medians.find((n) => n.scenario === 'node' && n.load === m.load);
    if (!node) return [];
    return [
      {
        load: m.load,
        uws: m.scenario,
        deliveries: m.deliveriesPerSec / node.deliveriesPerSec,
        uwsCpuUs: m.serverCpuUsPerDelivery,
        nodeCpuUs: node.serverCpuUsPerDelivery,
        cpuPerDelivery: node.serverCpuUsPerDelivery / m.serverCpuUsPerDelivery,
        p50: m.p50 / node.p50,
        p99: m.p99 / node.p99,
      },
    ];
  });
  return { medians, ratios };
}

/** Rounds that lost deliveries, saw clock trouble or ran beside a busy neighbour. */
export function roundProblems(rounds: readonly FanoutRound[]): { warnings: string[]; notes: string[] } {
  const warnings: string[] = [];
  const notes: string[] = [];
  for (const r of rounds) {
    const name = `${r.scenario}/${r.load} round ${r.round}`;
    if (r.delivered < r.expected * LOSSY_ROUND) {
      warnings.push(`${name}: ${r.delivered} of ${r.expected} deliveries arrived (${pct(r.delivered / r.expected)}) within the drain limit`);
    }
    if (r.serverConnections < r.subscribers) {
      warnings.push(`${name}: the server(s) held ${r.serverConnections} connections for ${r.subscribers} subscribers the clients counted as connected`);
    }
    if (r.delivered > r.expected) warnings.push(`${name}: ${r.delivered - r.expected} more deliveries than expected (duplicates)`);
    if (r.writes && (r.writes.failed > 0 || r.writes.skipped > 0)) {
      warnings.push(`${name}: ${r.writes.failed} writes failed, ${r.writes.skipped} skipped (statuses ${JSON.stringify(r.writes.statuses)})`);
    }
    if (r.writes && r.writes.merged > 0) notes.push(`${name}: ${r.writes.merged} writes were merged by dedup (not counted as events)`);
    if (r.negative > 0) notes.push(`${name}: ${r.negative} receipts read earlier than their \`at\` (millisecond rounding)`);
  }
  const contended = rounds.filter((r) => (r.foreignCpu ?? 0) > CONTENDED_ROUND);
  if (contended.length > 0) {
    const list = contended.map((r) => `${r.scenario}/${r.load} #${r.round} ${pct(r.foreignCpu ?? 0)}`).join(', ');
    notes.push(`other processes took over ${pct(CONTENDED_ROUND)} of the CPU during ${contended.length} round(s) (${list}); medians damp this`);
  }
  return { warnings, notes };
}

// ---------------------------------------------------------------------------------------------
// Markdown

const fixed = (n: number | undefined, digits = 0): string => (n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const pct = (share: number): string => `${fixed(share * 100, share < 0.995 ? 1 : 0)}%`;
const ms = (n: number): string => (Number.isInteger(n) ? String(n) : fixed(n, 1));
const kib = (bytes: number): string => fixed(bytes / 1024, 1);
const thousands = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');

function memoryCell(report: FanoutReport, scenario: ScenarioName): string {
  const group = report.groups.find((g) => g.rounds.some((r) => r.scenario === scenario));
  const labels = scenario === 'uws' || scenario === 'uws-multiroom' ? ['uws'] : scenario === 'node' ? ['node'] : undefined;
  const nodes = (group?.memory ?? []).filter((m) => !labels || labels.includes(m.label));
  return nodes.length > 0 ? nodes.map((m) => kib(m.rssPerConnection)).join(' / ') : 'n/a';
}

function scenarioRows(report: FanoutReport): string[] {
  return report.medians.map((m) => {
    const latency = `${ms(m.p50)} / ${ms(m.p99)}`;
    const delivered = m.deliveredShare >= LOSSY_ROUND ? pct(m.deliveredShare) : `**${pct(m.deliveredShare)}**`;
    const writes = m.writeP50 !== undefined ? ` (write p50/p99 ${ms(m.writeP50)}/${ms(m.writeP99 ?? Number.NaN)} ms)` : '';
    return (
      `| \`${m.scenario}\` | ${m.load} | ${SCENARIO_TEXT[m.scenario]}${writes} | ${thousands(m.subscribers)} | ${m.rate} | ` +
      `${thousands(m.deliveriesPerSec)} | ${delivered} | ${latency} | ${fixed(m.serverCpuUsPerDelivery, 2)} | ${fixed(m.serverLoop * 100)}% | ` +
      `${fixed(m.clientCpuUsPerDelivery, 2)} | ${memoryCell(report, m.scenario)} |`
    );
  });
}

function ratioRows(report: FanoutReport): string[] {
  return report.ratios.map(
    (r) =>
      `| ${r.load} | \`${r.uws}\` vs \`node\` | ${fixed(r.deliveries, 2)}× | ${fixed(r.uwsCpuUs, 2)} / ${fixed(r.nodeCpuUs, 2)} | **${fixed(r.cpuPerDelivery, 1)}×** | ` +
      `${thousands(1e6 / r.uwsCpuUs)} / ${thousands(1e6 / r.nodeCpuUs)} | ${fixed(r.p50, 2)}× | ${fixed(r.p99, 2)}× |`,
  );
}

function memoryRows(report: FanoutReport): string[] {
  return report.groups.flatMap((g) =>
    g.memory.map(
      (m) =>
        `| ${g.group} | ${m.label} | ${thousands(m.connections)} | ${fixed(m.rssBefore / 2 ** 20)} → ${fixed(m.rssAfter / 2 ** 20)} | ` +
        `${kib(m.rssPerConnection)} | ${kib(m.heapPerConnection)} |`,
    ),
  );
}

export function renderMarkdown(report: FanoutReport): string {
  const c = report.config;
  const m = report.machine;
  const rounds = report.groups.flatMap((g) => g.rounds);
  const skipped = report.groups.filter((g) => g.status !== 'ok');
  const lines = [
    `### WebSocket fan-out (${report.startedAt.slice(0, 10)})`,
    '',
    `${m['cpuCount']}× ${m['cpuModel']}, ${m['totalMemGiB']} GiB, Node ${m['node']}, socket.io ${m['socketIo']}, uWS.js ${m['uWebSocketsJs']}. ` +
      `Subscribers are raw socket.io-client sockets (msgpack parser, WebSocket only) in ${c['workers']} worker processes, ` +
      `servers are child processes of their own; all of them share these ${m['cpuCount']} cores, so client decoding competes with the server ` +
      `and absolute numbers understate a dedicated server. Server CPU per delivery is the server processes' own CPU time, whoever else is busy.`,
    '',
    `${c['subscribers']} subscribers in one room of one tenant; ${c['rounds']} rounds × ${c['seconds']} s per scenario and load ` +
      `(transport scenarios alternate uWS, Node, uWS-multiroom round by round), after a ${c['warmupSeconds']} s warm-up each; ` +
      `nominal load ${c['rate']} events/s (REST writes for the gateway's end-to-end rows), stress load ${c['stressRate']} events/s (synthetic only). ` +
      `Latency is from the envelope's \`at\` (commit time; for synthetic events the time each was due) to receipt, in whole ms. Medians over rounds.`,
    '',
    '| Scenario | Load | What | Subscribers | Events/s | Deliveries/s | Delivered | p50 / p99 ms | Server CPU µs/delivery | Server loop busy | Client CPU µs/delivery | Server RSS/conn KiB |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...scenarioRows(report),
    ...skipped.map((g) => `| ${g.group} | — | ${g.status.toUpperCase()}: ${g.reason ?? ''} | | | | | | | | | |`),
    '',
    '**uWS vs node:http**, same socket.io, same parser, same envelopes (medians over rounds). At the nominal rate both deliver ' +
      'everything, so their deliveries/s ratio is 1 by construction: compare CPU per delivery. The per-core figure is 10⁶ ÷ server ' +
      'CPU µs per delivery, what one core could push with the machine to itself: an extrapolation, since here the subscribers\' ' +
      'decoding (client CPU column) and the loopback TCP stack, billed to the sending process, share the same two cores.',
    '',
    '| Load | Pair | Deliveries/s uWS/Node | Server CPU µs/delivery uWS / Node | Node/uWS | Deliveries/s per server core uWS / Node (10⁶ ÷ µs) | p50 uWS/Node | p99 uWS/Node |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...ratioRows(report),
    '',
    'Connections held and memory per connection (after GC, RSS of the server process before and after its subscribers connected):',
    '',
    '| Group | Node | Connections | RSS MiB | RSS/conn KiB | JS heap/conn KiB |',
    '|---|---|---:|---:|---:|---:|',
    ...memoryRows(report),
  ];
  if (rounds.length === 0) lines.push('', 'No round completed.');
  if (report.notes.length > 0) lines.push('', ...report.notes.map((n) => `Note: ${n}.`));
  if (report.warnings.length > 0) {
    lines.push('', '**⚠ Warnings — do not quote these numbers without reading them:**', '', ...report.warnings.map((w) => `- ${w}`));
  }
  return `${lines.join('\n')}\n`;
}
