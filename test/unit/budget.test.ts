import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { budgetRetryAt, periodBounds } from '../../src/obs/index.js';
import { AeternaError, budgetLimitsSchema, parseInput } from '../../src/protocol/index.js';
import { MeteredLlm, promptTokens, type Llm, type LlmRequest } from '../../src/cca/index.js';
import { countTokens, type TokenCharge, type TokenMeter } from '../../src/obs/index.js';

describe('budget periods (UTC)', () => {
  it('start at UTC midnight and on the 1st, and reset at the next one', () => {
    const at = new Date('2026-01-31T23:59:59.999Z');
    expect(periodBounds('day', at)).toEqual({ start: '2026-01-31', resetsAt: new Date('2026-02-01T00:00:00Z') });
    expect(periodBounds('month', at)).toEqual({ start: '2026-01-01', resetsAt: new Date('2026-02-01T00:00:00Z') });
    const next = new Date('2026-02-01T00:00:00Z');
    expect(periodBounds('day', next).start).toBe('2026-02-01');
    expect(periodBounds('month', next).start).toBe('2026-02-01');
    expect(periodBounds('month', new Date('2026-12-15T12:00:00Z')).resetsAt).toEqual(new Date('2027-01-01T00:00:00Z'));
    // A local-time offset in the input does not move the UTC period.
    expect(periodBounds('day', new Date('2026-03-01T01:30:00+02:00')).start).toBe('2026-02-28');
  });
});

describe('budget limits input', () => {
  const parse = (input: unknown) => parseInput(budgetLimitsSchema, input, 'budget limits');
  const error = (input: unknown) => {
    try {
      parse(input);
    } catch (err) {
      return err as AeternaError;
    }
    throw new Error('expected a validation error');
  };

  it('accepts limits per kind and period, 0 as unlimited and null as "back to default"', () => {
    expect(parse({ embed: { day: 1000, month: 0 }, llm: { month: null } })).toEqual({ embed: { day: 1000, month: 0 }, llm: { month: null } });
  });

  it.each([
    ['a negative limit', { llm: { day: -1 } }],
    ['a fraction', { llm: { day: 1.5 } }],
    ['a string', { llm: { day: '100' } }],
    ['an unknown kind', { images: { day: 10 } }],
    ['an unknown period', { llm: { week: 10 } }],
    ['nothing to set', {}],
    ['an empty kind', { llm: {} }],
    ['a non-object', 'lots'],
    ['a limit past the maximum', { embed: { month: 1e18 } }],
  ])('refuses %s with INVALID_ARGUMENT', (_, input) => {
    expect(error(input)).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('budget config', () => {
  it('defaults to unlimited, reject, warn at 80 % and reads every knob', () => {
    const base = { AETERNA_DATA_DIR: '/tmp/x' };
    expect(loadConfig(base).budgets).toEqual({ action: 'reject', warnAt: 0.8, limits: { embed: { day: 0, month: 0 }, llm: { day: 0, month: 0 } } });
    expect(loadConfig(base).embedCache.semantic).toEqual({ entries: 256, ttlSec: 3600, threshold: 0.98 });
    const set = loadConfig({
      ...base,
      AETERNA_BUDGET_EMBED_TOKENS_DAY: '10',
      AETERNA_BUDGET_EMBED_TOKENS_MONTH: '20',
      AETERNA_BUDGET_LLM_TOKENS_DAY: '30',
      AETERNA_BUDGET_LLM_TOKENS_MONTH: '40',
      AETERNA_BUDGET_ACTION: 'queue',
      AETERNA_BUDGET_WARN_AT: '0.5',
      AETERNA_EMBED_SEMANTIC_THRESHOLD: '0.99',
    });
    expect(set.budgets).toEqual({ action: 'queue', warnAt: 0.5, limits: { embed: { day: 10, month: 20 }, llm: { day: 30, month: 40 } } });
    expect(set.embedCache.semantic.threshold).toBe(0.99);
    expect(() => loadConfig({ ...base, AETERNA_BUDGET_ACTION: 'drop' })).toThrow(/AETERNA_BUDGET_ACTION/);
    expect(() => loadConfig({ ...base, AETERNA_BUDGET_LLM_TOKENS_DAY: '-5' })).toThrow(/AETERNA_BUDGET_LLM_TOKENS_DAY/);
  });
});

describe('budgetRetryAt', () => {
  it('reads the reset time of a queue-action refusal only', () => {
    const queued = new AeternaError('RATE_LIMITED', 'x', { retryable: true, retryAt: '2026-02-01T00:00:00.000Z' });
    expect(budgetRetryAt(queued)).toEqual(new Date('2026-02-01T00:00:00Z'));
    expect(budgetRetryAt(new AeternaError('RATE_LIMITED', 'x', { retryable: false }))).toBeUndefined();
    expect(budgetRetryAt(new AeternaError('UNAVAILABLE', 'x', { retryAt: '2026-02-01T00:00:00Z' }))).toBeUndefined();
    expect(budgetRetryAt(new Error('x'))).toBeUndefined();
  });
});

/** Records what MeteredLlm reserves, settles and refunds. */
class RecordingMeter implements TokenMeter {
  readonly log: string[] = [];
  async reserve(tenantId: string, kind: 'embed' | 'llm', tokens: number): Promise<TokenCharge> {
    this.log.push(`reserve ${tenantId} ${kind} ${tokens}`);
    return { tenantId, kind, tokens, periodStarts: { day: '2026-01-01', month: '2026-01-01' } };
  }
  async settle(charge: TokenCharge, actual: number): Promise<void> {
    this.log.push(`settle ${charge.tokens} -> ${actual}`);
  }
  async refund(charge: TokenCharge): Promise<void> {
    this.log.push(`refund ${charge.tokens}`);
  }
}

describe('MeteredLlm (charging order)', () => {
  const req: LlmRequest = { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name three colours.' }] };

  it('counts the prompt with the tokenizer plus chat framing', () => {
    expect(promptTokens(req.messages)).toBe(countTokens('Be brief.') + countTokens('Name three colours.') + 3 * 2 + 3);
  });

  it('reserves the prompt, then settles to the reported usage or to the counted text per field', async () => {
    const meter = new RecordingMeter();
    let usage = { promptTokens: 40, completionTokens: 7 };
    const llm: Llm = { model: 'm', complete: async () => ({ text: 'red, green, blue', usage, model: 'm' }) };
    const metered = new MeteredLlm(llm, meter);
    await metered.complete('t1', req);
    usage = { promptTokens: 0, completionTokens: 0 };
    await metered.forTenant('t2').complete(req);
    const p = promptTokens(req.messages);
    expect(meter.log).toEqual([`reserve t1 llm ${p}`, `settle ${p} -> 47`, `reserve t2 llm ${p}`, `settle ${p} -> ${p + countTokens('red, green, blue')}`]);
  });

  it('refunds a failed call and never calls the model when the reservation is refused', async () => {
    const meter = new RecordingMeter();
    let calls = 0;
    const failing: Llm = {
      model: 'm',
      complete: async () => {
        calls++;
        throw new AeternaError('UNAVAILABLE', 'down');
      },
    };
    await expect(new MeteredLlm(failing, meter).complete('t1', req)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(meter.log).toEqual([`reserve t1 llm ${promptTokens(req.messages)}`, `refund ${promptTokens(req.messages)}`]);

    const refusing: TokenMeter = {
      reserve: async () => Promise.reject(new AeternaError('RATE_LIMITED', 'over')),
      settle: async () => undefined,
      refund: async () => undefined,
    };
    calls = 0;
    await expect(new MeteredLlm(failing, refusing).complete('t1', req)).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    expect(calls).toBe(0);
    expect(() => new MeteredLlm(failing, meter).forTenant('bad tenant')).toThrow(/tenant/i);
  });
});
