import type { MetaConfig } from '../config.js';
import type { MemoryService } from '../memory/index.js';
import type { Logger } from '../obs/index.js';
import {
  AeternaError,
  isAeternaError,
  type MetaCandidateSource,
  type MetaEscalation,
  type MetaHindsightHint,
  type MetaStopReason,
  type MetaTestOutcome,
} from '../protocol/index.js';
import type { TenantContext } from '../tenancy/index.js';
import type { ContextArchitect } from './context.js';
import type { HindsightService } from './hindsight.js';
import { sleep } from './http.js';
import { jsonObjectIn, type Llm, type LlmMessage } from './llm.js';
import { excerpt, isTerminal, tail, type MetaIterationState, type MetaRunState, type MetaRunStore } from './meta-store.js';
import { capUtf8 } from './redact.js';
import type { CommandSandbox } from './sandbox.js';

/** The job kind `meta.started` asks for. */
export const META_JOB = 'cca.meta';

/** Failed tests are filed with hindsight under this error type, so later runs find their fixes. */
export const META_FAILURE_TYPE = 'TestFailure';

/** What the model sees of a failing test's output: its end, where test runners print the failure. */
const FAILURE_TAIL_CHARS = 3000;
const SOLUTION_FILE = 'solution.txt';
const REPLY_MAX_TOKENS = 4096;

export interface MetaAgentOptions {
  store: MetaRunStore;
  /** The model, charged to the run's tenant; undefined when none is configured. */
  llmFor: ((tenantId: string) => Llm) | undefined;
  context: ContextArchitect;
  memory: MemoryService;
  hindsight: HindsightService;
  sandbox: CommandSandbox;
  config: MetaConfig;
  log?: Logger;
  /** How often a waiting run looks for a caller's verdict or a cancel request. */
  pollMs?: number;
}

interface Candidate {
  iteration: number;
  source: MetaCandidateSource;
  solution: string;
  rationale: string;
  hints: MetaHindsightHint[];
}

/** Why a run stopped early, carried as an AbortSignal reason. */
class RunStop extends Error {
  constructor(
    readonly reason: MetaStopReason | 'shutdown',
    cause?: unknown,
  ) {
    super(`meta run stopped: ${reason}`, cause === undefined ? undefined : { cause });
  }
}

function stopReasonOf(err: unknown, signal: AbortSignal): MetaStopReason | 'shutdown' | undefined {
  if (signal.aborted && signal.reason instanceof RunStop) return signal.reason.reason;
  if (err instanceof RunStop) return err.reason;
  if (isAeternaError(err) && err.code === 'RATE_LIMITED') return 'budget_exhausted';
  // Anything else (the database, say) fails the job, which retries and resumes the run.
  return undefined;
}

const REPLY_FORMAT =
  'Reply with one JSON object {"solution": string, "rationale": string}: "solution" is the complete artifact to be tested ' +
  '(code, configuration or text: whatever the goal asks for), whole rather than a diff, without commentary; "rationale" says in ' +
  'one or two sentences what you did and why.';

const SYSTEM_PROMPT = `You are Aeterna's Meta-Agent. You reach a goal in build, test and improve iterations: you propose a solution, an automated check tests it, and when it fails you get its output and propose a corrected solution. ${REPLY_FORMAT}`;

/**
 * The Meta-Agent: build → test → improve until the test passes, the iterations run out or the
 * time budget is spent. Every step is persisted before the next begins (MetaRunStore), so a job
 * that re-runs after a crash continues where the run was: a tested iteration is never tested
 * again and a candidate written before the crash is tested rather than asked for anew.
 *
 * Lessons flow both ways through hindsight: a failed test is reported as an error pattern; the
 * improve step first looks up resolutions that fixed similar failures and hands them to the model;
 * the outcome of a tried resolution is recorded, and a fix that passes becomes the resolution of
 * the failure it fixed.
 */
export class MetaAgent {
  private readonly pollMs: number;

  constructor(private readonly opts: MetaAgentOptions) {
    this.pollMs = opts.pollMs ?? 250;
  }

  /** Runs (or resumes) a run to its end; returns its final state. `signal` is the job's: shutdown. */
  async run(tenantId: string, runId: string, signal?: AbortSignal): Promise<MetaRunState> {
    const { store } = this.opts;
    let run = await store.load(tenantId, runId);
    if (isTerminal(run.status)) return run;
    if (!this.opts.llmFor) {
      await this.stop(run, [], 'llm_not_configured');
      return store.load(tenantId, runId);
    }
    run = await store.markRunning(tenantId, runId, new Date());
    if (isTerminal(run.status)) return run;
    const llm = this.opts.llmFor(tenantId);

    const stopper = new AbortController();
    const stopWith = (reason: MetaStopReason | 'shutdown') => {
      if (!stopper.signal.aborted) stopper.abort(new RunStop(reason));
    };
    const onShutdown = () => stopWith('shutdown');
    if (signal?.aborted) onShutdown();
    signal?.addEventListener('abort', onShutdown, { once: true });
    const deadline = Date.parse(run.deadlineAt ?? new Date().toISOString());
    const deadlineTimer = setTimeout(() => stopWith('time_budget'), Math.max(0, deadline - Date.now()));
    const cancelPoll = setInterval(() => {
      store.cancelRequested(tenantId, runId).then(
        (yes) => yes && stopWith('cancelled'),
        () => undefined,
      );
    }, this.pollMs * 4);

    let iterations: MetaIterationState[] = [];
    try {
      iterations = await store.iterations(tenantId, runId);
      if (run.cancelRequested) stopWith('cancelled');
      for (let n = 1; n <= run.maxIterations; n++) {
        stopper.signal.throwIfAborted();
        const done = iterations[n - 1];
        if (done?.testState === 'done' && done.test) {
          if (done.test.passed) return await this.succeed(run, done.solution);
          continue;
        }
        const candidate: Candidate = done
          ? { iteration: n, source: done.source, solution: done.solution, rationale: done.rationale, hints: done.hints }
          : await this.propose(run, llm, n, iterations, stopper.signal);
        if (!done) await store.saveCandidate(tenantId, runId, candidate);
        const outcome = await this.test(run, candidate, deadline, stopper.signal, done?.testState === 'awaiting');
        const failurePatternId = await this.learn(run, candidate, outcome, iterations);
        await store.saveTest(tenantId, runId, n, outcome, failurePatternId);
        iterations = await store.iterations(tenantId, runId);
        if (outcome.passed) return await this.succeed(run, candidate.solution);
      }
      await this.stop(run, iterations, 'max_iterations');
    } catch (err) {
      const reason = stopReasonOf(err, stopper.signal);
      // A worker shutting down leaves the run as it is: the job re-runs and resumes it.
      if (reason === undefined || reason === 'shutdown') throw err;
      this.opts.log?.info({ tenantId, runId, reason, err: err instanceof RunStop ? err.cause : err }, 'meta run stopped');
      iterations = await store.iterations(tenantId, runId);
      await this.stop(run, iterations, reason);
    } finally {
      clearTimeout(deadlineTimer);
      clearInterval(cancelPoll);
      signal?.removeEventListener('abort', onShutdown);
    }
    return store.load(tenantId, runId);
  }

  /**
   * Ends a run whose job is about to be dead-lettered (its last try failed for a reason of the
   * infrastructure), so it does not stay `running` for ever; an admin retry of the job then finds
   * it finished. Best effort: the database may be what failed.
   */
  async abandon(tenantId: string, runId: string): Promise<void> {
    const run = await this.opts.store.load(tenantId, runId);
    if (isTerminal(run.status)) return;
    await this.stop(run, await this.opts.store.iterations(tenantId, runId), 'internal_error');
  }

  private async succeed(run: MetaRunState, solution: string): Promise<MetaRunState> {
    await this.opts.store.finish(run.tenantId, run.runId, { status: 'succeeded', reason: 'passed', solution, escalation: null });
    return this.opts.store.load(run.tenantId, run.runId);
  }

  private async stop(run: MetaRunState, iterations: readonly MetaIterationState[], reason: MetaStopReason): Promise<void> {
    const last = iterations.at(-1);
    if (reason === 'cancelled') {
      await this.opts.store.finish(run.tenantId, run.runId, { status: 'cancelled', reason, solution: last?.solution ?? null, escalation: null });
      return;
    }
    await this.opts.store.finish(run.tenantId, run.runId, {
      status: 'failed',
      reason,
      solution: last?.solution ?? null,
      escalation: escalationReport(run, iterations, reason),
    });
  }

  /** The requester's own view: the run reads what they may read, nothing more. */
  private requesterCtx(run: MetaRunState): TenantContext {
    const { userId, agentId, roles } = run.requester;
    return { tenantId: run.tenantId, userId, roles, ...(agentId ? { agentId } : {}) };
  }

  private async propose(run: MetaRunState, llm: Llm, n: number, iterations: readonly MetaIterationState[], signal: AbortSignal): Promise<Candidate> {
    const previous = iterations[n - 2];
    const improving = n > 1 && previous?.test !== null && previous !== undefined;
    const hints = improving && previous.test ? await this.hintsFor(run, previous.test) : [];
    const prompt = improving && previous.test ? this.improvePrompt(run, previous, previous.test, hints) : await this.buildPrompt(run);
    const messages: LlmMessage[] = [
      { role: 'system', content: SYSTEM_PROMPT },
      { role: 'user', content: prompt },
    ];
    let text: string;
    try {
      text = (await llm.complete({ messages, json: true, maxTokens: REPLY_MAX_TOKENS, temperature: 0.2, signal })).text;
    } catch (err) {
      signal.throwIfAborted();
      if (isAeternaError(err) && err.code !== 'RATE_LIMITED') throw new RunStop('llm_error', err);
      throw err;
    }
    const { solution, rationale } = parseCandidate(text);
    return {
      iteration: n,
      source: improving ? 'improve' : 'build',
      solution: capUtf8(solution, this.opts.config.maxSolutionBytes).text,
      rationale: capUtf8(rationale, 2000).text,
      hints,
    };
  }

  private testDescription(run: MetaRunState): string {
    return run.test.kind === 'command'
      ? `The command \`${run.test.argv.join(' ')}\` runs with your solution in ./${SOLUTION_FILE} and on its standard input; exit code 0 passes.`
      : 'The requester checks your solution and answers pass or fail, with the check output.';
  }

  /** Build: the goal with what memory knows about it (assembled context, notes, known error patterns). */
  private async buildPrompt(run: MetaRunState): Promise<string> {
    const ctx = this.requesterCtx(run);
    const scope = { ...(run.options.layers ? { layers: run.options.layers } : {}), ...(run.options.projectId ? { projectId: run.options.projectId } : {}) };
    const [context, notes, patterns] = await Promise.all([
      this.optional('context', () => this.opts.context.assemble(ctx, { query: run.goal, tokenBudget: this.opts.config.contextTokens, ...scope })),
      this.optional('notes', () => this.opts.memory.search(ctx, { query: run.goal, tags: ['note'], limit: 3, threshold: 0.3, ...scope })),
      this.optional('hindsight', () => this.opts.hindsight.query(ctx, { message: capUtf8(run.goal, 16_000).text, limit: 3 })),
    ]);
    const noteLines = (notes?.results ?? []).map((hit) => `- ${excerpt(hit.memory.content, 1500).text}`);
    const patternLines = (patterns?.patterns ?? []).flatMap((p) =>
      p.resolutions.slice(0, 2).map((r) => `- ${p.signature} → ${r.resolution} (worked ${r.successes} of ${r.successes + r.failures} times)`),
    );
    return [
      `Goal:\n${run.goal}`,
      `Test: ${this.testDescription(run)}`,
      `Relevant context from shared memory:\n${context?.context.trim() || '(none)'}`,
      `Procedural notes from earlier sessions:\n${noteLines.join('\n') || '(none)'}`,
      `Known error patterns and the resolutions that fixed them:\n${patternLines.join('\n') || '(none)'}`,
      REPLY_FORMAT,
    ].join('\n\n');
  }

  private improvePrompt(run: MetaRunState, previous: MetaIterationState, test: MetaTestOutcome, hints: readonly MetaHindsightHint[]): string {
    const failure = test.timedOut ? `The test timed out after ${test.durationMs} ms.` : `The test failed${test.exitCode !== null ? ` with exit code ${test.exitCode}` : ''}.`;
    const hintLines = hints.map((h) => `- ${h.resolution} (worked in ${Math.round(h.successRate * 100)} % of tries on a similar failure)`);
    return [
      `Goal:\n${run.goal}`,
      `Test: ${this.testDescription(run)}`,
      `Your previous solution (iteration ${previous.iteration}):\n${previous.solution}`,
      `${failure} Its output ends with:\n${tail(test.output, FAILURE_TAIL_CHARS) || '(no output)'}`,
      hints.length > 0 ? `Fixes that resolved similar failures before; try these first:\n${hintLines.join('\n')}` : 'No earlier fix for this failure is known.',
      `Write a corrected, complete solution. ${REPLY_FORMAT}`,
    ].join('\n\n');
  }

  /** Improve looks here before the model: resolutions that worked on failures like this one. */
  private async hintsFor(run: MetaRunState, test: MetaTestOutcome): Promise<MetaHindsightHint[]> {
    const found = await this.optional('hindsight', () =>
      this.opts.hindsight.query(this.requesterCtx(run), { errorType: META_FAILURE_TYPE, message: failureMessage(test), limit: 3 }),
    );
    const hints: MetaHindsightHint[] = [];
    for (const pattern of found?.patterns ?? []) {
      const best = pattern.resolutions.find((r) => r.successes > 0);
      if (best) hints.push({ patternId: pattern.patternId, resolution: best.resolution, successRate: best.successRate, similarity: pattern.similarity });
    }
    return hints.slice(0, 3);
  }

  /**
   * Files what this test taught: a failure is reported (its pattern id is returned), a hint that
   * was tried gets its outcome, and a pass resolves the failure the previous iteration hit.
   */
  private async learn(run: MetaRunState, candidate: Candidate, outcome: MetaTestOutcome, iterations: readonly MetaIterationState[]): Promise<string | null> {
    const ctx = this.requesterCtx(run);
    const teamId = run.options.teamId;
    const team = teamId ? { teamId } : {};
    for (const hint of candidate.hints.slice(0, 1)) {
      await this.optional('hindsight', () => this.opts.hindsight.resolve(ctx, { patternId: hint.patternId, resolution: hint.resolution, success: outcome.passed, ...team }));
    }
    const previousFailure = iterations[candidate.iteration - 2]?.failurePatternId;
    if (outcome.passed) {
      if (previousFailure && candidate.hints.length === 0) {
        const resolution = candidate.rationale.trim() || `A corrected solution: ${excerpt(candidate.solution, 500).text}`;
        await this.optional('hindsight', () => this.opts.hindsight.resolve(ctx, { patternId: previousFailure, resolution: capUtf8(resolution, 3900).text, success: true, ...team }));
      }
      return null;
    }
    const reported = await this.optional('hindsight', () =>
      this.opts.hindsight.report(ctx, { errorType: META_FAILURE_TYPE, message: failureMessage(outcome), context: { runId: run.runId, iteration: candidate.iteration }, ...team }),
    );
    return reported?.patternId ?? null;
  }

  /** Memory and hindsight make the agent better, but a run does not fail for want of them. */
  private async optional<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      if (isAeternaError(err) && err.code === 'RATE_LIMITED') throw err;
      this.opts.log?.warn({ err, what }, 'meta agent went on without it');
      return undefined;
    }
  }

  private async test(run: MetaRunState, candidate: Candidate, deadline: number, signal: AbortSignal, alreadyRequested: boolean): Promise<MetaTestOutcome> {
    const timeoutMs = Math.max(1, Math.min(run.testTimeoutMs, deadline - Date.now()));
    if (run.test.kind === 'command') {
      const result = await this.opts.sandbox
        .run({
          argv: run.test.argv,
          files: { [SOLUTION_FILE]: candidate.solution },
          stdin: candidate.solution,
          env: { AETERNA_META_RUN_ID: run.runId, AETERNA_META_ITERATION: String(candidate.iteration), AETERNA_META_SOLUTION: SOLUTION_FILE },
          timeoutMs,
          signal,
        })
        .catch((err: unknown) => {
          // The sandbox could not be set up (work dir, sandbox user): no candidate can be tested.
          throw isAeternaError(err) ? new RunStop('sandbox_error', err) : err;
        });
      signal.throwIfAborted();
      const output = [result.stdout, result.stderr].filter((s) => s.length > 0).join('\n');
      return {
        passed: result.passed,
        via: 'command',
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        output: tail(output, this.opts.config.sandbox.maxOutputBytes),
        durationMs: result.durationMs,
      };
    }
    if (!alreadyRequested) await this.opts.store.requestCallback(run.tenantId, run.runId, candidate.iteration, candidate.solution, timeoutMs);
    const until = Date.now() + timeoutMs;
    for (;;) {
      const verdict = await this.opts.store.verdict(run.tenantId, run.runId, candidate.iteration);
      if (verdict) return verdict;
      signal.throwIfAborted();
      if (Date.now() >= until) throw new RunStop('test_timeout');
      await sleep(Math.min(this.pollMs, Math.max(1, until - Date.now())), signal);
    }
  }
}

/** What hindsight files a failed test under: the end of its output, or what happened when there was none. */
function failureMessage(test: MetaTestOutcome): string {
  const text = tail(test.output.trim(), FAILURE_TAIL_CHARS);
  if (text) return text;
  return test.timedOut ? 'test timed out' : `test failed with exit code ${test.exitCode ?? 'none'}`;
}

/** The model's JSON reply; a reply that is not the asked-for object is taken whole as the solution. */
export function parseCandidate(reply: string): { solution: string; rationale: string } {
  // PostgreSQL text cannot hold NUL, and no test wants one: a model that emits it must not crash the run.
  const text = reply.replaceAll('\u0000', '');
  try {
    const parsed = jsonObjectIn(text) as { solution?: unknown; rationale?: unknown };
    if (typeof parsed.solution === 'string' && parsed.solution.trim() !== '') {
      const clean = (v: string) => v.replaceAll('\u0000', '');
      return { solution: clean(parsed.solution), rationale: typeof parsed.rationale === 'string' ? clean(parsed.rationale) : '' };
    }
  } catch {
    // Not JSON: fall through.
  }
  if (text.trim() === '') throw new RunStop('llm_error', new AeternaError('INTERNAL', 'the model proposed an empty solution'));
  return { solution: text, rationale: '' };
}

const REASON_TEXT: Record<MetaStopReason, string> = {
  passed: 'the test passed',
  max_iterations: 'every iteration was used without the test passing',
  time_budget: 'the time budget ran out',
  test_timeout: 'the test callback did not answer in time',
  llm_error: 'the language model could not be reached or answered nothing usable',
  llm_not_configured: 'no language model is configured (AETERNA_LLM_URL)',
  budget_exhausted: "the tenant's token budget is spent",
  sandbox_error: 'the sandbox for the test command could not be set up (see the worker log)',
  internal_error: 'the job running it failed every try (see the worker log and the dead-letter list)',
  cancelled: 'the run was cancelled',
};

/** For the human who takes over: what was tried, how each try failed, and where to record the fix. */
export function escalationReport(run: MetaRunState, iterations: readonly MetaIterationState[], reason: MetaStopReason): MetaEscalation {
  const last = iterations.at(-1);
  const patternIds = [...new Set(iterations.map((i) => i.failurePatternId).filter((p): p is string => p !== null))];
  const lastFailure = [...iterations].reverse().find((i) => i.test && !i.test.passed)?.test;
  const summary = [
    `The Meta-Agent stopped because ${REASON_TEXT[reason]}, after ${iterations.filter((i) => i.test).length} tested iteration(s) of ${run.maxIterations}.`,
    lastFailure ? `The last failure ended with: ${tail(lastFailure.output.trim(), 300) || `exit code ${lastFailure.exitCode ?? 'none'}`}` : '',
    patternIds.length > 0 ? `Once fixed, record the fix with hindsight.resolve on pattern ${patternIds.at(-1)} so later runs find it.` : '',
  ]
    .filter(Boolean)
    .join(' ');
  return {
    reason,
    summary,
    goal: run.goal,
    iterations: iterations.map((i) => ({
      iteration: i.iteration,
      source: i.source,
      rationale: i.rationale,
      passed: i.test ? i.test.passed : null,
      outputTail: i.test ? tail(i.test.output, 1000) : '',
    })),
    lastSolution: last?.solution ?? null,
    patternIds,
  };
}
