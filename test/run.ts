/**
 * `npm test`: start throwaway Redis and PostgreSQL servers, then typecheck, lint and run vitest
 * against them. Usage: `npx tsx test/run.ts [vitest args…]`.
 *
 * With CI=true a server that cannot be started fails the run (exit 1) instead of skipping tests.
 * AETERNA_TEST_SKIP_STATIC=1 skips tsc and eslint, for quick local loops on one test file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DATABASE_URL_VAR, PYTHON_VAR, REDIS_URL_VAR, REQUIRE_SERVICES_VAR } from './support/env.js';
import { POSTGRES_LABEL, REDIS_LABEL, ensurePythonClient, startServices } from './support/services.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name: string) => path.join(repoRoot, 'node_modules', '.bin', name);
const ci = process.env.CI === 'true';
const skipStatic = process.env.AETERNA_TEST_SKIP_STATIC === '1';
const vitestArgs = process.argv.slice(2);

interface StepResult {
  name: string;
  code: number;
  ms: number;
}

let current: ChildProcess | undefined;
let interruptedBy: NodeJS.Signals | undefined;

// The servers' own handlers stop them on SIGINT/SIGTERM; this one makes sure the step we are
// waiting on hears it too (a CI timeout signals only our PID, not the whole process group).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    interruptedBy ??= signal;
    if (current?.pid !== undefined && current.exitCode === null) {
      try {
        current.kill(signal);
      } catch {
        // already exited
      }
    }
  });
}

function log(line: string): void {
  console.log(`[test] ${line}`);
}

function runStep(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<StepResult> {
  const started = Date.now();
  // The killed step "finishing" must not start the next one while the servers shut down.
  if (interruptedBy) return Promise.resolve({ name, code: 128 + (os.constants.signals[interruptedBy] ?? 1), ms: 0 });
  log(`── ${name}: ${[path.relative(repoRoot, cmd), ...args].join(' ')}`);
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: repoRoot, env, stdio: 'inherit' });
    current = child;
    child.on('error', (error) => {
      console.error(`[test] ${name} could not start: ${error.message}`);
      resolve({ name, code: 127, ms: Date.now() - started });
    });
    child.on('close', (code, signal) => {
      current = undefined;
      const exitCode = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 1) : 1);
      resolve({ name, code: exitCode, ms: Date.now() - started });
    });
  });
}

function banner(lines: string[]): void {
  const rule = '!'.repeat(100);
  console.error(['', rule, ...lines.map((l) => `!!! ${l}`), rule, ''].join('\n'));
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

async function main(): Promise<number> {
  const started = Date.now();
  const services = await startServices({ redis: true, postgres: true, log });
  const python = await ensurePythonClient(log);
  if (python.problem) services.problems.push(python.problem);
  const servicesMs = Date.now() - started;

  const consequence = ci ? 'the run FAILS (CI=true)' : 'server-mode tests will be SKIPPED';
  for (const problem of services.problems) {
    const [first = problem, ...rest] = problem.split('\n');
    banner([`${first} — ${consequence}`, ...rest]);
  }
  if (services.redisUrl) log(`Redis:      ${services.redisUrl}`);
  if (services.databaseUrl) log(`PostgreSQL: ${services.databaseUrl}`);
  log(`services up in ${seconds(servicesMs)}`);

  if (ci && services.problems.length > 0) {
    await services.stop();
    return 1;
  }

  const env: NodeJS.ProcessEnv = { ...process.env };
  // Never let an inherited URL (say, the machine's own PostgreSQL) stand in for a server we
  // failed to start: unset means "skip", which is what the banner promised.
  delete env[REDIS_URL_VAR];
  delete env[DATABASE_URL_VAR];
  delete env[PYTHON_VAR];
  if (python.python) env[PYTHON_VAR] = python.python;
  if (services.redisUrl) env[REDIS_URL_VAR] = services.redisUrl;
  if (services.databaseUrl) env[DATABASE_URL_VAR] = services.databaseUrl;
  if (ci) env[REQUIRE_SERVICES_VAR] = '1';

  const results: StepResult[] = [];
  try {
    if (skipStatic) {
      log('AETERNA_TEST_SKIP_STATIC=1: skipping tsc and eslint');
    } else {
      results.push(await runStep('tsc', bin('tsc'), ['--noEmit'], env));
      results.push(await runStep('eslint', bin('eslint'), ['.'], env));
    }
    results.push(
      await runStep('vitest', bin('vitest'), ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${countsFile}`, ...vitestArgs], env),
    );
  } finally {
    const stopStarted = Date.now();
    await services.stop();
    log(`services stopped in ${seconds(Date.now() - stopStarted)}`);
  }

  const failed = results.find((r) => r.code !== 0);
  const parts = [
    `services ${seconds(servicesMs)}${services.problems.length ? ` (${missing(services)} missing)` : ''}`,
    ...results.map((r) => `${r.name} ${r.code === 0 ? 'ok' : `FAILED (exit ${r.code})`} ${seconds(r.ms)}`),
  ];
  log(`${failed ? 'FAILED' : 'passed'} in ${seconds(Date.now() - started)}: ${parts.join(' · ')}`);
  const counts = await readCounts();
  // The plain closing line CI reads: counts of tests, whatever the runner's own format.
  if (counts) console.log(`tests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  return failed?.code ?? 0;
}

const countsFile = path.join(os.tmpdir(), `aeterna-vitest-${process.pid}.json`);

/** Test counts from vitest's JSON report; undefined when vitest did not get as far as writing it. */
async function readCounts(): Promise<{ passed: number; failed: number; skipped: number } | undefined> {
  try {
    const report = JSON.parse(await readFile(countsFile, 'utf8')) as {
      numPassedTests: number;
      numFailedTests: number;
      numPendingTests: number;
      numTodoTests: number;
    };
    return { passed: report.numPassedTests, failed: report.numFailedTests, skipped: report.numPendingTests + report.numTodoTests };
  } catch {
    return undefined;
  } finally {
    await rm(countsFile, { force: true });
  }
}

function missing(services: { redisUrl?: string; databaseUrl?: string }): string {
  return [services.redisUrl ? undefined : REDIS_LABEL, services.databaseUrl ? undefined : POSTGRES_LABEL].filter(Boolean).join(', ');
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error('[test] runner crashed:', error);
    // The 'exit' hook registered by startServices kills the servers and removes the temp dir.
    process.exit(1);
  },
);
