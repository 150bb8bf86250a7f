/**
 * The tier rules as a table, boundaries included (pure: no database). Defaults: hot within 7
 * days, cold past 90 days; warm needs under 1 access a day, cold under 1 a week, averaged over
 * the memory's life (at least a day).
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { classifyTier, lastActivity, previewOf, type TierInput, type TierPolicy } from '../../src/memory/index.js';
import { countTokens } from '../../src/obs/index.js';
import type { Tier } from '../../src/protocol/index.js';

const DAY = 86_400_000;
const NOW = new Date('2026-06-15T12:00:00.000Z');
const POLICY: TierPolicy = { hotDays: 7, coldDays: 90, warmMaxPerDay: 1, coldMaxPerWeek: 1 };

/** A memory idle for `idleDays` (by its last access), alive for `lifeDays`, used `accesses` times. */
function memory(idleDays: number, lifeDays: number, accesses: number, lastBy: 'access' | 'update' = 'access'): TierInput {
  const idleAt = new Date(NOW.getTime() - idleDays * DAY);
  const createdAt = new Date(NOW.getTime() - lifeDays * DAY);
  return lastBy === 'access'
    ? { accessCount: accesses, lastAccessedAt: idleAt, createdAt, updatedAt: createdAt }
    : { accessCount: accesses, lastAccessedAt: null, createdAt, updatedAt: idleAt };
}

describe('classifyTier', () => {
  const table: [string, TierInput, Tier][] = [
    ['touched just now', memory(0, 0, 0), 'hot'],
    ['idle exactly 7 days (within 7 days)', memory(7, 100, 0), 'hot'],
    ['idle 7 days and 1 ms, rarely used', memory(7 + 1 / DAY, 100, 0), 'warm'],
    ['idle 8 days, 0.5 accesses a day', memory(8, 100, 50), 'warm'],
    ['idle 8 days, exactly 1 access a day (not under 1)', memory(8, 100, 100), 'hot'],
    ['idle 8 days, just under 1 a day', memory(8, 100, 99), 'warm'],
    ['idle exactly 90 days (not over 90)', memory(90, 200, 0), 'warm'],
    ['idle 90 days and 1 ms, never used', memory(90 + 1 / DAY, 200, 0), 'cold'],
    ['idle 91 days, just under 1 a week (13 in 92 days)', memory(91, 92, 13), 'cold'],
    ['idle 91 days, exactly 1 a week (13 in 91 days)', memory(91, 91, 13), 'warm'],
    ['idle 100 days, 2 a week but under 1 a day', memory(100, 350, 100), 'warm'],
    ['idle 100 days, 1 a day over its life', memory(100, 200, 200), 'hot'],
    ['idle by its last update, not access', memory(120, 300, 0, 'update'), 'cold'],
    ['created 8 days ago, updated 3 days ago: the update counts', memory(3, 8, 0, 'update'), 'hot'],
  ];
  it.each(table)('%s', (_name, input, expected) => {
    expect(classifyTier(input, NOW, POLICY)).toBe(expected);
  });

  it('a life under a day counts as a whole day when averaging accesses', () => {
    // With a 15-minute hot window, a memory made an hour ago and read once at birth is idle. Over
    // its one hour of life that read is 24 a day; over the minimum day it is 1: not under 1.
    const policy: TierPolicy = { ...POLICY, hotDays: 0.25 / 24 };
    const hourAgo = new Date(NOW.getTime() - DAY / 24);
    const once: TierInput = { accessCount: 1, lastAccessedAt: hourAgo, createdAt: hourAgo, updatedAt: hourAgo };
    expect(classifyTier(once, NOW, policy)).toBe('hot');
    expect(classifyTier({ ...once, accessCount: 0 }, NOW, policy)).toBe('warm');
  });

  it('every threshold comes from the policy', () => {
    const strict: TierPolicy = { hotDays: 1, coldDays: 10, warmMaxPerDay: 5, coldMaxPerWeek: 3 };
    expect(classifyTier(memory(2, 100, 0), NOW, strict)).toBe('warm');
    expect(classifyTier(memory(11, 100, 40), NOW, strict)).toBe('cold'); // 2.8 a week
    expect(classifyTier(memory(11, 100, 43), NOW, strict)).toBe('warm'); // 3.01 a week
    expect(classifyTier(memory(11, 100, 500), NOW, strict)).toBe('hot'); // 5 a day
  });

  it('the defaults are the issue numbers, and the env can change each', () => {
    const defaults = loadConfig({ AETERNA_DATA_DIR: '/tmp/aeterna-cfg' }).tiering;
    expect(defaults).toMatchObject({ hotDays: 7, coldDays: 90, warmMaxPerDay: 1, coldMaxPerWeek: 1 });
    expect(defaults.store).toEqual({ kind: 'dir', dir: '/tmp/aeterna-cfg/cold' });
    const custom = loadConfig({
      AETERNA_DATA_DIR: '/tmp/aeterna-cfg',
      AETERNA_TIER_HOT_DAYS: '2',
      AETERNA_TIER_COLD_DAYS: '30',
      AETERNA_TIER_WARM_MAX_PER_DAY: '3',
      AETERNA_TIER_COLD_MAX_PER_WEEK: '0.5',
      AETERNA_SNAPSHOT_S3_BUCKET: 'bucket-1',
    }).tiering;
    expect(custom).toMatchObject({ hotDays: 2, coldDays: 30, warmMaxPerDay: 3, coldMaxPerWeek: 0.5 });
    expect(custom.store).toMatchObject({ kind: 's3', bucket: 'bucket-1', prefix: 'aeterna/cold' });
    expect(() => loadConfig({ AETERNA_TIER_HOT_DAYS: '30', AETERNA_TIER_COLD_DAYS: '30' })).toThrow(/AETERNA_TIER_COLD_DAYS must be above/);
  });

  it('last activity is the later of last access and last update', () => {
    const a = new Date('2026-01-01T00:00:00Z');
    const b = new Date('2026-02-01T00:00:00Z');
    expect(lastActivity({ lastAccessedAt: a, updatedAt: b })).toBe(b);
    expect(lastActivity({ lastAccessedAt: b, updatedAt: a })).toBe(b);
    expect(lastActivity({ lastAccessedAt: null, updatedAt: a })).toBe(a);
  });
});

describe('previewOf', () => {
  it('keeps at most the token budget and never the whole content, however short', () => {
    const long = 'The deploy pipeline runs on GitHub Actions with a matrix over Node 18 and 20, caches npm, and publishes to the registry on tags.';
    const preview = previewOf(long, 8);
    expect(countTokens(preview.slice(0, -1))).toBeLessThanOrEqual(8);
    expect(long.startsWith(preview.slice(0, -1))).toBe(true);
    expect(preview.endsWith('…')).toBe(true);
    for (const short of ['ok', 'a', 'two words']) {
      const p = previewOf(short, 32);
      expect(p).not.toBe(short);
      expect(p.slice(0, -1).length).toBeLessThan(short.length);
    }
  });
});
