import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryAnswerStore, RedisAnswerStore, type AnswerEntry } from '../../src/cca/index.js';
import { rejectionOf } from '../support/backends.js';

function entry(createdAt: number): AnswerEntry {
  return { id: randomUUID(), vector: new Float32Array([1, 0]), createdAt, expiresAt: createdAt + 1000 };
}

describe('in-process answer store', () => {
  it('keeps at most N answers per partition, dropping the least recently used', async () => {
    const store = new MemoryAnswerStore<string>(100);
    const [a, b, c, d] = [1, 2, 3, 4].map(entry) as [AnswerEntry, AnswerEntry, AnswerEntry, AnswerEntry];
    for (const e of [a, b, c]) await store.put('acme', 'context.p1', e, `v${e.createdAt}`, 2);
    expect((await store.list('acme', 'context.p1')).map((e) => e.createdAt)).toEqual([2, 3]);
    expect(await store.value('acme', 'context.p1', a.id)).toBeUndefined();
    // Reading b makes c the least recently used.
    expect(await store.value('acme', 'context.p1', b.id)).toBe('v2');
    await store.put('acme', 'context.p1', d, 'v4', 2);
    expect((await store.list('acme', 'context.p1')).map((e) => e.createdAt).sort()).toEqual([2, 4]);
    expect(store.size).toBe(2);
  });

  it('bounds all partitions together, evicting from the least recently used one', async () => {
    const store = new MemoryAnswerStore<string>(3);
    await store.put('acme', 'context.a', entry(1), 'a1', 10);
    await store.put('acme', 'context.b', entry(2), 'b1', 10);
    await store.put('globex', 'context.a', entry(3), 'g1', 10);
    // Reading acme/a makes it recent: acme/b is now the least recently used.
    await store.list('acme', 'context.a');
    await store.put('globex', 'context.a', entry(4), 'g2', 10);
    expect(store.size).toBe(3);
    expect(await store.list('acme', 'context.b')).toEqual([]);
    expect((await store.list('acme', 'context.a')).length).toBe(1);
    expect((await store.list('globex', 'context.a')).length).toBe(2);
  });

  it('keeps tenants apart and stores nothing at 0 entries', async () => {
    const store = new MemoryAnswerStore<string>(10);
    await store.put('acme', 'context.p', entry(1), 'mine', 10);
    expect(await store.list('globex', 'context.p')).toEqual([]);
    const off = new MemoryAnswerStore<string>(0);
    await off.put('acme', 'context.p', entry(1), 'x', 10);
    expect(await off.list('acme', 'context.p')).toEqual([]);
  });

  it('refuses keys that could alias another tenant', async () => {
    const store = new MemoryAnswerStore<string>(10);
    expect((await rejectionOf(store.put('acme:x', 'context.p', entry(1), 'x', 10))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(store.list('acme', 'context:p'))).code).toBe('INVALID_ARGUMENT');
    expect(() => RedisAnswerStore.key('acme', 'context.p')).not.toThrow();
    expect(RedisAnswerStore.key('acme', 'context.p')).toBe('t:acme:answers:context.p');
    expect(() => RedisAnswerStore.key('a*', 'context.p')).toThrow(/tenant/);
  });
});
