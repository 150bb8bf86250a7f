import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandSandbox, parseCommand, type CommandSandboxOptions, type SandboxResult } from '../../src/cca/index.js';
import { rejectionOf } from '../support/backends.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const SAFE_PATH = '/usr/local/bin:/usr/bin:/bin';

/** The error a synchronous call throws, for asserting on its code and details. */
function thrownBy(fn: () => unknown): { code?: string; message: string; details?: Record<string, unknown> } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string; details?: Record<string, unknown> };
  }
  throw new Error('expected the call to throw, but it returned');
}

/** True once the pid is gone or a zombie (dead, not yet reaped by whoever inherited it). */
function isDead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself contain ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** Polls (SIGKILL is delivered asynchronously); a generous bound, not a timing assertion. */
async function waitUntilDead(pid: number): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (isDead(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

function pidFrom(result: SandboxResult): number {
  const pid = Number(result.stdout.trim().split('\n')[0]);
  expect(Number.isSafeInteger(pid) && pid > 1).toBe(true);
  return pid;
}

describe('parseCommand', () => {
  it('splits on whitespace and honours simple single and double quotes', () => {
    expect(parseCommand('npm test')).toEqual(['npm', 'test']);
    expect(parseCommand('  python3   -m\tpytest \n -q  ')).toEqual(['python3', '-m', 'pytest', '-q']);
    expect(parseCommand(`sh -c 'grep -qx fixed solution.txt'`)).toEqual(['sh', '-c', 'grep -qx fixed solution.txt']);
    expect(parseCommand(`echo "it's" 'say "hi"'`)).toEqual(['echo', "it's", 'say "hi"']);
    // Quoted and bare parts next to each other join into one argument; empty quotes are an argument.
    expect(parseCommand(`echo a'b c'd "" x`)).toEqual(['echo', 'ab cd', '', 'x']);
    // No escapes: a backslash is an ordinary character.
    expect(parseCommand(String.raw`echo a\ b "c\"`)).toEqual(['echo', 'a\\', 'b', 'c\\']);
  });

  it('passes shell syntax through literally, unquoted or quoted', () => {
    expect(parseCommand('echo $(id) ; | * $HOME `id` && > out')).toEqual(['echo', '$(id)', ';', '|', '*', '$HOME', '`id`', '&&', '>', 'out']);
    expect(parseCommand(`echo '$(id)' "$HOME"`)).toEqual(['echo', '$(id)', '$HOME']);
  });

  it('takes an argv array as it is', () => {
    expect(parseCommand(['sh', '-c', 'exit 0', ''])).toEqual(['sh', '-c', 'exit 0', '']);
  });

  it.each<[string, unknown, string]>([
    ['an empty string', '', 'empty'],
    ['only whitespace', ' \t\n ', 'empty'],
    ['an empty array', [], 'empty'],
    ['an unterminated quote', `echo 'oops`, 'unterminated_quote'],
    ['a number', 42, 'wrong_type'],
    ['null', null, 'wrong_type'],
    ['an object', { argv: ['ls'] }, 'wrong_type'],
    ['a non-string argument', ['echo', 1], 'wrong_type'],
    ['too many arguments', ['echo', ...Array.from({ length: 64 }, (_, i) => String(i))], 'too_many_args'],
    ['a too long argument', ['echo', 'x'.repeat(4097)], 'arg_too_long'],
    ['a NUL character', ['echo', 'a\u0000b'], 'nul'],
    ['a path as the program', '/bin/sh -c id', 'not_a_program_name'],
    ['a relative path as the program', './run-tests', 'not_a_program_name'],
    ['a parent folder as the program', '..', 'not_a_program_name'],
    ['a program in a parent folder', ['../sh'], 'not_a_program_name'],
    ['an empty program name', ['', 'x'], 'not_a_program_name'],
  ])('rejects %s with INVALID_ARGUMENT', (_what, input, reason) => {
    const err = thrownBy(() => parseCommand(input));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.details).toMatchObject({ field: 'testCommand', reason });
  });

  it('accepts the limits themselves', () => {
    const argv = ['echo', ...Array.from({ length: 63 }, () => 'y'.repeat(4096))];
    expect(parseCommand(argv)).toHaveLength(64);
  });
});

describe('CommandSandbox', () => {
  let workRoot: string;
  const secret = 'postgres://app:' + 'sandbox-secret-pw' + '@db.internal/prod';
  const savedSecret = process.env.AETERNA_DATABASE_URL;
  const nobody = isRoot ? { uid: execFileSync('id', ['-u', 'nobody']).toString().trim(), gid: execFileSync('id', ['-g', 'nobody']).toString().trim() } : undefined;

  const sandbox = (overrides: Partial<CommandSandboxOptions> = {}) =>
    new CommandSandbox({
      allow: ['sh', 'echo', 'env', 'cat', 'true', 'pwd', 'id', 'no-such-program-aeterna'],
      maxTimeoutMs: 20_000,
      maxOutputBytes: 64 * 1024,
      cpuSeconds: 0,
      memoryMb: 0,
      runAs: 'nobody',
      workRoot,
      ...overrides,
    });

  beforeAll(async () => {
    // A world-traversable parent (like /tmp), so the runAs user can reach its own work dir.
    workRoot = await mkdtemp(path.join(os.tmpdir(), 'aeterna-sandbox-test-'));
    await chmod(workRoot, 0o755);
    process.env.AETERNA_DATABASE_URL = secret;
  });
  afterAll(async () => {
    if (savedSecret === undefined) delete process.env.AETERNA_DATABASE_URL;
    else process.env.AETERNA_DATABASE_URL = savedSecret;
    await rm(workRoot, { recursive: true, force: true });
  });

  describe('check', () => {
    it('accepts allowed programs and forbids the rest with stable details', () => {
      const box = sandbox({ allow: ['python3', 'npm'] });
      expect(() => box.check(['python3', '-m', 'pytest'])).not.toThrow();
      expect(() => box.check(['npm'])).not.toThrow();
      const err = thrownBy(() => box.check(['rm', '-rf', '/']));
      expect(err.code).toBe('FORBIDDEN');
      expect(err.details).toEqual({ reason: 'program_not_allowed', program: 'rm' });
      // The allow list names programs, not paths: a path to an allowed one is still malformed.
      expect(thrownBy(() => box.check(['/usr/bin/python3'])).code).toBe('INVALID_ARGUMENT');
      expect(thrownBy(() => box.check([])).code).toBe('INVALID_ARGUMENT');
    });

    it('forbids every program when commands are disabled', () => {
      const err = thrownBy(() => sandbox({ allow: [] }).check(['true']));
      expect(err.code).toBe('FORBIDDEN');
      expect(err.details).toMatchObject({ reason: 'commands_disabled', program: 'true' });
    });

    it('refuses a configuration it cannot enforce', () => {
      expect(thrownBy(() => sandbox({ allow: ['/bin/sh'] })).details).toMatchObject({ field: 'allow', program: '/bin/sh' });
      expect(thrownBy(() => sandbox({ allow: ['..'] })).details).toMatchObject({ field: 'allow' });
      expect(thrownBy(() => sandbox({ maxTimeoutMs: 0 })).details).toMatchObject({ field: 'maxTimeoutMs' });
      expect(thrownBy(() => sandbox({ cpuSeconds: -1 })).details).toMatchObject({ field: 'cpuSeconds' });
      expect(thrownBy(() => sandbox({ memoryMb: 1.5 })).details).toMatchObject({ field: 'memoryMb' });
      expect(thrownBy(() => sandbox({ runAs: 'nobody; id' })).details).toMatchObject({ field: 'runAs' });
      expect(thrownBy(() => sandbox({ workRoot: 'relative/dir' })).details).toMatchObject({ field: 'workRoot' });
    });
  });

  describe('run', () => {
    it('passes on exit code 0 and reports other exit codes as failures', async () => {
      const box = sandbox();
      const ok = await box.run({ argv: ['true'], timeoutMs: 10_000 });
      expect(ok).toMatchObject({ exitCode: 0, signal: null, passed: true, timedOut: false, aborted: false });
      const failed = await box.run({ argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'], timeoutMs: 10_000 });
      expect(failed).toMatchObject({ exitCode: 3, passed: false, stdout: 'out\n', stderr: 'err\n', stdoutTruncated: false, stderrTruncated: false });
    });

    it('passes shell syntax to the program literally, never to a shell', async () => {
      const box = sandbox();
      const result = await box.run({ argv: parseCommand(`echo '$(id)' $(id) ';' | * \`id\` $HOME && x`), timeoutMs: 10_000 });
      expect(result.stdout).toBe('$(id) $(id) ; | * `id` $HOME && x\n');
      expect(result.passed).toBe(true);
    });

    it('refuses programs that are not allowed before starting anything', async () => {
      const box = sandbox();
      expect((await rejectionOf(box.run({ argv: ['ls'], timeoutMs: 1000 }))).code).toBe('FORBIDDEN');
      expect((await rejectionOf(box.run({ argv: ['/bin/sh', '-c', 'id'], timeoutMs: 1000 }))).code).toBe('INVALID_ARGUMENT');
      expect((await rejectionOf(sandbox({ allow: [] }).run({ argv: ['true'], timeoutMs: 1000 }))).code).toBe('FORBIDDEN');
      expect(await readdir(workRoot)).toEqual([]);
    });

    it('gives the command only the fixed environment and the extra variables it was given', async () => {
      const box = sandbox();
      const result = await box.run({ argv: ['env'], env: { AETERNA_META_ITERATION: '2', GREETING: 'hello world' }, timeoutMs: 10_000 });
      expect(result.passed).toBe(true);
      expect(result.stdout).not.toContain('sandbox-secret-pw');
      const vars = new Map(
        result.stdout
          .trim()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
      );
      expect(vars.has('AETERNA_DATABASE_URL')).toBe(false);
      expect(vars.get('PATH')).toBe(SAFE_PATH);
      expect(vars.get('LANG')).toBe('C.UTF-8');
      expect(vars.get('AETERNA_META_ITERATION')).toBe('2');
      expect(vars.get('GREETING')).toBe('hello world');
      const home = vars.get('HOME') ?? '';
      expect(path.dirname(home)).toBe(workRoot);
      expect(vars.get('TMPDIR')).toBe(home);
      // dash exports PWD on its own; nothing else may appear.
      expect([...vars.keys()].sort()).toEqual(['AETERNA_META_ITERATION', 'GREETING', 'HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']);
      expect(vars.get('PWD')).toBe(home);
    });

    it.each<[string, Record<string, string>, string]>([
      ['a lower-case name', { path: '/tmp' }, 'bad_name'],
      ['a name with a dash', { 'MY-VAR': 'x' }, 'bad_name'],
      ['PATH', { PATH: '/tmp' }, 'reserved_name'],
      ['HOME', { HOME: '/root' }, 'reserved_name'],
      ['LD_PRELOAD', { LD_PRELOAD: '/tmp/evil.so' }, 'reserved_name'],
      ['BASH_ENV', { BASH_ENV: '/tmp/x' }, 'reserved_name'],
      ['a NUL in a value', { OK: 'a\u0000b' }, 'bad_value'],
    ])('rejects env with %s', async (_what, env, reason) => {
      const err = await rejectionOf(sandbox().run({ argv: ['true'], env, timeoutMs: 1000 }));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.details).toMatchObject({ field: 'env', reason });
    });

    it('writes the files into a fresh working directory, feeds stdin, and removes the directory afterwards', async () => {
      const box = sandbox();
      const result = await box.run({
        argv: ['sh', '-c', 'pwd; cat solution.txt; cat lib/deep/util.txt; cat; touch made-by-the-command'],
        files: { 'solution.txt': 'fixed\n', 'lib/deep/util.txt': 'helper ✓\n' },
        stdin: 'from stdin\n',
        timeoutMs: 10_000,
      });
      expect(result.stderr).toBe('');
      const [dir, ...rest] = result.stdout.split('\n');
      expect(rest.join('\n')).toBe('fixed\nhelper ✓\nfrom stdin\n');
      expect(path.dirname(dir ?? '')).toBe(workRoot);
      expect(result.passed).toBe(true);
      expect(existsSync(dir ?? '/')).toBe(false);
      expect(await readdir(workRoot)).toEqual([]);

      // Each run gets its own directory: nothing from the last one is left.
      const next = await box.run({ argv: ['sh', '-c', 'pwd; ls -A'], timeoutMs: 10_000 });
      const [nextDir, ...listing] = next.stdout.trim().split('\n');
      expect(nextDir).not.toBe(dir);
      expect(listing).toEqual([]);
    });

    it('removes a working directory the command made hard to delete', async () => {
      const result = await sandbox().run({ argv: ['sh', '-c', 'mkdir -p a/b && touch a/b/c && chmod 000 a/b a; ln -s / root-link; pwd'], timeoutMs: 10_000 });
      expect(result.passed).toBe(true);
      expect(existsSync(result.stdout.trim())).toBe(false);
      expect(await readdir(workRoot)).toEqual([]);
      expect(existsSync('/bin/sh')).toBe(true);
    });

    it.each<[string, Record<string, string>, string, string]>([
      ['an absolute path', { '/etc/cron.d/x': 'x' }, 'INVALID_ARGUMENT', 'absolute'],
      ['a parent segment', { '../escape.txt': 'x' }, 'INVALID_ARGUMENT', 'parent_segment'],
      ['a parent segment inside', { 'a/../../escape.txt': 'x' }, 'INVALID_ARGUMENT', 'parent_segment'],
      ['an empty path', { '': 'x' }, 'INVALID_ARGUMENT', 'bad_length'],
      ['a trailing slash', { 'dir/': 'x' }, 'INVALID_ARGUMENT', 'empty_segment'],
      ['a dot segment', { './a.txt': 'x' }, 'INVALID_ARGUMENT', 'empty_segment'],
      ['a NUL', { 'a\u0000b': 'x' }, 'INVALID_ARGUMENT', 'nul'],
      ['a file that is also a folder', { a: 'x', 'a/b': 'y' }, 'INVALID_ARGUMENT', 'file_and_folder'],
    ])('rejects files with %s', async (_what, files, code, reason) => {
      const err = await rejectionOf(sandbox().run({ argv: ['true'], files, timeoutMs: 1000 }));
      expect(err.code).toBe(code);
      expect(err.details).toMatchObject({ field: 'files', reason });
      expect(await readdir(workRoot)).toEqual([]);
    });

    it('caps the number and total size of files, and the size of stdin', async () => {
      const box = sandbox({ maxFiles: 2, maxFileBytes: 10, maxStdinBytes: 4 });
      const tooMany = await rejectionOf(box.run({ argv: ['true'], files: { a: '', b: '', c: '' }, timeoutMs: 1000 }));
      expect(tooMany).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'files', reason: 'too_many', limit: 2 } });
      const tooBig = await rejectionOf(box.run({ argv: ['true'], files: { a: '123456', b: 'ééé' }, timeoutMs: 1000 }));
      expect(tooBig).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { field: 'files', limit: 10 } });
      const bigStdin = await rejectionOf(box.run({ argv: ['true'], stdin: 'ééé', timeoutMs: 1000 }));
      expect(bigStdin).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { field: 'stdin', limit: 4 } });
      expect((await box.run({ argv: ['cat', 'a', 'b'], files: { a: '12345', b: 'éé' }, stdin: 'éé', timeoutMs: 10_000 })).stdout).toBe('12345éé');
    });

    it.each<[string, number]>([
      ['zero', 0],
      ['negative', -5],
      ['fractional', 1.5],
      ['NaN', Number.NaN],
    ])('rejects a %s timeout', async (_what, timeoutMs) => {
      const err = await rejectionOf(sandbox().run({ argv: ['true'], timeoutMs }));
      expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'timeoutMs' } });
    });

    it('does not fail when the program ignores a large stdin', async () => {
      const result = await sandbox().run({ argv: ['true'], stdin: 'x'.repeat(4 * 1024 * 1024), timeoutMs: 10_000 });
      expect(result).toMatchObject({ exitCode: 0, passed: true });
    });

    it('reports a program missing from the PATH as a failed run with exit code 127', async () => {
      const result = await sandbox().run({ argv: ['no-such-program-aeterna', '--version'], timeoutMs: 10_000 });
      expect(result).toMatchObject({ exitCode: 127, passed: false, timedOut: false, aborted: false, stdout: '' });
      expect(result.stderr).toContain('no-such-program-aeterna: program not found');
      expect(await readdir(workRoot)).toEqual([]);
    });

    it('fails cleanly when the working directory cannot be created', async () => {
      const err = await rejectionOf(sandbox({ workRoot: path.join(workRoot, 'missing', 'deeper') }).run({ argv: ['true'], timeoutMs: 1000 }));
      expect(err).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'work_dir', errno: 'ENOENT' } });
    });

    it('kills the whole process group on timeout, grandchildren included', async () => {
      const result = await sandbox().run({ argv: ['sh', '-c', 'sleep 30 & echo $!; wait'], timeoutMs: 3000 });
      expect(result).toMatchObject({ timedOut: true, aborted: false, passed: false, exitCode: null, signal: 'SIGKILL' });
      expect(await waitUntilDead(pidFrom(result))).toBe(true);
      expect(await readdir(workRoot)).toEqual([]);
    });

    it('caps the timeout at maxTimeoutMs', async () => {
      const result = await sandbox({ maxTimeoutMs: 2000 }).run({ argv: ['sh', '-c', 'sleep 60'], timeoutMs: 600_000 });
      expect(result).toMatchObject({ timedOut: true, passed: false });
    });

    it('kills what the command left running in the background when it exits', async () => {
      const result = await sandbox().run({ argv: ['sh', '-c', 'sleep 30 >/dev/null 2>&1 & echo $!'], timeoutMs: 20_000 });
      expect(result).toMatchObject({ exitCode: 0, passed: true, timedOut: false });
      expect(await waitUntilDead(pidFrom(result))).toBe(true);
    });

    it('stops on an abort signal, killing the process group', async () => {
      const controller = new AbortController();
      const running = sandbox().run({ argv: ['sh', '-c', 'sleep 30 & echo $!; wait'], timeoutMs: 20_000, signal: controller.signal });
      setTimeout(() => controller.abort(), 1500);
      const result = await running;
      expect(result).toMatchObject({ aborted: true, timedOut: false, passed: false, signal: 'SIGKILL' });
      expect(await waitUntilDead(pidFrom(result))).toBe(true);
      expect(await readdir(workRoot)).toEqual([]);
    });

    it('does not start a run whose signal is already aborted', async () => {
      const result = await sandbox().run({ argv: ['echo', 'started'], timeoutMs: 10_000, signal: AbortSignal.abort() });
      expect(result).toMatchObject({ aborted: true, passed: false, exitCode: null, stdout: '' });
      expect(await readdir(workRoot)).toEqual([]);
    });

    it('keeps at most maxOutputBytes of each stream, cut on a character boundary', async () => {
      const box = sandbox({ maxOutputBytes: 51 });
      const result = await box.run({ argv: ['sh', '-c', 'cat wide.txt; echo short >&2'], files: { 'wide.txt': 'é'.repeat(1000) }, timeoutMs: 10_000 });
      expect(result).toMatchObject({ passed: true, stdoutTruncated: true, stderrTruncated: false, stderr: 'short\n' });
      // 51 bytes hold 25 two-byte characters and half of the 26th, which is dropped.
      expect(result.stdout).toBe('é'.repeat(25));
      const exact = await box.run({ argv: ['sh', '-c', 'head -c 51 /dev/zero | tr "\\0" a'], timeoutMs: 10_000 });
      expect(exact).toMatchObject({ stdout: 'a'.repeat(51), stdoutTruncated: false });
      const large = await box.run({ argv: ['sh', '-c', 'head -c 5000000 /dev/zero | tr "\\0" b; head -c 100 /dev/zero | tr "\\0" c >&2'], timeoutMs: 20_000 });
      expect(large).toMatchObject({ passed: true, stdout: 'b'.repeat(51), stdoutTruncated: true, stderr: 'c'.repeat(51), stderrTruncated: true });
    });

    it('applies the ulimit CPU and memory limits', async () => {
      const limits = await sandbox({ cpuSeconds: 7, memoryMb: 256 }).run({ argv: ['sh', '-c', 'ulimit -t; ulimit -v; ulimit -c'], timeoutMs: 10_000 });
      expect(limits.stdout).toBe('7\n262144\n0\n');
      const none = await sandbox().run({ argv: ['sh', '-c', 'ulimit -t; ulimit -v'], timeoutMs: 10_000 });
      expect(none.stdout).toBe('unlimited\nunlimited\n');
    });

    it('kills a busy loop at the CPU limit', async () => {
      const result = await sandbox({ cpuSeconds: 1 }).run({ argv: ['sh', '-c', 'while :; do :; done'], timeoutMs: 20_000 });
      expect(result.timedOut).toBe(false);
      expect(result.passed).toBe(false);
      expect(['SIGKILL', 'SIGXCPU']).toContain(result.signal);
    });

    it('stops a command that allocates past the memory limit', async () => {
      const box = sandbox({ memoryMb: 64 });
      const small = await box.run({ argv: ['sh', '-c', 'x=$(head -c 1000 /dev/zero | tr "\\0" a); echo ${#x}'], timeoutMs: 20_000 });
      expect(small).toMatchObject({ passed: true, stdout: '1000\n' });
      const big = await box.run({ argv: ['sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo ${#x}'], timeoutMs: 20_000 });
      expect(big.passed).toBe(false);
      expect(big.stdout).not.toBe('200000000\n');
    });

    it.skipIf(!isRoot)('runs as the runAs user, without root groups, in a directory it owns', async () => {
      const result = await sandbox().run({
        argv: ['sh', '-c', 'id -u; id -g; id -G; stat -c %u:%g . solution.txt; cat solution.txt; touch new-file && echo wrote'],
        files: { 'solution.txt': 'mine' },
        timeoutMs: 10_000,
      });
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe(`${nobody?.uid}\n${nobody?.gid}\n${nobody?.gid}\n${nobody?.uid}:${nobody?.gid}\n${nobody?.uid}:${nobody?.gid}\nmine` + 'wrote\n');
      // The same sandbox without runAs keeps root, proving the uid above came from runAs.
      expect((await sandbox({ runAs: undefined }).run({ argv: ['id', '-u'], timeoutMs: 10_000 })).stdout).toBe('0\n');
    });

    it.skipIf(!isRoot)('cannot read root-only files or signal the server as the runAs user', async () => {
      const result = await sandbox().run({ argv: ['sh', '-c', `cat /proc/${process.pid}/environ >/dev/null && echo read-environ; kill -0 ${process.pid} && echo can-signal; true`], timeoutMs: 10_000 });
      expect(result.stdout).toBe('');
      expect(result.stderr).not.toBe('');
    });

    it.skipIf(!isRoot)('refuses to run, rather than run as root, when the runAs user does not exist', async () => {
      const err = await rejectionOf(sandbox({ runAs: 'no_such_user_aeterna' }).run({ argv: ['id', '-u'], timeoutMs: 10_000 }));
      expect(err).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'sandbox_user_unknown', user: 'no_such_user_aeterna' } });
      expect(await readdir(workRoot)).toEqual([]);
    });

    it('runs concurrent commands in separate directories', async () => {
      const box = sandbox();
      const results = await Promise.all([1, 2, 3].map((n) => box.run({ argv: ['sh', '-c', 'pwd; cat n.txt'], files: { 'n.txt': String(n) }, timeoutMs: 10_000 })));
      const dirs = results.map((r) => r.stdout.split('\n')[0]);
      expect(new Set(dirs).size).toBe(3);
      expect(results.map((r) => r.stdout.split('\n')[1])).toEqual(['1', '2', '3']);
      expect(await readdir(workRoot)).toEqual([]);
    });
  });
});
