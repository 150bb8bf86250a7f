import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/aeterna.js');

/** A gateway process started the way `npm start` starts one. */
export interface GatewayNode {
  child: ChildProcess;
  url: string;
  output(): string;
  /** SIGTERM, then wait for exit: resolves with the exit code and how long it took. */
  stop(): Promise<{ code: number | null; ms: number }>;
  /** SIGKILL: the node dies without any cleanup, as in a crash. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();

/** A child process of this test file, its output collected, killed by killAllNodes if left running. */
function spawnTracked(args: string[], env: Record<string, string>): { child: ChildProcess; output(): string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, AETERNA_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

export function startNode(env: Record<string, string>, timeoutMs = 60_000): Promise<GatewayNode> {
  const { child, output, exited } = spawnTracked([BIN, 'start'], { AETERNA_PORT: '0', ...env });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within ${timeoutMs} ms:\n${output()}`)), timeoutMs);
    const poll = setInterval(() => {
      const match = /listening on (http:\/\/\S+)/.exec(output());
      if (!match?.[1]) return;
      clearTimeout(timer);
      clearInterval(poll);
      resolve({
        child,
        url: match[1],
        output,
        async stop() {
          const began = Date.now();
          if (child.exitCode === null) child.kill('SIGTERM');
          const code = await exited;
          return { code, ms: Date.now() - began };
        },
        async kill() {
          if (child.exitCode === null) child.kill('SIGKILL');
          await exited;
        },
      });
    }, 50);
    void exited.then((code) => {
      clearTimeout(timer);
      clearInterval(poll);
      reject(new Error(`exited with ${code} before listening:\n${output()}`));
    });
  });
}

export const WORKER_MAIN = path.join(ROOT, 'workers/main.ts');

/** A worker process (or a test's own worker script) run through tsx's loader, as `npm run worker` runs one. */
export interface WorkerNode {
  child: ChildProcess;
  pid: number;
  output(): string;
  exited: Promise<number | null>;
}

export function spawnWorker(env: Record<string, string>, script = WORKER_MAIN): WorkerNode {
  // `node --import tsx`, not the tsx CLI: the CLI runs the script in a child, and a kill -9 would
  // hit only the wrapper.
  const tracked = spawnTracked(['--import', 'tsx', script], env);
  return { ...tracked, pid: tracked.child.pid as number };
}

/** Resolves once the worker printed its ready line; rejects with its output if it exits first. */
export async function workerReady(worker: WorkerNode, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!/worker ready/.test(worker.output())) {
    if (worker.child.exitCode !== null) throw new Error(`worker exited before it was ready:\n${worker.output()}`);
    if (Date.now() > deadline) throw new Error(`worker not ready within ${timeoutMs} ms:\n${worker.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Kills every gateway and worker a test file started and left running (by PID, never by name). */
export function killAllNodes(): void {
  for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
}

export function runCli(args: string[], env: Record<string, string>): { code: number | null; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}
