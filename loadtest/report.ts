/** What memory-rest.ts records, how it condenses rounds, and the markdown it writes. */
import type { ReadyLine } from './rest-server.js';

export const TRANSPORTS = ['uws', 'node'] as const;
export type Transport = (typeof TRANSPORTS)[number];
export const MODES = ['embedded', 'postgres'] as const;
export type ModeName = (typeof MODES)[number];

export interface Round {
  scenario: string;
  transport: Transport;
  round: number;
  /** Successful (2xx) responses per second over the measured duration. */
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  seconds: number;
  /** Share of the machine's CPU time during the round used by processes not of this run (Linux only). */
  foreignCpu?: number;
}

export interface Median {
  scenario: string;
  transport: Transport;
  rounds: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface Ratio {
  scenario: string;
  /** uWS over Node, of the medians: above 1 means uWS serves more / waits longer. */
  rps: number;
  p50: number;
  p99: number;
  /** False when some round had too few responses (THIN_ROUND) for its numbers to mean much. */
  reliable: boolean;
}

export interface ModeReport {
  mode: ModeName;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  backend?: ReadyLine['backend'];
  seeding?: ReadyLine['seeding'];
  rounds: Round[];
  medians: Median[];
  ratios: Ratio[];
}

export interface RunReport {
  startedAt: string;
  finishedAt?: string;
  machine: Record<string, string | number>;
  config: Record<string, string | number | string[]>;
  modes: ModeReport[];
  /** Every reason not to trust the numbers: failed modes, errors, non-2xx, a hard timeout. */
  warnings: string[];
  /** Numbers that are real but weak, e.g. a round too slow to give its percentiles many samples. */
  notes: string[];
}

/** Below this many responses in a round, its p99 is a handful of requests. */
export const THIN_ROUND = 200;
/** Above this share of the CPU taken by other processes, a round measured the neighbours too. */
export const CONTENDED_ROUND = 0.15;

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Per scenario and transport, the median of each metric over its rounds, and the uWS/Node ratios. */
export function condense(rounds: readonly Round[]): { medians: Median[]; ratios: Ratio[] } {
  const scenarios = [...new Set(rounds.map((r) => r.scenario))];
  const medians = scenarios.flatMap((scenario) =>
    TRANSPORTS.flatMap((transport): Median[] => {
      const mine = rounds.filter((r) => r.scenario === scenario && r.transport === transport);
      if (mine.length === 0) return [];
      const of = (metric: 'rps' | 'p50' | 'p90' | 'p99') => median(mine.map((r) => r[metric]));
      return [{ scenario, transport, rounds: mine.length, rps: of('rps'), p50: of('p50'), p90: of('p90'), p99: of('p99') }];
    }),
  );
  const ratios = scenarios.flatMap((scenario): Ratio[] => {
    const uws = medians.find((m) => m.scenario === scenario && m.transport === 'uws');
    const node = medians.find((m) => m.scenario === scenario && m.transport === 'node');
    if (!uws || !node) return [];
    const reliable = rounds.every((r) => r.scenario !== scenario || r.requests >= THIN_ROUND);
    return [{ scenario, rps: uws.rps / node.rps, p50: uws.p50 / node.p50, p99: uws.p99 / node.p99, reliable }];
  });
  return { medians, ratios };
}

/** Rounds whose numbers describe failures rather than the service: a benchmark of 401s is worthless. */
export function badRounds(mode: ModeName, rounds: readonly Round[]): string[] {
  return rounds
    .filter((r) => r.errors > 0 || r.timeouts > 0 || r.non2xx > 0)
    .map(
      (r) =>
        `${mode}/${r.scenario}/${r.transport} round ${r.round}: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx ` +
        `(status codes ${JSON.stringify(r.statusCodes)})`,
    );
}

export function thinRounds(mode: ModeName, rounds: readonly Round[]): string[] {
  const thin = rounds.filter((r) => r.requests < THIN_ROUND);
  if (thin.length === 0) return [];
  const which = [...new Set(thin.map((r) => `${r.scenario}/${r.transport}`))].join(', ');
  const fewest = Math.min(...thin.map((r) => r.requests));
  return [`${mode}: ${thin.length} round(s) of ${which} completed fewer than ${THIN_ROUND} requests (fewest ${fewest}); their percentiles are coarse`];
}

export function contendedRounds(mode: ModeName, rounds: readonly Round[]): string[] {
  const contended = rounds.filter((r) => (r.foreignCpu ?? 0) > CONTENDED_ROUND);
  if (contended.length === 0) return [];
  const list = contended.map((r) => `${r.scenario}/${r.transport} #${r.round} ${((r.foreignCpu ?? 0) * 100).toFixed(0)}%`).join(', ');
  return [`${mode}: other processes took over ${CONTENDED_ROUND * 100}% of the CPU during ${contended.length} round(s) (${list}); medians damp this, ratios may still be skewed`];
}

const fixed = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
// autocannon records whole milliseconds; only a median of an even number of rounds adds a half.
const ms = (n: number): string => (Number.isInteger(n) ? String(n) : fixed(n, 1));
const latencies = (m: Median | undefined): string => (m ? `${ms(m.p50)} / ${ms(m.p90)} / ${ms(m.p99)}` : 'n/a');

function tableRows(report: RunReport): string[] {
  return report.modes.flatMap((mode) => {
    if (mode.status !== 'ok') return [`| ${mode.mode} | — | ${mode.status.toUpperCase()}: ${mode.reason ?? ''} | | | | |`];
    return mode.ratios.map((ratio) => {
      const pick = (t: Transport) => mode.medians.find((m) => m.scenario === ratio.scenario && m.transport === t);
      const uws = pick('uws');
      const node = pick('node');
      return (
        `| ${mode.mode} (${mode.backend?.vectors ?? '?'}) | ${ratio.scenario} | ${fixed(uws?.rps ?? Number.NaN)} | ` +
        `${fixed(node?.rps ?? Number.NaN)} | ${ratio.reliable ? `**${fixed(ratio.rps, 2)}×**` : 'n/a (too few requests)'} | ` +
        `${latencies(uws)} | ${latencies(node)} |`
      );
    });
  });
}

export function renderMarkdown(report: RunReport): string {
  const c = report.config;
  const m = report.machine;
  const seeding = report.modes
    .filter((mode) => mode.seeding)
    .map((mode) => {
      const s = mode.seeding as NonNullable<ModeReport['seeding']>;
      return `${mode.mode} ${fixed(s.perSecond)}/s (${s.memories} in ${fixed(s.seconds, 1)} s, ${mode.backend?.db ?? '?'}, ${mode.backend?.vectors ?? '?'})`;
    });
  const lines = [
    `### REST: uWS vs node:http (${report.startedAt.slice(0, 10)})`,
    '',
    `${m['cpuCount']}× ${m['cpuModel']}, ${m['totalMemGiB']} GiB, Node ${m['node']}, ${m['platform']}. ` +
      `Server and load generator share these ${m['cpuCount']} cores (autocannon in the driver process, the server in a child process), ` +
      `so absolute numbers understate a dedicated server; the uWS/Node ratio is the figure to compare.`,
    '',
    `${c['memories']} memories in one tenant (+ ${c['otherTenants']} tenants × ${c['otherTenantMemories']}), hashing embedder; ` +
      `autocannon, ${c['connections']} connections, ${c['rounds']} rounds × ${c['seconds']} s per transport, alternating uWS/Node, ` +
      `after ${c['warmupSeconds']} s warm-up each. Median over rounds; req/s counts 2xx responses only; latency in whole ms (autocannon's resolution).`,
    '',
    '| Mode (vector index) | Scenario | uWS req/s | Node req/s | uWS/Node | uWS p50 / p90 / p99 | Node p50 / p90 / p99 |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...tableRows(report),
    '',
    `Seeding through \`core.memory.add\` (${c['seedConcurrency']} in flight): ${seeding.length > 0 ? seeding.join('; ') : 'n/a'}.`,
  ];
  if (report.notes.length > 0) lines.push('', ...report.notes.map((n) => `Note: ${n}.`));
  if (report.warnings.length > 0) {
    lines.push('', '**⚠ Warnings — do not quote these numbers without reading them:**', '', ...report.warnings.map((w) => `- ${w}`));
  }
  return `${lines.join('\n')}\n`;
}
