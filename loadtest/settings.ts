import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** This folder, and where every benchmark writes its `<name>-<time>.json` and `<name>-latest.md`. */
export const LOADTEST_DIR = path.dirname(fileURLToPath(import.meta.url));
export const RESULTS_DIR = path.join(LOADTEST_DIR, 'results');

/** An integer knob from a flag or environment variable; a bad value stops the run naming its source. */
export function intSetting(name: string, raw: string | undefined, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  }
  return value;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What a result file records about the machine and the versions it measured. */
export function machineInfo(packages: readonly string[]): Record<string, string | number> {
  const require = createRequire(import.meta.url);
  const cpus = os.cpus();
  const info: Record<string, string | number> = {
    loadAverageAtStart: Number((os.loadavg()[0] ?? 0).toFixed(2)),
    cpuCount: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    totalMemGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.versions.node,
  };
  for (const pkg of packages) info[pkg] = (require(`${pkg}/package.json`) as { version: string }).version;
  return info;
}

/**
 * Whatever hangs (a server, PostgreSQL, a socket), a benchmark ends: after `seconds` the handler
 * writes what there is, and the process exits 2. Exit handlers kill what the run started, by PID.
 */
export function armHardTimeout(seconds: number, writePartial: (warning: string) => void): void {
  setTimeout(() => {
    writePartial(`hard timeout: the run was cut off after ${seconds}s`);
    process.exit(2);
  }, seconds * 1000).unref();
}

/**
 * Everything a benchmark run owns (child processes, temp dirs), released on any exit: a hard
 * timeout, Ctrl-C or a crash. A signal's default action skips 'exit' handlers; exiting explicitly
 * runs them.
 */
export function ownResources(): { children: Set<ChildProcess>; dirs: Set<string> } {
  const owned = { children: new Set<ChildProcess>(), dirs: new Set<string>() };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => process.exit(128 + os.constants.signals[signal]));
  process.on('exit', () => {
    for (const child of owned.children) if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
    for (const dir of owned.dirs) rmSync(dir, { recursive: true, force: true });
  });
  return owned;
}

/** Progress lines go to stderr, so stdout stays the summary. */
export function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function loud(line: string): void {
  say(`\n!!! ${line}\n`);
}
