import { EventLog, type CommitSignal } from '../events/index.js';
import {
  AeternaError,
  EVENT_TYPES,
  META_LIMITS,
  type Actor,
  type Layer,
  type MetaCandidateSource,
  type MetaEscalation,
  type MetaFinishedEventData,
  type MetaHindsightHint,
  type MetaIteration,
  type MetaIterationEventData,
  type MetaRun,
  type MetaStartedEventData,
  type MetaStatus,
  type MetaStopReason,
  type MetaTestOutcome,
  type MetaTestRequestEventData,
  type MetaTestSpec,
} from '../protocol/index.js';
import { newId, type Db, type Sql } from '../store/index.js';
import type { Role, TenantContext } from '../tenancy/index.js';

/** Recorded as the author of every event a run streams after it started. */
export const META_AGENT_ACTOR: Actor = { userId: 'system', agentId: 'meta-agent' };

/** Who asked for a run: the run reads memories with these scopes, never wider. */
export interface MetaRequester {
  userId: string;
  agentId?: string;
  roles: Role[];
}

export interface MetaRunOptions {
  layers?: Layer[];
  projectId?: string;
  teamId?: string;
}

/** A run as the runner needs it (the wire shape plus what only the server keeps). */
export interface MetaRunState extends MetaRun {
  tenantId: string;
  options: MetaRunOptions;
  requester: MetaRequester;
  cancelRequested: boolean;
}

export interface MetaIterationState extends MetaIteration {
  testState: 'pending' | 'awaiting' | 'done';
  failurePatternId: string | null;
}

export interface NewMetaRun {
  goal: string;
  test: MetaTestSpec;
  maxIterations: number;
  timeBudgetMs: number;
  testTimeoutMs: number;
  options: MetaRunOptions;
}

interface RunRow {
  tenant_id: string;
  id: string;
  goal: string;
  test: MetaTestSpec;
  max_iterations: number;
  time_budget_ms: number;
  test_timeout_ms: number;
  options: MetaRunOptions;
  requester: MetaRequester;
  status: MetaStatus;
  stop_reason: MetaStopReason | null;
  cancel_requested: boolean;
  solution: string | null;
  escalation: MetaEscalation | null;
  created_at: Date;
  started_at: Date | null;
  deadline_at: Date | null;
  finished_at: Date | null;
  iterations_done: number;
}

interface IterationRow {
  n: number;
  source: MetaCandidateSource;
  solution: string;
  rationale: string;
  hints: MetaHindsightHint[];
  failure_pattern_id: string | null;
  test_state: 'pending' | 'awaiting' | 'done';
  test: MetaTestOutcome | null;
  started_at: Date;
  tested_at: Date | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function excerpt(text: string, chars: number = META_LIMITS.eventExcerptChars): { text: string; truncated: boolean } {
  return text.length <= chars ? { text, truncated: false } : { text: text.slice(0, chars), truncated: true };
}

/** The end of a text: where test runners print the failure. */
export function tail(text: string, chars: number): string {
  return text.length <= chars ? text : `…${text.slice(text.length - chars)}`;
}

function toRun(row: RunRow): MetaRunState {
  return {
    tenantId: row.tenant_id,
    runId: row.id,
    goal: row.goal,
    status: row.status,
    stopReason: row.stop_reason,
    test: row.test,
    maxIterations: row.max_iterations,
    timeBudgetMs: row.time_budget_ms,
    testTimeoutMs: row.test_timeout_ms,
    iterationsDone: Number(row.iterations_done),
    solution: row.solution,
    escalation: row.escalation,
    createdAt: row.created_at.toISOString(),
    startedAt: iso(row.started_at),
    deadlineAt: iso(row.deadline_at),
    finishedAt: iso(row.finished_at),
    options: row.options,
    requester: row.requester,
    cancelRequested: row.cancel_requested,
  };
}

function toIteration(row: IterationRow): MetaIterationState {
  return {
    iteration: row.n,
    source: row.source,
    solution: row.solution,
    rationale: row.rationale,
    hints: row.hints,
    test: row.test,
    startedAt: row.started_at.toISOString(),
    testedAt: iso(row.tested_at),
    testState: row.test_state,
    failurePatternId: row.failure_pattern_id,
  };
}

/** The wire shape: what the server alone keeps stays out. */
export function publicRun(run: MetaRunState, iterations?: readonly MetaIterationState[]): MetaRun {
  const { tenantId: _t, options: _o, requester: _r, cancelRequested: _c, ...wire } = run;
  return iterations
    ? { ...wire, iterations: iterations.map(({ testState: _s, failurePatternId: _f, ...it }) => it) }
    : wire;
}

const RUN_COLUMNS = `r.tenant_id, r.id, r.goal, r.test, r.max_iterations, r.time_budget_ms, r.test_timeout_ms, r.options, r.requester,
  r.status, r.stop_reason, r.cancel_requested, r.solution, r.escalation, r.created_at, r.started_at, r.deadline_at, r.finished_at,
  (SELECT count(*) FROM meta_iterations i WHERE i.tenant_id = r.tenant_id AND i.run_id = r.id AND i.test_state = 'done') AS iterations_done`;

const TERMINAL: readonly MetaStatus[] = ['succeeded', 'failed', 'cancelled'];
export const isTerminal = (status: MetaStatus) => TERMINAL.includes(status);

/**
 * Meta-Agent runs in PostgreSQL (RLS). Every change that others should see commits together with
 * its event (the outbox), so a client never sees an event for a state that was rolled back, and
 * a state change never goes unannounced.
 */
export class MetaRunStore {
  constructor(
    private readonly db: Db,
    private readonly commits?: CommitSignal,
  ) {}

  private async write<T>(tenantId: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    const result = await this.db.withTenant(tenantId, fn);
    this.commits?.notify(tenantId);
    return result;
  }

  /** The run row and its `meta.started` event (which asks for the `cca.meta` job), in one transaction. */
  async create(ctx: TenantContext, input: NewMetaRun): Promise<MetaRunState> {
    const requester: MetaRequester = { userId: ctx.userId, ...(ctx.agentId ? { agentId: ctx.agentId } : {}), roles: [...ctx.roles] };
    const runId = newId();
    const actor: Actor = { userId: ctx.userId, ...(ctx.agentId ? { agentId: ctx.agentId } : {}) };
    return this.write(ctx.tenantId, async (sql) => {
      await sql.query(
        `INSERT INTO meta_runs (tenant_id, id, goal, test, max_iterations, time_budget_ms, test_timeout_ms, options, requester, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued')`,
        [ctx.tenantId, runId, input.goal, JSON.stringify(input.test), input.maxIterations, input.timeBudgetMs, input.testTimeoutMs, JSON.stringify(input.options), JSON.stringify(requester)],
      );
      const data: MetaStartedEventData = { runId, goal: excerpt(input.goal).text, maxIterations: input.maxIterations, timeBudgetMs: input.timeBudgetMs, test: input.test.kind };
      await EventLog.append(sql, ctx.tenantId, { type: EVENT_TYPES.metaStarted, actor, data, ...(ctx.traceId ? { traceId: ctx.traceId } : {}) });
      return this.loadIn(sql, ctx.tenantId, runId);
    });
  }

  private async loadIn(sql: Sql, tenantId: string, runId: string): Promise<MetaRunState> {
    const res = await sql.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM meta_runs r WHERE r.tenant_id = $1 AND r.id = $2`, [tenantId, runId]);
    const row = res.rows[0];
    if (!row) throw new AeternaError('NOT_FOUND', `meta run ${runId} not found`, { runId });
    return toRun(row);
  }

  load(tenantId: string, runId: string): Promise<MetaRunState> {
    return this.db.withTenant(tenantId, (sql) => this.loadIn(sql, tenantId, runId));
  }

  /** The tenant's most recent runs, newest first. */
  async list(tenantId: string, filter: { status?: MetaStatus; limit: number }): Promise<MetaRunState[]> {
    const res = await this.db.withTenant(tenantId, (sql) =>
      sql.query<RunRow>(
        `SELECT ${RUN_COLUMNS} FROM meta_runs r WHERE r.tenant_id = $1 AND ($2::text IS NULL OR r.status = $2) ORDER BY r.created_at DESC, r.id DESC LIMIT $3`,
        [tenantId, filter.status ?? null, filter.limit],
      ),
    );
    return res.rows.map(toRun);
  }

  async iterations(tenantId: string, runId: string): Promise<MetaIterationState[]> {
    const res = await this.db.withTenant(tenantId, (sql) =>
      sql.query<IterationRow>(
        `SELECT n, source, solution, rationale, hints, failure_pattern_id, test_state, test, started_at, tested_at
         FROM meta_iterations WHERE tenant_id = $1 AND run_id = $2 ORDER BY n`,
        [tenantId, runId],
      ),
    );
    return res.rows.map(toIteration);
  }

  /** queued → running, fixing the deadline once; a resumed run keeps its first deadline. */
  async markRunning(tenantId: string, runId: string, now: Date): Promise<MetaRunState> {
    return this.db.withTenant(tenantId, async (sql) => {
      await sql.query(
        `UPDATE meta_runs SET status = 'running',
           started_at = COALESCE(started_at, $3),
           deadline_at = COALESCE(deadline_at, $3::timestamptz + make_interval(secs => time_budget_ms / 1000.0))
         WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')`,
        [tenantId, runId, now],
      );
      return this.loadIn(sql, tenantId, runId);
    });
  }

  /** A candidate, written (with its event) before it is tested; a repeat after a crash replaces it. */
  async saveCandidate(
    tenantId: string,
    runId: string,
    it: { iteration: number; source: MetaCandidateSource; solution: string; rationale: string; hints: MetaHindsightHint[] },
  ): Promise<void> {
    await this.write(tenantId, async (sql) => {
      await sql.query(
        `INSERT INTO meta_iterations (tenant_id, run_id, n, source, solution, rationale, hints)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, run_id, n) DO UPDATE SET source = EXCLUDED.source, solution = EXCLUDED.solution,
           rationale = EXCLUDED.rationale, hints = EXCLUDED.hints, test_state = 'pending', test = NULL, tested_at = NULL,
           failure_pattern_id = NULL, started_at = now()`,
        [tenantId, runId, it.iteration, it.source, it.solution, it.rationale, JSON.stringify(it.hints)],
      );
      const solution = excerpt(it.solution);
      const data: MetaIterationEventData = {
        runId,
        iteration: it.iteration,
        phase: it.source,
        rationale: excerpt(it.rationale).text,
        solution: solution.text,
        solutionTruncated: solution.truncated,
        hints: it.hints,
      };
      await EventLog.append(sql, tenantId, { type: EVENT_TYPES.metaIteration, actor: META_AGENT_ACTOR, data });
    });
  }

  /** The caller is the test: the iteration waits for its verdict, and `meta.test` tells them so. */
  async requestCallback(tenantId: string, runId: string, iteration: number, solution: string, timeoutMs: number): Promise<void> {
    await this.write(tenantId, async (sql) => {
      await sql.query(
        `UPDATE meta_iterations SET test_state = 'awaiting' WHERE tenant_id = $1 AND run_id = $2 AND n = $3 AND test_state = 'pending'`,
        [tenantId, runId, iteration],
      );
      const data: MetaTestRequestEventData = { runId, iteration, solution, timeoutMs };
      await EventLog.append(sql, tenantId, { type: EVENT_TYPES.metaTest, actor: META_AGENT_ACTOR, data });
    });
  }

  /**
   * A caller's verdict. Only the iteration that awaits one takes it; a second answer, one for
   * another iteration, or one after the run stopped is a CONFLICT, so a verdict is never lost
   * silently nor counted twice.
   */
  async submitVerdict(tenantId: string, runId: string, iteration: number, test: MetaTestOutcome): Promise<void> {
    await this.db.withTenant(tenantId, async (sql) => {
      const run = await this.loadIn(sql, tenantId, runId);
      if (run.test.kind !== 'callback') {
        throw new AeternaError('CONFLICT', `meta run ${runId} is tested by its command, not by the caller`, { runId });
      }
      const res = await sql.query(
        // The verdict's duration is the caller's: from the candidate's arrival to its answer.
        `UPDATE meta_iterations i SET test_state = 'done', tested_at = now(),
           test = $4::jsonb || jsonb_build_object('durationMs', floor(extract(epoch FROM now() - i.started_at) * 1000)::int)
         FROM meta_runs r
         WHERE i.tenant_id = $1 AND i.run_id = $2 AND i.n = $3 AND i.test_state = 'awaiting'
           AND r.tenant_id = i.tenant_id AND r.id = i.run_id AND r.status = 'running'`,
        [tenantId, runId, iteration, JSON.stringify(test)],
      );
      if (res.affectedRows === 0) {
        throw new AeternaError('CONFLICT', `meta run ${runId} is not waiting for a verdict on iteration ${iteration}`, { runId, iteration, status: run.status });
      }
    });
  }

  /** The verdict of an awaited iteration, or null while there is none. */
  async verdict(tenantId: string, runId: string, iteration: number): Promise<MetaTestOutcome | null> {
    const res = await this.db.withTenant(tenantId, (sql) =>
      sql.query<{ test: MetaTestOutcome | null }>(`SELECT test FROM meta_iterations WHERE tenant_id = $1 AND run_id = $2 AND n = $3 AND test_state = 'done'`, [
        tenantId,
        runId,
        iteration,
      ]),
    );
    return res.rows[0]?.test ?? null;
  }

  /** A test's outcome and its `meta.iteration` (phase test) event. */
  async saveTest(tenantId: string, runId: string, iteration: number, test: MetaTestOutcome, failurePatternId: string | null): Promise<void> {
    await this.write(tenantId, async (sql) => {
      await sql.query(
        `UPDATE meta_iterations SET test_state = 'done', test = $4, failure_pattern_id = $5, tested_at = COALESCE(tested_at, now())
         WHERE tenant_id = $1 AND run_id = $2 AND n = $3`,
        [tenantId, runId, iteration, JSON.stringify(test), failurePatternId],
      );
      const data: MetaIterationEventData = {
        runId,
        iteration,
        phase: 'test',
        passed: test.passed,
        via: test.via,
        exitCode: test.exitCode,
        timedOut: test.timedOut,
        output: tail(test.output, META_LIMITS.eventExcerptChars),
        durationMs: test.durationMs,
      };
      await EventLog.append(sql, tenantId, { type: EVENT_TYPES.metaIteration, actor: META_AGENT_ACTOR, data });
    });
  }

  /** Ends a run once: a run that already stopped keeps its outcome (and no second event is sent). */
  async finish(
    tenantId: string,
    runId: string,
    end: { status: MetaStatus; reason: MetaStopReason; solution: string | null; escalation: MetaEscalation | null },
  ): Promise<boolean> {
    return this.write(tenantId, async (sql) => {
      const res = await sql.query(
        `UPDATE meta_runs SET status = $3, stop_reason = $4, solution = $5, escalation = $6, finished_at = now()
         WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')`,
        [tenantId, runId, end.status, end.reason, end.solution, end.escalation ? JSON.stringify(end.escalation) : null],
      );
      if (res.affectedRows === 0) return false;
      const run = await this.loadIn(sql, tenantId, runId);
      const data: MetaFinishedEventData = { runId, status: end.status, reason: end.reason, iterations: run.iterationsDone, escalation: end.escalation };
      await EventLog.append(sql, tenantId, { type: EVENT_TYPES.metaFinished, actor: META_AGENT_ACTOR, data });
      return true;
    });
  }

  /** Asks a running run to stop at its next step; a queued one is cancelled at once. */
  async requestCancel(ctx: TenantContext, runId: string): Promise<MetaRunState> {
    const run = await this.load(ctx.tenantId, runId);
    if (isTerminal(run.status)) return run;
    if (run.status === 'queued') {
      await this.finish(ctx.tenantId, runId, { status: 'cancelled', reason: 'cancelled', solution: null, escalation: null });
    } else {
      await this.db.withTenant(ctx.tenantId, (sql) => sql.query(`UPDATE meta_runs SET cancel_requested = true WHERE tenant_id = $1 AND id = $2`, [ctx.tenantId, runId]));
    }
    return this.load(ctx.tenantId, runId);
  }

  async cancelRequested(tenantId: string, runId: string): Promise<boolean> {
    const res = await this.db.withTenant(tenantId, (sql) =>
      sql.query<{ cancel_requested: boolean }>(`SELECT cancel_requested FROM meta_runs WHERE tenant_id = $1 AND id = $2`, [tenantId, runId]),
    );
    return res.rows[0]?.cancel_requested ?? false;
  }
}
