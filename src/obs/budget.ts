import type { BudgetsConfig } from '../config.js';
import { EventLog, type CommitSignal } from '../events/index.js';
import {
  AeternaError,
  BUDGET_KINDS,
  BUDGET_PERIODS,
  EVENT_TYPES,
  type Actor,
  type BudgetEventData,
  type BudgetKind,
  type BudgetKindStatus,
  type BudgetLimitsInput,
  type BudgetPeriod,
  type BudgetStatus,
} from '../protocol/index.js';
import type { Db, Sql } from '../store/index.js';
import { assertId } from '../tenancy/index.js';
import type { Logger } from './logger.js';

/** Recorded as the actor of budget events: nobody did them, the meter did. */
export const BUDGET_ACTOR: Actor = { userId: 'system', agentId: 'budget' };

/** The start of the UTC period containing `at` (a date, YYYY-MM-DD) and the instant it resets. */
export function periodBounds(period: BudgetPeriod, at: Date): { start: string; resetsAt: Date } {
  const y = at.getUTCFullYear();
  const m = at.getUTCMonth();
  const d = at.getUTCDate();
  const start = period === 'day' ? new Date(Date.UTC(y, m, d)) : new Date(Date.UTC(y, m, 1));
  const resetsAt = period === 'day' ? new Date(Date.UTC(y, m, d + 1)) : new Date(Date.UTC(y, m + 1, 1));
  return { start: start.toISOString().slice(0, 10), resetsAt };
}

/** Tokens reserved for one call, tied to the periods it was counted in (a call may straddle midnight). */
export interface TokenCharge {
  readonly tenantId: string;
  readonly kind: BudgetKind;
  readonly tokens: number;
  readonly periodStarts: Readonly<Record<BudgetPeriod, string>>;
}

/**
 * What metered code (the embedding service, MeteredLlm) needs: reserve before a paid call, then
 * settle to what it really cost, or refund when it failed. Only `reserve` enforces limits; it
 * throws RATE_LIMITED (and spends nothing) when the call would pass one under `reject`/`queue`.
 * `settle` and `refund` never throw: the tokens are already spent or never were.
 */
export interface TokenMeter {
  reserve(tenantId: string, kind: BudgetKind, tokens: number): Promise<TokenCharge>;
  settle(charge: TokenCharge, actualTokens: number): Promise<void>;
  refund(charge: TokenCharge): Promise<void>;
}

export interface TokenBudgetsOptions {
  db: Db;
  commits?: CommitSignal;
  config: BudgetsConfig;
  log?: Logger;
  /** The clock that decides the period (tests move it across midnight). */
  now?: () => Date;
}

type Limits = Record<BudgetKind, Record<BudgetPeriod, { limit: number; source: 'default' | 'tenant' }>>;

interface UsageRow {
  period: BudgetPeriod;
  tokens: string | number;
  warned: boolean;
  exceeded: boolean;
}

const UPSERT_USAGE_SQL = `INSERT INTO token_usage (tenant_id, kind, period, period_start, tokens)
  VALUES ($1, $2, 'day', $3::date, $5), ($1, $2, 'month', $4::date, $5)
  ON CONFLICT (tenant_id, kind, period, period_start)
  DO UPDATE SET tokens = token_usage.tokens + EXCLUDED.tokens, updated_at = now()
  RETURNING period, tokens, warned, exceeded`;

/** Thrown inside the charging transaction to roll it back; turned into the caller's error outside. */
class Refusal extends Error {
  constructor(
    readonly error: AeternaError,
    readonly data: BudgetEventData,
    readonly periodStart: string,
  ) {
    super(error.message);
  }
}

/**
 * Per-tenant token budgets in SQL (`token_usage`, `token_budgets`, both under RLS). Usage is kept
 * per UTC day and month: a new period is a new row, so nothing has to reset it. Each reservation
 * adds to both rows in one upsert whose row locks serialise a tenant's concurrent calls, checks
 * the limits and announces crossings in the same transaction: a refusal rolls everything back,
 * and the `warned`/`exceeded` flags make each announcement happen once per (kind, period).
 */
export class TokenBudgets implements TokenMeter {
  private readonly now: () => Date;

  constructor(private readonly opts: TokenBudgetsOptions) {
    this.now = opts.now ?? (() => new Date());
  }

  get action(): BudgetsConfig['action'] {
    return this.opts.config.action;
  }

  async reserve(tenantId: string, kind: BudgetKind, tokens: number): Promise<TokenCharge> {
    assertId('tenantId', tenantId);
    if (!Number.isSafeInteger(tokens) || tokens < 0) throw new AeternaError('INVALID_ARGUMENT', `token count must be a non-negative integer, got ${tokens}`);
    const at = this.now();
    const charge: TokenCharge = {
      tenantId,
      kind,
      tokens,
      periodStarts: { day: periodBounds('day', at).start, month: periodBounds('month', at).start },
    };
    if (tokens === 0) return charge;
    try {
      await this.add(charge, tokens, true);
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      await this.announceRefusal(tenantId, err).catch((e: unknown) => this.opts.log?.warn({ err: e, tenantId }, 'budget: could not announce a refusal'));
      throw err.error;
    }
    return charge;
  }

  async settle(charge: TokenCharge, actualTokens: number): Promise<void> {
    const actual = Number.isFinite(actualTokens) ? Math.max(0, Math.round(actualTokens)) : charge.tokens;
    const delta = actual - charge.tokens;
    await this.quietly(charge, delta > 0 ? this.add(charge, delta, false) : this.subtract(charge, -delta));
  }

  async refund(charge: TokenCharge): Promise<void> {
    await this.quietly(charge, this.subtract(charge, charge.tokens));
  }

  /** Limits, usage and reset times of every kind and period, as of now. */
  async status(tenantId: string): Promise<BudgetStatus> {
    assertId('tenantId', tenantId);
    const at = this.now();
    const bounds = { day: periodBounds('day', at), month: periodBounds('month', at) };
    const { limits, used } = await this.opts.db.withTenant(tenantId, async (sql) => {
      const current = await sql.query<{ kind: BudgetKind; period: BudgetPeriod; tokens: string | number }>(
        `SELECT kind, period, tokens FROM token_usage
          WHERE tenant_id = $1 AND ((period = 'day' AND period_start = $2::date) OR (period = 'month' AND period_start = $3::date))`,
        [tenantId, bounds.day.start, bounds.month.start],
      );
      return { limits: await this.limitsOf(sql, tenantId), used: current.rows };
    });
    const usedOf = (kind: BudgetKind, period: BudgetPeriod) => Number(used.find((r) => r.kind === kind && r.period === period)?.tokens ?? 0);
    const budgets = Object.fromEntries(
      BUDGET_KINDS.map((kind) => [
        kind,
        Object.fromEntries(
          BUDGET_PERIODS.map((period) => {
            const { limit, source } = limits[kind][period];
            const u = usedOf(kind, period);
            return [
              period,
              {
                limit,
                source,
                used: u,
                remaining: limit === 0 ? null : Math.max(0, limit - u),
                periodStart: bounds[period].start,
                resetsAt: bounds[period].resetsAt.toISOString(),
              },
            ];
          }),
        ) as BudgetKindStatus,
      ]),
    ) as BudgetStatus['budgets'];
    return { tenantId, action: this.opts.config.action, warnAt: this.opts.config.warnAt, budgets };
  }

  /**
   * Sets (a number) or clears (null: back to the configured default) the tenant's overrides. The
   * current periods' warning flags of a changed limit are cleared, so a new limit is announced
   * against afresh.
   */
  async setLimits(tenantId: string, input: BudgetLimitsInput, actor: Actor): Promise<BudgetStatus> {
    assertId('tenantId', tenantId);
    const at = this.now();
    await this.opts.db.withTenant(tenantId, async (sql) => {
      for (const kind of BUDGET_KINDS) {
        for (const period of BUDGET_PERIODS) {
          const value = input[kind]?.[period];
          if (value === undefined) continue;
          if (value === null) {
            await sql.query('DELETE FROM token_budgets WHERE tenant_id = $1 AND kind = $2 AND period = $3', [tenantId, kind, period]);
          } else {
            await sql.query(
              `INSERT INTO token_budgets (tenant_id, kind, period, token_limit, updated_by) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (tenant_id, kind, period) DO UPDATE SET token_limit = EXCLUDED.token_limit, updated_by = EXCLUDED.updated_by, updated_at = now()`,
              [tenantId, kind, period, value, JSON.stringify(actor)],
            );
          }
          await sql.query(
            `UPDATE token_usage SET warned = false, exceeded = false
              WHERE tenant_id = $1 AND kind = $2 AND period = $3 AND period_start = $4::date`,
            [tenantId, kind, period, periodBounds(period, at).start],
          );
        }
      }
    });
    return this.status(tenantId);
  }

  /** Adds `tokens` to the charge's periods; with `enforce`, refuses (rolling back) past a limit. */
  private async add(charge: TokenCharge, tokens: number, enforce: boolean): Promise<void> {
    const { tenantId, kind, periodStarts } = charge;
    const { action, warnAt } = this.opts.config;
    const announced = await this.opts.db.withTenant(tenantId, async (sql) => {
      const rows = (await sql.query<UsageRow>(UPSERT_USAGE_SQL, [tenantId, kind, periodStarts.day, periodStarts.month, tokens])).rows;
      const limits = (await this.limitsOf(sql, tenantId))[kind];
      const crossings: { period: BudgetPeriod; used: number; limit: number; warn: boolean; exceed: boolean }[] = [];
      for (const row of rows) {
        const { limit } = limits[row.period];
        if (limit === 0) continue;
        const used = Number(row.tokens);
        if (enforce && action !== 'warn' && used > limit) {
          const data = this.eventData(kind, row.period, used - tokens, limit, periodStarts[row.period]);
          throw new Refusal(refusalError(data, tokens), data, periodStarts[row.period]);
        }
        const warn = !row.warned && used >= warnAt * limit;
        const exceed = !row.exceeded && used >= limit;
        if (warn || exceed) crossings.push({ period: row.period, used, limit, warn, exceed });
      }
      for (const c of crossings) {
        await sql.query(
          `UPDATE token_usage SET warned = warned OR $5, exceeded = exceeded OR $6
            WHERE tenant_id = $1 AND kind = $2 AND period = $3 AND period_start = $4::date`,
          [tenantId, kind, c.period, periodStarts[c.period], c.warn, c.exceed],
        );
        const data = this.eventData(kind, c.period, c.used, c.limit, periodStarts[c.period]);
        if (c.warn) await EventLog.append(sql, tenantId, { type: EVENT_TYPES.budgetWarning, actor: BUDGET_ACTOR, data });
        if (c.exceed) await EventLog.append(sql, tenantId, { type: EVENT_TYPES.budgetExceeded, actor: BUDGET_ACTOR, data });
      }
      return crossings.length > 0;
    });
    if (announced) this.opts.commits?.notify(tenantId);
  }

  private async subtract(charge: TokenCharge, tokens: number): Promise<void> {
    if (tokens <= 0) return;
    await this.opts.db.withTenant(charge.tenantId, (sql) =>
      sql.query(
        `UPDATE token_usage SET tokens = GREATEST(0, tokens - $5), updated_at = now()
          WHERE tenant_id = $1 AND kind = $2 AND ((period = 'day' AND period_start = $3::date) OR (period = 'month' AND period_start = $4::date))`,
        [charge.tenantId, charge.kind, charge.periodStarts.day, charge.periodStarts.month, tokens],
      ),
    );
  }

  /**
   * A refused call spent nothing, but an admin should still hear that calls are being refused:
   * `budget.exceeded` once per (kind, period), in a transaction of its own since the charging one
   * was rolled back.
   */
  private async announceRefusal(tenantId: string, refusal: Refusal): Promise<void> {
    const { kind, period } = refusal.data;
    const announced = await this.opts.db.withTenant(tenantId, async (sql) => {
      const res = await sql.query<{ tokens: string | number }>(
        `INSERT INTO token_usage (tenant_id, kind, period, period_start, tokens, exceeded) VALUES ($1, $2, $3, $4::date, 0, true)
         ON CONFLICT (tenant_id, kind, period, period_start) DO UPDATE SET exceeded = true WHERE NOT token_usage.exceeded
         RETURNING tokens`,
        [tenantId, kind, period, refusal.periodStart],
      );
      const row = res.rows[0];
      if (!row) return false;
      await EventLog.append(sql, tenantId, { type: EVENT_TYPES.budgetExceeded, actor: BUDGET_ACTOR, data: { ...refusal.data, used: Number(row.tokens) } });
      return true;
    });
    if (announced) this.opts.commits?.notify(tenantId);
  }

  private async limitsOf(sql: Sql, tenantId: string): Promise<Limits> {
    const defaults = this.opts.config.limits;
    const limits: Limits = {
      embed: { day: { limit: defaults.embed.day, source: 'default' }, month: { limit: defaults.embed.month, source: 'default' } },
      llm: { day: { limit: defaults.llm.day, source: 'default' }, month: { limit: defaults.llm.month, source: 'default' } },
    };
    const res = await sql.query<{ kind: BudgetKind; period: BudgetPeriod; token_limit: string | number }>(
      'SELECT kind, period, token_limit FROM token_budgets WHERE tenant_id = $1',
      [tenantId],
    );
    for (const row of res.rows) limits[row.kind][row.period] = { limit: Number(row.token_limit), source: 'tenant' };
    return limits;
  }

  private eventData(kind: BudgetKind, period: BudgetPeriod, used: number, limit: number, periodStart: string): BudgetEventData {
    const resetsAt = periodBounds(period, new Date(`${periodStart}T00:00:00Z`)).resetsAt.toISOString();
    return { kind, period, used, limit, resetsAt, action: this.opts.config.action };
  }

  /** Settling and refunding must not fail a call whose tokens are already spent: log and go on. */
  private async quietly(charge: TokenCharge, work: Promise<void>): Promise<void> {
    try {
      await work;
    } catch (err) {
      this.opts.log?.warn({ err, tenantId: charge.tenantId, kind: charge.kind }, 'budget: could not record token usage');
    }
  }
}

function refusalError(data: BudgetEventData, requested: number): AeternaError {
  const queued = data.action === 'queue';
  const what = data.kind === 'embed' ? 'embedding' : 'LLM';
  return new AeternaError(
    'RATE_LIMITED',
    `${what} token budget for this ${data.period} is exhausted (${data.used} of ${data.limit} used, ${requested} more requested); it resets at ${data.resetsAt}`,
    {
      kind: data.kind,
      period: data.period,
      used: data.used,
      limit: data.limit,
      requested,
      resetsAt: data.resetsAt,
      action: data.action,
      // `queue`: background work should wait for the reset and try again; `reject`: do not retry.
      retryable: queued,
      ...(queued ? { retryAt: data.resetsAt } : {}),
    },
  );
}

/**
 * When a job that failed with this error should run again: the budget's reset, for errors of the
 * `queue` action; undefined for anything else (the queue's own backoff applies).
 */
export function budgetRetryAt(err: unknown): Date | undefined {
  if (!(err instanceof AeternaError) || err.code !== 'RATE_LIMITED') return undefined;
  const retryAt = err.details?.['retryAt'];
  return typeof retryAt === 'string' && !Number.isNaN(Date.parse(retryAt)) ? new Date(retryAt) : undefined;
}
