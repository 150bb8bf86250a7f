import type { NotesConfig } from '../config.js';
import { EventLog, type CommitSignal } from '../events/index.js';
import type { Logger } from '../obs/index.js';
import {
  AeternaError,
  EVENT_TYPES,
  parseInput,
  sessionEndSchema,
  trajectoryBatchSchema,
  trajectoryEventSchema,
  type Actor,
  type CapturedTrajectoryEvent,
  type SessionEndReason,
  type SessionEndResult,
  type SessionLifecycleEventData,
  type TrajectoryCaptureResult,
  type TrajectoryEvent,
  type TrajectoryEventInput,
  type TrajectoryFeedback,
} from '../protocol/index.js';
import { newId, type Db, type Sql } from '../store/index.js';
import { actorOf, type TenantContext } from '../tenancy/index.js';
import { sanitiseForStorage } from './redact.js';

/** Recorded as the actor of sessions the idle sweep ended. */
export const SESSION_SWEEPER_ACTOR: Actor = { userId: 'system', agentId: 'session-sweeper' };

export interface TrajectoryStoreOptions {
  db: Db;
  config: Pick<NotesConfig, 'maxFieldBytes' | 'maxBatch'>;
  /** Told after every commit that appended events, so the relay delivers (and dispatches) at once. */
  commits?: CommitSignal;
}

interface EventRow {
  id: string;
  session_id: string;
  segment: number;
  project_id: string | null;
  tool_name: string;
  input: string | null;
  output: string | null;
  input_truncated: boolean;
  output_truncated: boolean;
  success: boolean;
  duration_ms: number | null;
  state_changing: boolean | null;
  feedback: TrajectoryFeedback | null;
  actor: Actor;
  created_at: Date;
}

interface EndedRow {
  session_id: string;
  segment: number;
  project_id: string | null;
  event_count: number;
}

function toEvent(row: EventRow): TrajectoryEvent {
  return {
    id: row.id,
    sessionId: row.session_id,
    segment: row.segment,
    projectId: row.project_id,
    toolName: row.tool_name,
    input: row.input,
    output: row.output,
    inputTruncated: row.input_truncated,
    outputTruncated: row.output_truncated,
    success: row.success,
    durationMs: row.duration_ms,
    stateChanging: row.state_changing,
    feedback: row.feedback,
    actor: row.actor,
    createdAt: row.created_at.toISOString(),
  };
}

/** Per tool, over a whole segment (however many events `events` holds). */
export interface ToolStats {
  toolName: string;
  calls: number;
  failures: number;
  /** Calls the caller flagged `stateChanging: true`. */
  flagged: number;
  /** Calls without a flag, left to the tool-name heuristic. */
  unflagged: number;
  /** Calls carrying user feedback (a `feedback` field, or the tool is `feedback`). */
  feedback: number;
}

export interface SessionSegment {
  sessionId: string;
  segment: number;
  projectId: string | null;
  /** All events of the segment; `events` holds the most recent `limit` of them. */
  total: number;
  events: TrajectoryEvent[];
  tools: ToolStats[];
}

/**
 * Sessions' tool-call trajectories. Inputs and outputs are redacted, then capped, before they
 * reach the database. A session's lifecycle is in the event log: `session.started` when it first
 * captures (or captures again after it ended) and `session.ended` exactly once per segment, which
 * the relay turns into the segment's one `cca.distill` job.
 */
export class TrajectoryStore {
  constructor(private readonly opts: TrajectoryStoreOptions) {}

  /** One event, or `{events: [...]}` (up to the configured batch size), in one transaction. */
  async capture(ctx: TenantContext, raw: unknown): Promise<TrajectoryCaptureResult> {
    const events = this.parseCapture(raw);
    const actor = actorOf(ctx);
    const prepared = events.map((e) => {
      const input = sanitiseForStorage(e.input, this.opts.config.maxFieldBytes);
      const output = sanitiseForStorage(e.output, this.opts.config.maxFieldBytes);
      return { e, input, output, id: newId() };
    });
    // Sessions in a fixed order, so two batches touching the same sessions lock them alike.
    const sessions = [...new Set(events.map((e) => e.sessionId))].sort();
    let announced = false;
    const result = await this.opts.db.withTenant(ctx.tenantId, async (sql) => {
      const segments = new Map<string, { segment: number; projectId: string | null; next: number }>();
      for (const sessionId of sessions) {
        const mine = events.filter((e) => e.sessionId === sessionId);
        const projectId = mine.findLast((e) => e.projectId !== undefined)?.projectId ?? null;
        const opened = await openSegment(sql, ctx.tenantId, sessionId, projectId, mine.length);
        segments.set(sessionId, { ...opened, next: opened.firstOrdinal });
        if (opened.started) {
          announced = true;
          await appendLifecycle(sql, ctx.tenantId, actor, EVENT_TYPES.sessionStarted, ctx.traceId, {
            layer: 'session',
            scopeId: sessionId,
            sessionId,
            segment: opened.segment,
            projectId: opened.projectId,
          });
        }
      }
      const params: unknown[] = [];
      const rows = prepared.map(({ e, input, output, id }) => {
        const session = segments.get(e.sessionId)!;
        const values = [
          ctx.tenantId,
          id,
          e.sessionId,
          session.segment,
          session.next++,
          e.projectId ?? session.projectId,
          e.toolName,
          input.text,
          output.text,
          input.truncated,
          output.truncated,
          input.redactions + output.redactions,
          e.success,
          e.durationMs === undefined ? null : Math.round(e.durationMs),
          e.stateChanging ?? null,
          e.feedback === undefined ? null : JSON.stringify(e.feedback),
          JSON.stringify(actor),
        ];
        const start = params.length;
        params.push(...values);
        return `(${values.map((_, i) => `$${start + i + 1}`).join(', ')})`;
      });
      await sql.query(
        `INSERT INTO trajectory_events (tenant_id, id, session_id, segment, ordinal, project_id, tool_name, input, output,
           input_truncated, output_truncated, redactions, success, duration_ms, state_changing, feedback, actor)
         VALUES ${rows.join(', ')}`,
        params,
      );
      return segments;
    });
    if (announced) this.opts.commits?.notify(ctx.tenantId);
    return {
      captured: prepared.length,
      events: prepared.map(({ e, input, output, id }): CapturedTrajectoryEvent => ({
        id,
        sessionId: e.sessionId,
        segment: result.get(e.sessionId)!.segment,
        truncated: { input: input.truncated, output: output.truncated },
        redactions: input.redactions + output.redactions,
      })),
    };
  }

  /**
   * Ends the session's current segment. Repeating it (or racing the idle sweep) is harmless: only
   * the first end appends `session.ended`; later ones answer `ended: false`.
   */
  async end(ctx: TenantContext, raw: unknown): Promise<SessionEndResult> {
    const input = parseInput(sessionEndSchema, raw, 'session end');
    const actor = actorOf(ctx);
    const result = await this.opts.db.withTenant(ctx.tenantId, async (sql) => {
      const res = await sql.query<EndedRow>(
        `UPDATE trajectory_sessions SET ended_at = now(), end_reason = 'ended', ended_by = $3, project_id = COALESCE($4, project_id)
          WHERE tenant_id = $1 AND session_id = $2 AND ended_at IS NULL
          RETURNING session_id, segment, project_id, event_count`,
        [ctx.tenantId, input.sessionId, JSON.stringify(actor), input.projectId ?? null],
      );
      const row = res.rows[0];
      if (row) return announceEnd(sql, ctx.tenantId, actor, ctx.traceId, row, 'ended');
      const prior = await sql.query<EndedRow & { end_reason: SessionEndReason }>(
        'SELECT session_id, segment, project_id, event_count, end_reason FROM trajectory_sessions WHERE tenant_id = $1 AND session_id = $2',
        [ctx.tenantId, input.sessionId],
      );
      const ended = prior.rows[0];
      if (!ended) {
        throw new AeternaError('NOT_FOUND', `session ${input.sessionId} has no captured trajectory`, { sessionId: input.sessionId });
      }
      return { sessionId: ended.session_id, segment: ended.segment, ended: false, reason: ended.end_reason, events: ended.event_count, projectId: ended.project_id };
    });
    if (result.ended) this.opts.commits?.notify(ctx.tenantId);
    return result;
  }

  /**
   * Ends up to `limit` of the tenant's sessions that captured nothing for `idleMs` (measured by the
   * database's clock, the one that stamped their events). Sessions another sweeper holds are
   * skipped, not waited for: several processes may sweep at once.
   */
  async endIdle(tenantId: string, idleMs: number, limit: number): Promise<SessionEndResult[]> {
    const ended = await this.opts.db.withTenant(tenantId, async (sql) => {
      const res = await sql.query<EndedRow>(
        `UPDATE trajectory_sessions s SET ended_at = now(), end_reason = 'idle', ended_by = $4
           FROM (SELECT session_id FROM trajectory_sessions
                  WHERE tenant_id = $1 AND ended_at IS NULL AND last_event_at <= now() - make_interval(secs => $2::float8 / 1000)
                  ORDER BY last_event_at LIMIT $3 FOR UPDATE SKIP LOCKED) idle
          WHERE s.tenant_id = $1 AND s.session_id = idle.session_id
          RETURNING s.session_id, s.segment, s.project_id, s.event_count`,
        [tenantId, idleMs, limit, JSON.stringify(SESSION_SWEEPER_ACTOR)],
      );
      const done: SessionEndResult[] = [];
      for (const row of res.rows) done.push(await announceEnd(sql, tenantId, SESSION_SWEEPER_ACTOR, undefined, row, 'idle'));
      return done;
    });
    // After COMMIT only: never announce what may still roll back.
    if (ended.length > 0) this.opts.commits?.notify(tenantId);
    return ended;
  }

  /** A segment's events in capture order (the most recent `limit`), for distillation. A system read. */
  async segment(tenantId: string, sessionId: string, segment: number, limit: number): Promise<SessionSegment | undefined> {
    return this.opts.db.withTenant(tenantId, async (sql) => {
      const session = await sql.query<{ project_id: string | null }>('SELECT project_id FROM trajectory_sessions WHERE tenant_id = $1 AND session_id = $2', [
        tenantId,
        sessionId,
      ]);
      const row = session.rows[0];
      if (!row) return undefined;
      const stats = await sql.query<{ tool_name: string; calls: number; failures: number; flagged: number; unflagged: number; feedback: number }>(
        `SELECT tool_name, count(*)::int AS calls, (count(*) FILTER (WHERE NOT success))::int AS failures,
                (count(*) FILTER (WHERE state_changing))::int AS flagged, (count(*) FILTER (WHERE state_changing IS NULL))::int AS unflagged,
                (count(*) FILTER (WHERE feedback IS NOT NULL OR lower(tool_name) = 'feedback'))::int AS feedback
           FROM trajectory_events WHERE tenant_id = $1 AND session_id = $2 AND segment = $3
          GROUP BY tool_name ORDER BY tool_name`,
        [tenantId, sessionId, segment],
      );
      const tools = stats.rows.map((r): ToolStats => ({
        toolName: r.tool_name,
        calls: r.calls,
        failures: r.failures,
        flagged: r.flagged,
        unflagged: r.unflagged,
        feedback: r.feedback,
      }));
      const events = await sql.query<EventRow>(
        `SELECT id, session_id, segment, project_id, tool_name, input, output, input_truncated, output_truncated, success,
                duration_ms, state_changing, feedback, actor, created_at
           FROM trajectory_events WHERE tenant_id = $1 AND session_id = $2 AND segment = $3
          ORDER BY ordinal DESC LIMIT $4`,
        [tenantId, sessionId, segment, limit],
      );
      const total = tools.reduce((n, t) => n + t.calls, 0);
      return { sessionId, segment, projectId: row.project_id, total, events: events.rows.reverse().map(toEvent), tools };
    });
  }

  private parseCapture(raw: unknown): TrajectoryEventInput[] {
    const batched = typeof raw === 'object' && raw !== null && 'events' in raw;
    const events = batched ? parseInput(trajectoryBatchSchema, raw, 'trajectory batch').events : [parseInput(trajectoryEventSchema, raw, 'trajectory event')];
    if (events.length > this.opts.config.maxBatch) {
      throw new AeternaError('INVALID_ARGUMENT', `a batch holds at most ${this.opts.config.maxBatch} events, not ${events.length}`, {
        field: 'events',
        maxBatch: this.opts.config.maxBatch,
      });
    }
    return events;
  }

}

/**
 * The session's open segment, counting `added` new events: a new session starts segment 1, an
 * ended one starts the next segment (`started`), an open one continues.
 */
async function openSegment(
  sql: Sql,
  tenantId: string,
  sessionId: string,
  projectId: string | null,
  added: number,
): Promise<{ segment: number; projectId: string | null; started: boolean; firstOrdinal: number }> {
  type Row = { segment: number; project_id: string | null; event_count: number };
  const inserted = await sql.query<Row>(
    `INSERT INTO trajectory_sessions (tenant_id, session_id, project_id, event_count) VALUES ($1, $2, $3, $4)
     ON CONFLICT (tenant_id, session_id) DO NOTHING RETURNING segment, project_id, event_count`,
    [tenantId, sessionId, projectId, added],
  );
  const fresh = inserted.rows[0];
  if (fresh) return { segment: fresh.segment, projectId: fresh.project_id, started: true, firstOrdinal: 1 };
  const current = await sql.query<{ ended: boolean }>(
    'SELECT ended_at IS NOT NULL AS ended FROM trajectory_sessions WHERE tenant_id = $1 AND session_id = $2 FOR UPDATE',
    [tenantId, sessionId],
  );
  const reopening = current.rows[0]?.ended === true;
  const res = await sql.query<Row>(
    reopening
      ? `UPDATE trajectory_sessions SET segment = segment + 1, event_count = $3, started_at = now(), last_event_at = now(),
           ended_at = NULL, end_reason = NULL, ended_by = NULL, project_id = COALESCE($4, project_id)
         WHERE tenant_id = $1 AND session_id = $2 RETURNING segment, project_id, event_count`
      : `UPDATE trajectory_sessions SET event_count = event_count + $3, last_event_at = now(), project_id = COALESCE($4, project_id)
         WHERE tenant_id = $1 AND session_id = $2 RETURNING segment, project_id, event_count`,
    [tenantId, sessionId, added, projectId],
  );
  const row = res.rows[0] as Row;
  // The row is locked until commit, so these positions are this transaction's alone.
  return { segment: row.segment, projectId: row.project_id, started: reopening, firstOrdinal: row.event_count - added + 1 };
}

function appendLifecycle(sql: Sql, tenantId: string, actor: Actor, type: string, traceId: string | undefined, data: SessionLifecycleEventData) {
  return EventLog.append(sql, tenantId, { type, actor, data, ...(traceId ? { traceId } : {}) });
}

async function announceEnd(
  sql: Sql,
  tenantId: string,
  actor: Actor,
  traceId: string | undefined,
  row: EndedRow,
  reason: SessionEndReason,
): Promise<SessionEndResult> {
  await appendLifecycle(sql, tenantId, actor, EVENT_TYPES.sessionEnded, traceId, {
    layer: 'session',
    scopeId: row.session_id,
    sessionId: row.session_id,
    segment: row.segment,
    projectId: row.project_id,
    reason,
    events: row.event_count,
  });
  return { sessionId: row.session_id, segment: row.segment, ended: true, reason, events: row.event_count, projectId: row.project_id };
}

export interface SessionSweeperOptions {
  db: Db;
  trajectories: TrajectoryStore;
  config: Pick<NotesConfig, 'sessionIdleMs' | 'sweepIntervalMs'>;
  log?: Logger;
  /** Sessions ended per tenant per transaction. */
  batchSize?: number;
}

/**
 * Ends sessions that went idle, in the processes that run jobs (the embedded gateway, workers).
 * Ending appends `session.ended`, and the relay turns that into the one `cca.distill` job of the
 * segment, so several sweepers at once cost only queries, never a second note. Tenants are those
 * with an event stream, which every capturing session has (its `session.started`).
 */
export class SessionSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(private readonly opts: SessionSweeperOptions) {}

  start(): void {
    const every = this.opts.config.sweepIntervalMs;
    if (every <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      if (this.running) return; // a slow sweep is not stacked on
      this.running = this.sweep()
        .catch((err: unknown) => {
          this.opts.log?.warn({ err }, 'session idle sweep failed; the next one retries');
          return 0;
        })
        .finally(() => (this.running = undefined));
    }, every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass over every tenant; resolves with how many sessions it ended. */
  async sweep(): Promise<number> {
    const batch = this.opts.batchSize ?? 200;
    let ended = 0;
    for (const { tenantId } of await this.opts.db.streamHeads()) {
      for (;;) {
        const done = await this.opts.trajectories.endIdle(tenantId, this.opts.config.sessionIdleMs, batch);
        ended += done.length;
        if (done.length < batch) break;
      }
    }
    if (ended > 0) this.opts.log?.info({ ended }, 'idle sessions ended');
    return ended;
  }
}
