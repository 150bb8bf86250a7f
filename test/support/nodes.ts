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

export function startNode(env: Record<string, string>, timeoutMs = 60_000): Promise<GatewayNode> {
  const child = spawn(process.execPath, [BIN, 'start'], {
    cwd: ROOT,
    env: { ...process.env, AETERNA_PORT: '0', AETERNA_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const poll = setInterval(() => {
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (!match?.[1]) return;
      clearTimeout(timer);
      clearInterval(poll);
      resolve({
        child,
        url: match[1],
        output: () => out,
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
      reject(new Error(`exited with ${code} before listening:\n${out}`));
    });
  });
}

/** Kills every node a test file started and left running (by PID, never by name). */
export function killAllNodes(): void {
  for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
}

export function runCli(args: string[], env: Record<string, string>): { code: number | null; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}
