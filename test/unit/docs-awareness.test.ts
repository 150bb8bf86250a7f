import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate } from 'y-protocols/awareness';
import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { AwarenessMerger, readAwarenessUpdate, writeAwarenessUpdate, type AwarenessEntry } from '../../src/docs/index.js';

const awarenesses: Awareness[] = [];

/** A real y-protocols Awareness, destroyed after each test (it runs a renewal interval). */
function editor(clientId?: number): Awareness {
  const doc = new Y.Doc();
  if (clientId !== undefined) doc.clientID = clientId;
  const awareness = new Awareness(doc);
  awarenesses.push(awareness);
  return awareness;
}

afterEach(() => {
  for (const a of awarenesses.splice(0)) a.destroy();
});

const entry = (clientId: number, clock: number, state: unknown): AwarenessEntry => ({ clientId, clock, state: JSON.stringify(state) });

describe('AwarenessMerger', () => {
  it('keeps only the newest clock of each client, whatever order updates arrive in', () => {
    const merger = new AwarenessMerger();
    merger.add([entry(1, 3, { cursor: 3 }), entry(2, 1, { cursor: 'b1' })]);
    merger.add([entry(1, 5, { cursor: 5 })]);
    merger.add([entry(1, 4, { cursor: 4 }), entry(2, 2, { cursor: 'b2' })]);
    expect(merger.size).toBe(2);
    const merged = merger.take();
    expect(merged).not.toBeNull();
    expect(readAwarenessUpdate(merged as Uint8Array)).toEqual([entry(1, 5, { cursor: 5 }), entry(2, 2, { cursor: 'b2' })]);
  });

  it('lets a removal win over a state of the same clock, as applyAwarenessUpdate does', () => {
    const merger = new AwarenessMerger();
    merger.add([entry(7, 2, { name: 'x' }), entry(7, 2, null), entry(7, 2, { name: 'again' })]);
    expect(readAwarenessUpdate(merger.take() as Uint8Array)).toEqual([entry(7, 2, null)]);
  });

  it('empties on take and has nothing to send when nothing arrived', () => {
    const merger = new AwarenessMerger();
    expect(merger.take()).toBeNull();
    merger.add([entry(1, 1, {})]);
    expect(merger.take()).not.toBeNull();
    expect(merger.size).toBe(0);
    expect(merger.take()).toBeNull();
  });

  it('turns many real y-protocols updates into one that leaves a receiver in the same state', () => {
    const a = editor(101);
    const b = editor(202);
    const updates: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) {
      a.setLocalStateField('cursor', i);
      updates.push(encodeAwarenessUpdate(a, [a.clientID]));
      if (i % 2 === 0) {
        b.setLocalStateField('cursor', -i);
        updates.push(encodeAwarenessUpdate(b, [b.clientID]));
      }
    }
    b.setLocalState(null);
    updates.push(encodeAwarenessUpdate(b, [b.clientID]));

    const one = editor();
    for (const u of updates) applyAwarenessUpdate(one, u, 'relay');
    const merger = new AwarenessMerger();
    for (const u of updates) merger.add(readAwarenessUpdate(u));
    const merged = merger.take() as Uint8Array;
    const batched = editor();
    applyAwarenessUpdate(batched, merged, 'relay');

    expect(readAwarenessUpdate(merged)).toHaveLength(2);
    const remote = (aw: Awareness) => [...aw.getStates()].filter(([id]) => id !== aw.clientID);
    expect(remote(batched)).toEqual(remote(one));
    expect(remote(batched)).toEqual([[101, { cursor: 19 }]]);
    expect(batched.meta.get(202)?.clock).toBe(one.meta.get(202)?.clock);
  });
});

describe('awareness update decoding', () => {
  it('reads what y-protocols writes and writes what y-protocols reads', () => {
    const a = editor(42);
    a.setLocalState({ user: { name: 'Ada', color: '#f00' } });
    const decoded = readAwarenessUpdate(encodeAwarenessUpdate(a, [42]));
    expect(decoded).toEqual([entry(42, a.meta.get(42)?.clock ?? -1, { user: { name: 'Ada', color: '#f00' } })]);
    const receiver = editor();
    applyAwarenessUpdate(receiver, writeAwarenessUpdate(decoded), 'test');
    expect(receiver.getStates().get(42)).toEqual({ user: { name: 'Ada', color: '#f00' } });
  });

  it.each([
    ['empty bytes', new Uint8Array()],
    ['a count with no entries', Uint8Array.of(3)],
    ['trailing bytes', Uint8Array.of(0, 9)],
    ['a state that is not JSON', writeAwarenessUpdate([{ clientId: 1, clock: 1, state: '{nope' }])],
  ])('refuses %s with INVALID_ARGUMENT', (_name, bytes) => {
    expect(() => readAwarenessUpdate(bytes)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
