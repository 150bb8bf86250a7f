/**
 * The CCA agents' own costs, in embedded mode (PGlite, in this process), each against a baseline
 * measured in the same run:
 *   - trajectory.capture: one event per call vs batches of 50 (events/s);
 *   - hindsight.query as the pattern table grows (the scan compares up to AETERNA_HINDSIGHT_SCAN_LIMIT
 *     signature embeddings in JS), against the same query at the smallest size;
 *   - cca.distill of a 20-event session (extractive), against memory.add of a note of the same size,
 *     the write it ends with;
 *   - one Meta-Agent iteration (build → sandboxed test that passes) against its two external parts
 *     alone: the model call (a local OpenAI-compatible server that answers at once) and the sandboxed
 *     command, so the difference is the agent's own bookkeeping (context, notes, hindsight, state, events).
 * `npm run bench:agents -- --help`. Never part of `npm test`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CommandSandbox, OpenAiChatLlm, createAgentsApi, createMetaAgent, createMetaApi, createNoteDistiller } from '../src/cca/index.js';
import { loadConfig } from '../src/config.js';
import { openCore, type Core } from '../src/core.js';
import { createLogger } from '../src/obs/index.js';
import type { TenantContext } from '../src/tenancy/index.js';
import { memoryText, prng } from './corpus.js';
import { latencyStats, type LatencyStats } from './graph-report.js';
import { armHardTimeout, intSetting, machineInfo, RESULTS_DIR, say } from './settings.js';

const SEED = 20_251_126;

const HELP = `CCA agents: trajectory capture, hindsight query scaling, note distillation, Meta-Agent iteration overhead (embedded)

  --events N        events captured per capture scenario (BENCH_EVENTS, default 2000)
  --patterns N      hindsight patterns at the largest size (BENCH_PATTERNS, default 1000)
  --samples N       samples per latency scenario (BENCH_SAMPLES, default 50)
  --timeout S       hard stop, results so far are written (BENCH_TIMEOUT, default 300)
  --help`;

interface Cfg {
  events: number;
  patterns: number;
  samples: number;
  timeoutSeconds: number;
}

interface Row {
  name: string;
  what: string;
  baseline?: string;
  stats: LatencyStats;
}

interface Report {
  startedAt: string;
  machine: Record<string, string | number>;
  config: Cfg;
  rows: Row[];
  ratios: Record<string, number>;
  warnings: string[];
}

function readConfig(argv: string[]): Cfg | undefined {
  const { values } = parseArgs({
    args: argv,
    options: { events: { type: 'string' }, patterns: { type: 'string' }, samples: { type: 'string' }, timeout: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) return undefined;
  const env = process.env;
  return {
    events: intSetting('--events', values.events ?? env['BENCH_EVENTS'], 2000, 100, 1_000_000),
    patterns: intSetting('--patterns', values.patterns ?? env['BENCH_PATTERNS'], 1000, 100, 100_000),
    samples: intSetting('--samples', values.samples ?? env['BENCH_SAMPLES'], 50, 5, 100_000),
    timeoutSeconds: intSetting('--timeout', values.timeout ?? env['BENCH_TIMEOUT'], 300, 10, 3600),
  };
}

/** Runs `fn` `n` times one after another; per-call milliseconds and the wall time. */
async function sample(n: number, fn: (i: number) => Promise<unknown>): Promise<LatencyStats> {
  const ms: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await fn(i);
    ms.push(performance.now() - s);
  }
  return latencyStats(ms, (performance.now() - t0) / 1000);
}

const ratio = (a: LatencyStats, b: LatencyStats) => Number((a.p50 / b.p50).toFixed(2));

async function captureScenario(core: Core, cfg: Cfg, report: Report): Promise<void> {
  const agents = createAgentsApi(core);
  const ctx: TenantContext = { tenantId: 'bench-capture', userId: 'bench', roles: ['developer'] };
  const random = prng(SEED);
  const event = (session: string) => ({ sessionId: session, toolName: 'writeFile', input: { path: 'src/a.ts', text: memoryText(random) }, output: 'ok', success: true, durationMs: 12 });
  say(`capture: ${cfg.events} events one per call…`);
  const single = await sample(cfg.events, (i) => agents.capture(ctx, event(`single-${i % 20}`)));
  const batches = Math.ceil(cfg.events / 50);
  say(`capture: ${cfg.events} events in ${batches} batches of 50…`);
  const batched = await sample(batches, (i) => agents.capture(ctx, { events: Array.from({ length: 50 }, () => event(`batch-${i % 20}`)) }));
  report.rows.push({ name: 'capture, 1 event per call', what: 'trajectory.capture: redact, cap, one transaction per event', stats: single });
  report.rows.push({ name: 'capture, 50 events per call', what: 'the same events, one transaction per 50', baseline: 'capture, 1 event per call', stats: batched });
  report.ratios['capture events/s, batched ÷ single'] = Number(((cfg.events / batched.seconds) / (cfg.events / single.seconds)).toFixed(2));
}

async function hindsightScenario(core: Core, cfg: Cfg, report: Report): Promise<void> {
  const agents = createAgentsApi(core);
  const ctx: TenantContext = { tenantId: 'bench-hindsight', userId: 'bench', roles: ['developer'] };
  const random = prng(SEED + 1);
  const sizes = [...new Set([100, Math.min(1000, cfg.patterns), cfg.patterns])].sort((a, b) => a - b);
  const queries = Array.from({ length: cfg.samples }, (_, i) => `${memoryText(random)} failed at step ${i}`);
  let have = 0;
  let smallest: LatencyStats | undefined;
  for (const size of sizes) {
    const t0 = performance.now();
    // Distinct error types make distinct signatures: each report is a new pattern.
    const reports = await sample(size - have, (i) => agents.report(ctx, { errorType: `E${have + i}`, message: memoryText(random) }));
    say(`hindsight: ${size} patterns (reports p50 ${reports.p50.toFixed(1)} ms, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    have = size;
    const stats = await sample(cfg.samples, (i) => agents.query(ctx, { message: queries[i] as string }));
    smallest ??= stats;
    report.rows.push({
      name: `hindsight.query at ${size} patterns`,
      what: `top 3 of up to ${core.config.hindsight.scanLimit} recent patterns by embedding`,
      ...(size === sizes[0] ? {} : { baseline: `hindsight.query at ${sizes[0]} patterns` }),
      stats,
    });
    if (size !== sizes[0]) report.ratios[`hindsight.query p50, ${size} ÷ ${sizes[0]} patterns`] = ratio(stats, smallest);
    report.rows.push({ name: `hindsight.report up to ${size} patterns`, what: 'a new signature: redact, normalise, embed, upsert, scan for similar ones', stats: reports });
  }
}

async function distillScenario(core: Core, cfg: Cfg, report: Report): Promise<void> {
  const agents = createAgentsApi(core);
  const distiller = createNoteDistiller({ ...core, llm: undefined });
  const tenantId = 'bench-notes';
  const ctx: TenantContext = { tenantId, userId: 'bench', roles: ['developer'] };
  const random = prng(SEED + 2);
  const notes: string[] = [];
  const distillMs: number[] = [];
  say(`distill: ${cfg.samples} sessions of 20 events…`);
  for (let i = 0; i < cfg.samples; i++) {
    const sessionId = `s-${i}`;
    const events = Array.from({ length: 20 }, (_, k) => ({
      sessionId,
      projectId: `p${i % 5}`,
      toolName: k % 4 === 0 ? 'runTests' : k % 4 === 1 ? 'editFile' : 'readFile',
      input: memoryText(random),
      output: memoryText(random),
      success: k % 7 !== 3,
    }));
    // Capture and end are setup; only the job is timed.
    await agents.capture(ctx, { events });
    const ended = await agents.endSession(ctx, { sessionId });
    const t0 = performance.now();
    const outcome = await distiller.distill(tenantId, { layer: 'session', scopeId: sessionId, sessionId, segment: ended.segment, projectId: ended.projectId, reason: 'ended', events: ended.events });
    distillMs.push(performance.now() - t0);
    if (outcome.status === 'written') notes.push((await core.memory.get(ctx, outcome.memoryId)).content);
  }
  const distilled = latencyStats(distillMs, distillMs.reduce((a, b) => a + b, 0) / 1000);
  if (notes.length === 0) report.warnings.push('no session was distilled into a note: the distill numbers measure nothing');
  const baseline = await sample(cfg.samples, (i) => core.memory.add(ctx, { layer: 'project', projectId: 'baseline', content: `${notes[i % Math.max(1, notes.length)] ?? memoryText(random)} (copy ${i})` }));
  report.rows.push({ name: 'memory.add of a note (baseline)', what: 'the write a distillation ends with, alone', stats: baseline });
  report.rows.push({ name: 'cca.distill of a 20-event session', what: 'read the segment, score it, write the extractive note (memory.add inside)', baseline: 'memory.add of a note (baseline)', stats: distilled });
  report.ratios['cca.distill p50 ÷ memory.add p50'] = ratio(distilled, baseline);
}

/** An OpenAI-compatible endpoint that answers every chat completion at once with a passing solution. */
async function instantModel(): Promise<{ url: string; close(): Promise<void> }> {
  const body = JSON.stringify({ id: 'bench', object: 'chat.completion', model: 'bench', choices: [{ index: 0, message: { role: 'assistant', content: '{"solution":"fixed","rationale":"bench"}' }, finish_reason: 'stop' }], usage: { prompt_tokens: 100, completion_tokens: 10 } });
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function metaScenario(core: Core, cfg: Cfg, report: Report, llmUrl: string): Promise<void> {
  const ctx: TenantContext = { tenantId: 'bench-meta', userId: 'root', roles: ['admin'] };
  const api = createMetaApi(core);
  const agent = createMetaAgent(core);
  const argv = ['grep', '-qx', 'fixed', 'solution.txt'];
  const llm = new OpenAiChatLlm({ url: llmUrl, model: 'bench', timeoutMs: 10_000 });
  const { sandbox: s } = core.config.meta;
  const sandbox = new CommandSandbox({ allow: s.allow, maxTimeoutMs: 10_000, maxOutputBytes: s.maxOutputBytes, cpuSeconds: s.cpuSeconds, memoryMb: s.memoryMb, ...(s.runAs ? { runAs: s.runAs } : {}) });
  say(`meta: ${cfg.samples} single-iteration runs, then the model and the sandbox alone…`);
  const runs = await sample(cfg.samples, async () => {
    const run = await api.start(ctx, { goal: `Print the word fixed ${Math.random()}`, testCommand: argv, maxIterations: 1 });
    const done = await agent.run(ctx.tenantId, run.runId);
    if (done.status !== 'succeeded') report.warnings.push(`meta run ${run.runId} ended ${done.status} (${done.stopReason})`);
  });
  const model = await sample(cfg.samples, () => llm.complete({ messages: [{ role: 'user', content: 'Print the word fixed' }], json: true }));
  const command = await sample(cfg.samples, () => sandbox.run({ argv, files: { 'solution.txt': 'fixed' }, stdin: 'fixed', timeoutMs: 10_000 }));
  report.rows.push({ name: 'model call alone', what: 'one chat completion against a local server that answers at once', stats: model });
  report.rows.push({ name: 'sandboxed command alone', what: `${argv.join(' ')} in a fresh work dir, as ${s.runAs || 'this user'}, with ulimits`, stats: command });
  report.rows.push({ name: 'meta.run, 1 iteration that passes', what: 'start + context + notes + hindsight + model + sandbox + state and events', baseline: 'model call alone + sandboxed command alone', stats: runs });
  report.ratios['meta iteration p50 ÷ (model p50 + command p50)'] = Number((runs.p50 / (model.p50 + command.p50)).toFixed(2));
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : '—');

function markdown(r: Report): string {
  return [
    '# CCA agents (embedded, PGlite)',
    '',
    `${r.startedAt} · ${r.machine['cpuModel']} × ${r.machine['cpuCount']} · load average at start ${r.machine['loadAverageAtStart']} · Node ${r.machine['node']}`,
    '',
    '| scenario | samples | p50 ms | p95 ms | mean ms | per s | baseline |',
    '|---|---:|---:|---:|---:|---:|---|',
    ...r.rows.map((row) => `| ${row.name} | ${row.stats.samples} | ${fmt(row.stats.p50)} | ${fmt(row.stats.p95)} | ${fmt(row.stats.mean)} | ${fmt(row.stats.opsPerSec)} | ${row.baseline ?? ''} |`),
    '',
    ...Object.entries(r.ratios).map(([k, v]) => `- ${k}: **${v}×**`),
    '',
    ...r.rows.map((row) => `- *${row.name}*: ${row.what}.`),
    ...(r.warnings.length > 0 ? ['', '**Warnings**', ...r.warnings.map((w) => `- ${w}`)] : []),
    '',
  ].join('\n');
}

function finish(report: Report): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path.join(RESULTS_DIR, `agents-${report.startedAt.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(report, null, 2)}\n`);
  const md = markdown(report);
  writeFileSync(path.join(RESULTS_DIR, 'agents-latest.md'), md);
  process.stdout.write(`\n${md}`);
}

async function main(): Promise<number> {
  const cfg = readConfig(process.argv.slice(2));
  if (!cfg) {
    say(HELP);
    return 0;
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aeterna-bench-agents-'));
  const model = await instantModel();
  const config = loadConfig({
    AETERNA_DATA_DIR: dataDir,
    AETERNA_LOG_LEVEL: 'silent',
    AETERNA_JWT_SECRET: 'bench-secret-0123456789abcdef0123456789abcdef',
    AETERNA_LLM_URL: model.url,
    AETERNA_LLM_MODEL: 'bench',
    AETERNA_META_COMMANDS: 'grep',
  });
  const report: Report = { startedAt: new Date().toISOString(), machine: machineInfo(['gpt-tokenizer']), config: cfg, rows: [], ratios: {}, warnings: [] };
  armHardTimeout(cfg.timeoutSeconds, (warning) => {
    report.warnings.push(warning);
    finish(report);
    rmSync(dataDir, { recursive: true, force: true });
  });
  let core: Core | undefined;
  try {
    core = await openCore(config, createLogger('silent'));
    await captureScenario(core, cfg, report);
    await hindsightScenario(core, cfg, report);
    await distillScenario(core, cfg, report);
    await metaScenario(core, cfg, report, model.url);
  } catch (err) {
    report.warnings.push(`the run failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await core?.close();
    await model.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  finish(report);
  return report.warnings.some((w) => w.startsWith('the run failed')) ? 1 : 0;
}

process.exitCode = await main();
