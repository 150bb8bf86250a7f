import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, chmod, lchown, lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../obs/index.js';
import { AeternaError } from '../protocol/index.js';

/**
 * Runs a caller-supplied test command for the Meta-Agent. The command never reaches a shell as
 * text: its argv is handed to `/bin/sh -c '<limits>; exec "$@"'` as positional parameters, so
 * `$(…)`, `;`, `|` and globs stay literal. Each run gets a fresh working directory (also its
 * HOME and TMPDIR), a minimal environment, ulimit CPU and address-space limits, its own process
 * group (killed whole on timeout, abort and exit, so nothing it started outlives it) and, when
 * the server runs as root, an unprivileged user.
 *
 * What it is not: a container. A process that calls setsid() leaves the group and survives the
 * kill; runs that share the `runAs` user can signal one another; without `runAs` (or when the
 * server is not root) the command runs as the server's user and can read what that user can,
 * including /proc/<server pid>/environ. Allow only programs you would let that user run.
 */

export interface CommandSandboxOptions {
  /** Program names (bare, resolved via PATH) a command may start; empty = commands disabled. */
  allow: readonly string[];
  /** Upper bound on any run's wall time. */
  maxTimeoutMs: number;
  /** stdout and stderr are each kept up to this many bytes (the rest counted, dropped). */
  maxOutputBytes: number;
  /** CPU seconds and address-space MiB limits applied with ulimit inside the sandbox (0 = none). */
  cpuSeconds: number;
  memoryMb: number;
  /** When the process runs as root: run the command as this user (e.g. 'nobody'); ignored otherwise. */
  runAs?: string;
  /** Parent folder for per-run working directories (default os.tmpdir()). */
  workRoot?: string;
  /** Most files one run may bring (default 64). */
  maxFiles?: number;
  /** Total UTF-8 bytes of one run's files (default 16 MiB). */
  maxFileBytes?: number;
  /** UTF-8 bytes of one run's stdin (default 16 MiB). */
  maxStdinBytes?: number;
  /** Where a work directory that could not be removed is reported. */
  log?: Logger;
}

export interface SandboxRun {
  argv: readonly string[];
  /** Written into the run's fresh working directory before the command starts; relative paths only, no '..'. */
  files?: Readonly<Record<string, string>>;
  stdin?: string;
  /** Extra environment variables (names ^[A-Z][A-Z0-9_]*$); the sandbox env is otherwise minimal. */
  env?: Readonly<Record<string, string>>;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface SandboxResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  aborted: boolean;
  /** exitCode === 0 and neither timed out nor aborted. */
  passed: boolean;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  durationMs: number;
}

/** The only PATH a command sees, and where its program is looked up. */
export const SANDBOX_PATH = '/usr/local/bin:/usr/bin:/bin';
const SANDBOX_PATH_DIRS = SANDBOX_PATH.split(':');

export const SANDBOX_LIMITS = {
  maxArgs: 64,
  maxArgChars: 4096,
  maxEnvVars: 64,
  maxEnvValueChars: 32_768,
  maxPathChars: 1024,
  maxPathSegmentBytes: 255,
} as const;

const DEFAULT_MAX_FILES = 64;
const DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_STDIN_BYTES = 16 * 1024 * 1024;
/** How long pipes may stay open after the command exited (held by a process that left the group). */
const CLOSE_GRACE_MS = 2000;

// A bare name: no '/', and a leading character that rules out '.' and '..'.
const PROGRAM_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,127}$/;
const ENV_NAME = /^[A-Z][A-Z0-9_]{0,127}$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
/** The sandbox owns these; callers may not replace them. */
const FIXED_ENV = new Set(['PATH', 'HOME', 'TMPDIR', 'LANG']);
/**
 * Variables that make the dynamic loader, libc or the shell load or run something of the
 * caller's choosing (glibc drops the same list for setuid programs), so even a tight allow list
 * of harmless programs could be turned into arbitrary code.
 */
const UNSAFE_ENV = new Set([
  'GCONV_PATH', 'GETCONF_DIR', 'HOSTALIASES', 'LOCALDOMAIN', 'LOCPATH', 'MALLOC_TRACE', 'NIS_PATH', 'NLSPATH',
  'RESOLV_HOST_CONF', 'RES_OPTIONS', 'TZDIR', 'IFS', 'ENV', 'BASH_ENV', 'SHELLOPTS', 'BASHOPTS', 'CDPATH', 'PS4',
]);
const ASCII_SPACE = new Set([' ', '\t', '\n', '\r', '\f', '\v']);

const invalid = (message: string, details: Record<string, unknown>) => new AeternaError('INVALID_ARGUMENT', message, details);

/**
 * Splits a command given as a string (whitespace separated, with simple '…' and "…" quoting, no
 * shell expansion) or takes an argv array; validates. Quotes have no escapes: everything up to
 * the matching quote is literal, and quoted and bare parts next to each other join into one
 * argument (`a'b c'` → `ab c`). A backslash is an ordinary character.
 */
export function parseCommand(input: unknown): string[] {
  if (typeof input === 'string') {
    if (input.length > SANDBOX_LIMITS.maxArgs * (SANDBOX_LIMITS.maxArgChars + 3)) {
      throw invalid('command is too long', { field: 'testCommand', reason: 'too_long' });
    }
    return validateArgv(splitCommand(input));
  }
  if (Array.isArray(input)) return validateArgv(input);
  throw invalid('command must be a string or an array of strings', { field: 'testCommand', reason: 'wrong_type' });
}

function splitCommand(text: string): string[] {
  const args: string[] = [];
  let current = '';
  let inArg = false;
  let quote: string | null = null;
  for (const ch of text) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inArg = true;
    } else if (ASCII_SPACE.has(ch)) {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
    } else {
      current += ch;
      inArg = true;
    }
  }
  if (quote !== null) throw invalid('command has an unterminated quote', { field: 'testCommand', reason: 'unterminated_quote', quote });
  if (inArg) args.push(current);
  return args;
}

/** The shape every argv must have, whoever built it: count, lengths, no NUL, a bare program name. */
function validateArgv(argv: unknown): string[] {
  if (!Array.isArray(argv)) throw invalid('command must be an array of strings', { field: 'testCommand', reason: 'wrong_type' });
  if (argv.length === 0) throw invalid('command is empty', { field: 'testCommand', reason: 'empty' });
  if (argv.length > SANDBOX_LIMITS.maxArgs) {
    throw invalid(`command has more than ${SANDBOX_LIMITS.maxArgs} arguments`, { field: 'testCommand', reason: 'too_many_args', limit: SANDBOX_LIMITS.maxArgs });
  }
  const out: string[] = [];
  for (const [index, arg] of argv.entries()) {
    if (typeof arg !== 'string') throw invalid('command arguments must be strings', { field: 'testCommand', reason: 'wrong_type', index });
    if (arg.length > SANDBOX_LIMITS.maxArgChars) {
      throw invalid(`command argument is longer than ${SANDBOX_LIMITS.maxArgChars} characters`, { field: 'testCommand', reason: 'arg_too_long', index, limit: SANDBOX_LIMITS.maxArgChars });
    }
    if (arg.includes('\u0000')) throw invalid('command arguments must not contain NUL characters', { field: 'testCommand', reason: 'nul', index });
    out.push(arg);
  }
  const program = out[0] as string;
  if (!PROGRAM_NAME.test(program)) {
    throw invalid('the program must be a bare name (no path), resolved on the sandbox PATH', { field: 'testCommand', reason: 'not_a_program_name', program });
  }
  return out;
}

interface SandboxUser {
  uid: number;
  gid: number;
}

export class CommandSandbox {
  private readonly allow: ReadonlySet<string>;
  private readonly script: string;
  private readonly workRoot: string;
  private readonly maxFiles: number;
  private readonly maxFileBytes: number;
  private readonly maxStdinBytes: number;
  private user: Promise<SandboxUser> | undefined;

  constructor(private readonly opts: CommandSandboxOptions) {
    for (const program of opts.allow) {
      if (typeof program !== 'string' || !PROGRAM_NAME.test(program)) {
        throw invalid('sandbox allow list entries must be bare program names', { field: 'allow', program });
      }
    }
    const positive = (field: string, value: unknown) => {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw invalid(`sandbox ${field} must be a positive integer`, { field });
    };
    const nonNegative = (field: string, value: unknown) => {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw invalid(`sandbox ${field} must be a non-negative integer`, { field });
    };
    positive('maxTimeoutMs', opts.maxTimeoutMs);
    nonNegative('maxOutputBytes', opts.maxOutputBytes);
    nonNegative('cpuSeconds', opts.cpuSeconds);
    nonNegative('memoryMb', opts.memoryMb);
    if (opts.maxFiles !== undefined) nonNegative('maxFiles', opts.maxFiles);
    if (opts.maxFileBytes !== undefined) nonNegative('maxFileBytes', opts.maxFileBytes);
    if (opts.maxStdinBytes !== undefined) nonNegative('maxStdinBytes', opts.maxStdinBytes);
    if (opts.runAs !== undefined && opts.runAs !== '' && !USER_NAME.test(opts.runAs)) {
      throw invalid('sandbox runAs must be a user name', { field: 'runAs' });
    }
    if (opts.workRoot !== undefined && !path.isAbsolute(opts.workRoot)) throw invalid('sandbox workRoot must be an absolute path', { field: 'workRoot' });
    this.allow = new Set(opts.allow);
    this.script = limitScript(opts.cpuSeconds, opts.memoryMb);
    this.workRoot = opts.workRoot ?? os.tmpdir();
    this.maxFiles = opts.maxFiles ?? DEFAULT_MAX_FILES;
    this.maxFileBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.maxStdinBytes = opts.maxStdinBytes ?? DEFAULT_MAX_STDIN_BYTES;
  }

  /** Throws AeternaError FORBIDDEN when argv[0] is not allowed (or commands are disabled), INVALID_ARGUMENT for malformed input. */
  check(argv: readonly string[]): void {
    const [program] = validateArgv(argv);
    if (this.allow.size === 0) throw new AeternaError('FORBIDDEN', 'test commands are disabled on this server', { reason: 'commands_disabled', program });
    if (!this.allow.has(program as string)) throw new AeternaError('FORBIDDEN', `program '${program}' is not allowed`, { reason: 'program_not_allowed', program });
  }

  async run(run: SandboxRun): Promise<SandboxResult> {
    this.check(run.argv);
    const argv = validateArgv(run.argv);
    const program = argv[0] as string;
    const timeoutMs = Math.min(validTimeout(run.timeoutMs), this.opts.maxTimeoutMs);
    const files = validateFiles(run.files, this.maxFiles, this.maxFileBytes);
    const extraEnv = validateEnv(run.env);
    const stdin = validateStdin(run.stdin, this.maxStdinBytes);

    if (run.signal?.aborted) return this.unstarted({ aborted: true });
    const resolved = await resolveProgram(program);
    if (resolved === undefined) {
      return this.unstarted({ exitCode: 127, stderr: `sandbox: ${program}: program not found on ${SANDBOX_PATH}\n` });
    }
    const user = await this.sandboxUser();

    let workDir: string;
    try {
      workDir = await mkdtemp(path.join(this.workRoot, 'aeterna-sandbox-'));
    } catch (err) {
      throw new AeternaError('UNAVAILABLE', 'the sandbox could not create a working directory', { reason: 'work_dir', errno: errnoOf(err) });
    }
    try {
      try {
        await writeFiles(workDir, files);
        if (user) await chownTree(workDir, user);
      } catch (err) {
        throw new AeternaError('UNAVAILABLE', 'the sandbox could not prepare the working directory', { reason: 'work_dir', errno: errnoOf(err) });
      }
      if (run.signal?.aborted) return this.unstarted({ aborted: true });
      const env = { ...extraEnv, PATH: SANDBOX_PATH, HOME: workDir, TMPDIR: workDir, LANG: 'C.UTF-8' };
      return await this.spawnIn(workDir, [resolved, ...argv.slice(1)], env, stdin, timeoutMs, user, run.signal);
    } finally {
      await this.remove(workDir);
    }
  }

  /** The uid/gid commands run as; undefined keeps the server's own (not root, or no runAs). */
  private async sandboxUser(): Promise<SandboxUser | undefined> {
    const name = this.opts.runAs;
    if (!name || typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
    // Fail closed: a configured user that cannot be found must never mean "run as root".
    this.user ??= lookupUser(name).catch((err: unknown) => {
      this.user = undefined;
      throw err;
    });
    return this.user;
  }

  private spawnIn(
    workDir: string,
    argv: readonly string[],
    env: Record<string, string>,
    stdin: string,
    timeoutMs: number,
    user: SandboxUser | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SandboxResult> {
    return new Promise((resolve) => {
      const started = performance.now();
      const stdout = new CappedOutput(this.opts.maxOutputBytes);
      const stderr = new CappedOutput(this.opts.maxOutputBytes);
      let timedOut = false;
      let aborted = false;
      let exit: { code: number | null; signal: string | null } | undefined;
      let startError: string | undefined;
      let settled = false;
      let groupMayLive = true;
      let child: ChildProcess | undefined;
      let graceTimer: NodeJS.Timeout | undefined;

      // After the exit-time kill the group id may be recycled by an unrelated process: never signal it again.
      const killGroup = () => {
        if (!groupMayLive || child?.pid === undefined) return;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // ESRCH: the whole group is already gone.
        }
      };
      const onTimeout = () => {
        timedOut = true;
        killGroup();
      };
      const onAbort = () => {
        aborted = true;
        killGroup();
      };
      const timer = setTimeout(onTimeout, timeoutMs);

      const finish = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (graceTimer) clearTimeout(graceTimer);
        signal?.removeEventListener('abort', onAbort);
        if (startError !== undefined) stderr.push(Buffer.from(`sandbox: could not start ${path.basename(argv[0] ?? '')}: ${startError}\n`));
        const exitCode = exit?.code ?? null;
        resolve({
          exitCode,
          signal: exit?.signal ?? null,
          timedOut,
          aborted,
          passed: exitCode === 0 && !timedOut && !aborted && startError === undefined,
          stdout: stdout.text(),
          stderr: stderr.text(),
          stdoutTruncated: stdout.truncated,
          stderrTruncated: stderr.truncated,
          durationMs: Math.round(performance.now() - started),
        });
      };

      try {
        child = spawn('/bin/sh', ['-c', this.script, 'sh', ...argv], {
          cwd: workDir,
          env,
          detached: true,
          stdio: ['pipe', 'pipe', 'pipe'],
          ...(user ? { uid: user.uid, gid: user.gid } : {}),
        });
      } catch (err) {
        startError = errnoOf(err) ?? 'spawn failed';
        finish();
        return;
      }
      const proc = child;
      proc.on('error', (err) => {
        startError ??= errnoOf(err) ?? 'spawn failed';
        killGroup();
        proc.stdout?.destroy();
        proc.stderr?.destroy();
        finish();
      });
      proc.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
      proc.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
      // EPIPE when the program exits or closes stdin without reading all of it: not a failure of the run.
      proc.stdin?.on('error', () => {});
      proc.stdin?.end(stdin);
      proc.on('exit', (code, sig) => {
        exit = { code, signal: sig };
        clearTimeout(timer);
        killGroup();
        groupMayLive = false;
        // A process that escaped the group (setsid) may hold the pipes open; do not wait for it forever.
        graceTimer = setTimeout(() => {
          proc.stdout?.destroy();
          proc.stderr?.destroy();
          finish();
        }, CLOSE_GRACE_MS);
      });
      proc.on('close', finish);
      if (signal) {
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  private unstarted(outcome: { aborted?: boolean; exitCode?: number; stderr?: string }): SandboxResult {
    const stderr = new CappedOutput(this.opts.maxOutputBytes);
    if (outcome.stderr) stderr.push(Buffer.from(outcome.stderr));
    return {
      exitCode: outcome.exitCode ?? null,
      signal: null,
      timedOut: false,
      aborted: outcome.aborted ?? false,
      passed: false,
      stdout: '',
      stderr: stderr.text(),
      stdoutTruncated: false,
      stderrTruncated: stderr.truncated,
      durationMs: 0,
    };
  }

  private async remove(dir: string): Promise<void> {
    try {
      await rm(dir, { recursive: true, force: true, maxRetries: 2 });
      return;
    } catch (err) {
      // Not root: the command may have left directories it made unwritable; it ran as this same
      // user, so giving them back the write bit only touches what it could already change.
      if (typeof process.getuid === 'function' && process.getuid() !== 0) {
        try {
          await makeWritable(dir);
          await rm(dir, { recursive: true, force: true, maxRetries: 2 });
          return;
        } catch {
          // reported below
        }
      }
      this.opts.log?.warn({ dir, errno: errnoOf(err) }, 'sandbox working directory was not removed');
    }
  }
}

/** `set -e` so a limit that cannot be applied stops the run instead of running it unlimited. */
function limitScript(cpuSeconds: number, memoryMb: number): string {
  const lines = ['set -e', 'ulimit -c 0'];
  if (cpuSeconds > 0) lines.push(`ulimit -t ${cpuSeconds}`);
  // dash's -v counts KiB.
  if (memoryMb > 0) lines.push(`ulimit -v ${memoryMb * 1024}`);
  lines.push('exec "$@"');
  return lines.join('; ');
}

function validTimeout(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw invalid('timeoutMs must be a positive integer', { field: 'timeoutMs' });
  }
  return value;
}

function validateStdin(value: unknown, maxBytes: number): string {
  if (value === undefined) return '';
  if (typeof value !== 'string') throw invalid('stdin must be a string', { field: 'stdin' });
  if (Buffer.byteLength(value) > maxBytes) throw new AeternaError('PAYLOAD_TOO_LARGE', `stdin is larger than ${maxBytes} bytes`, { field: 'stdin', limit: maxBytes });
  return value;
}

function validateEnv(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid('env must be an object of strings', { field: 'env' });
  const entries = Object.entries(value);
  if (entries.length > SANDBOX_LIMITS.maxEnvVars) {
    throw invalid(`env has more than ${SANDBOX_LIMITS.maxEnvVars} variables`, { field: 'env', reason: 'too_many', limit: SANDBOX_LIMITS.maxEnvVars });
  }
  const env: Record<string, string> = {};
  for (const [name, val] of entries) {
    if (!ENV_NAME.test(name)) throw invalid('env names must match ^[A-Z][A-Z0-9_]*$', { field: 'env', reason: 'bad_name', name });
    if (FIXED_ENV.has(name) || UNSAFE_ENV.has(name) || name.startsWith('LD_')) {
      throw invalid(`env variable ${name} may not be set`, { field: 'env', reason: 'reserved_name', name });
    }
    if (typeof val !== 'string') throw invalid('env values must be strings', { field: 'env', reason: 'wrong_type', name });
    if (val.length > SANDBOX_LIMITS.maxEnvValueChars || val.includes('\u0000')) {
      throw invalid('env value is too long or contains NUL', { field: 'env', reason: 'bad_value', name });
    }
    env[name] = val;
  }
  return env;
}

/** Relative paths made of plain segments; a path can't be both a file and another file's folder. */
function validateFiles(value: unknown, maxFiles: number, maxBytes: number): [string, string][] {
  if (value === undefined) return [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid('files must be an object of path → content', { field: 'files' });
  const entries = Object.entries(value);
  if (entries.length > maxFiles) throw invalid(`more than ${maxFiles} files`, { field: 'files', reason: 'too_many', limit: maxFiles });
  const files = new Set<string>();
  const folders = new Set<string>();
  let total = 0;
  for (const [file, content] of entries) {
    const bad = (reason: string) => invalid('file paths must be relative, without "." or ".." segments', { field: 'files', reason, path: file.slice(0, 200) });
    if (file.length === 0 || file.length > SANDBOX_LIMITS.maxPathChars) throw bad('bad_length');
    if (file.includes('\u0000')) throw bad('nul');
    if (file.startsWith('/')) throw bad('absolute');
    const segments = file.split('/');
    for (const segment of segments) {
      if (segment === '..') throw bad('parent_segment');
      if (segment === '' || segment === '.') throw bad('empty_segment');
      if (Buffer.byteLength(segment) > SANDBOX_LIMITS.maxPathSegmentBytes) throw bad('segment_too_long');
    }
    for (let i = 1; i < segments.length; i++) folders.add(segments.slice(0, i).join('/'));
    files.add(file);
    if (typeof content !== 'string') throw invalid('file contents must be strings', { field: 'files', reason: 'wrong_type', path: file.slice(0, 200) });
    total += Buffer.byteLength(content);
    if (total > maxBytes) throw new AeternaError('PAYLOAD_TOO_LARGE', `files are larger than ${maxBytes} bytes in total`, { field: 'files', limit: maxBytes });
  }
  for (const file of files) {
    if (folders.has(file)) throw invalid('a file path is also used as a folder', { field: 'files', reason: 'file_and_folder', path: file.slice(0, 200) });
  }
  return entries as [string, string][];
}

async function writeFiles(workDir: string, files: readonly [string, string][]): Promise<void> {
  for (const [file, content] of files) {
    const target = path.join(workDir, file);
    await mkdir(path.dirname(target), { recursive: true });
    // 'wx': the directory is fresh and ours, so an existing entry would be a bug, never overwritten.
    await writeFile(target, content, { flag: 'wx' });
  }
}

/** Hands the run's directory and everything we wrote in it to the sandbox user. */
async function chownTree(dir: string, user: SandboxUser): Promise<void> {
  await lchown(dir, user.uid, user.gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(full, user);
    else await lchown(full, user.uid, user.gid);
  }
}

async function makeWritable(dir: string): Promise<void> {
  const info = await lstat(dir);
  if (!info.isDirectory()) return;
  await chmod(dir, 0o700);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await makeWritable(path.join(dir, entry.name));
  }
}

async function resolveProgram(name: string): Promise<string | undefined> {
  for (const dir of SANDBOX_PATH_DIRS) {
    const candidate = path.join(dir, name);
    try {
      if (!(await stat(candidate)).isFile()) continue;
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here: try the next folder
    }
  }
  return undefined;
}

/** `id` rather than parsing /etc/passwd, so users from NSS (LDAP, systemd-userdb) work too. */
async function lookupUser(name: string): Promise<SandboxUser> {
  const idOf = (flag: '-u' | '-g') =>
    new Promise<number>((resolve, reject) => {
      execFile('id', [flag, name], { env: { PATH: SANDBOX_PATH, LANG: 'C' }, timeout: 10_000 }, (err, out) => {
        const n = Number(String(out).trim());
        if (err || String(out).trim() === '' || !Number.isSafeInteger(n) || n < 0) {
          reject(new AeternaError('UNAVAILABLE', `the sandbox user '${name}' does not exist`, { reason: 'sandbox_user_unknown', user: name }));
        } else resolve(n);
      });
    });
  return { uid: await idOf('-u'), gid: await idOf('-g') };
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Keeps the first `limit` bytes of a stream and counts the rest. */
class CappedOutput {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private total = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    const room = this.limit - this.kept;
    if (room <= 0) return;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(part);
    this.kept += part.length;
  }

  get truncated(): boolean {
    return this.total > this.kept;
  }

  text(): string {
    const bytes = Buffer.concat(this.chunks);
    // A cut in the middle of a character would decode to U+FFFD; end at the last whole one instead.
    return (this.truncated ? bytes.subarray(0, wholeUtf8Length(bytes)) : bytes).toString('utf8');
  }
}

function wholeUtf8Length(bytes: Buffer): number {
  let start = bytes.length - 1;
  // Walk back over at most three continuation bytes (10xxxxxx) to the last character's first byte.
  while (start >= 0 && bytes.length - start <= 3 && ((bytes[start] as number) & 0xc0) === 0x80) start--;
  if (start < 0) return bytes.length;
  const lead = bytes[start] as number;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return bytes.length - start < need ? start : bytes.length;
}
