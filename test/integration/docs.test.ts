import * as decoding from 'lib0/decoding';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { DocStore, syncStep1Message, syncStep2Message, syncUpdateMessage } from '../../src/docs/index.js';
import { backends, openTestCore, rejectionOf, type TestCore } from '../support/backends.js';

const alice = { userId: 'alice' };

/** A Y.Doc whose every local change is appended to the store, like an editor would send it. */
function editor(store: DocStore, tenantId: string, docId: string) {
  const doc = new Y.Doc();
  const sent: Promise<unknown>[] = [];
  doc.on('update', (update: Uint8Array, origin: unknown) => {
    if (origin !== 'remote') sent.push(store.append(tenantId, docId, update, alice));
  });
  return {
    doc,
    text: doc.getText('body'),
    /** Waits until every change so far is committed. */
    flushed: () => Promise.all(sent.splice(0)),
    receive: (update: Uint8Array) => Y.applyUpdate(doc, update, 'remote'),
  };
}

function truncatedUpdate(): Uint8Array {
  const d = new Y.Doc();
  d.getText('x').insert(0, 'abc');
  return Y.encodeStateAsUpdate(d).slice(0, -3);
}

/** What a client ends up with after applying a stored state: the comparison that matters. */
function materialise(state: Uint8Array): { body: string; list: unknown[]; sv: Uint8Array } {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, state);
  return { body: doc.getText('body').toString(), list: doc.getArray('list').toJSON(), sv: Y.encodeStateVector(doc) };
}

describe.each(backends())('DocStore on %s', (backend) => {
  let t: TestCore;
  let store: DocStore;

  beforeAll(async () => {
    t = await openTestCore(backend);
    store = new DocStore({ db: t.core.db, compactEvery: 10, maxUpdateBytes: 4096 });
  });
  afterAll(async () => {
    await t?.close();
  });

  const rowCounts = (tenantId: string, docId: string) =>
    t.core.db.withTenant(tenantId, async (sql) => ({
      updates: (await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM doc_updates WHERE doc_id = $1', [docId])).rows[0]?.n,
      heads: (await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM docs WHERE doc_id = $1', [docId])).rows[0]?.n,
    }));

  it('loads a document that was never written as an empty one', async () => {
    expect(materialise(await store.load('t1', 'never')).body).toBe('');
    expect(await rowCounts('t1', 'never')).toEqual({ updates: 0, heads: 0 });
  });

  it('converges two editors that change the same document concurrently', async () => {
    const a = editor(store, 't1', 'shared');
    const b = editor(store, 't1', 'shared');
    // Both start from the same text, then edit without seeing each other's changes.
    a.text.insert(0, 'hello world');
    await a.flushed();
    b.receive(await store.load('t1', 'shared'));
    a.text.insert(0, 'A says: ');
    b.text.insert(b.text.length, ' (B was here)');
    b.text.delete(0, 5);
    a.doc.getArray('list').push(['from a']);
    b.doc.getArray('list').push(['from b']);
    await Promise.all([a.flushed(), b.flushed()]);

    const stored = materialise(await store.load('t1', 'shared'));
    a.receive(await store.load('t1', 'shared'));
    b.receive(await store.load('t1', 'shared'));
    expect(a.text.toString()).toBe(b.text.toString());
    expect(stored.body).toBe(a.text.toString());
    expect(stored.body).toContain('A says: ');
    expect(stored.body).toContain('(B was here)');
    expect(stored.list).toEqual(expect.arrayContaining(['from a', 'from b']));
    expect(Y.encodeStateVector(a.doc)).toEqual(stored.sv);
  });

  it('gives every concurrent append of a document its own seq, with no gap', async () => {
    const updates = Array.from({ length: 25 }, (_, i) => {
      const d = new Y.Doc();
      d.getArray('list').push([i]);
      return Y.encodeStateAsUpdate(d);
    });
    const many = new DocStore({ db: t.core.db, compactEvery: 1000 });
    const results = await Promise.all(updates.map((u) => many.append('t1', 'racy', u, alice)));
    expect(results.map((r) => r.seq).sort((x, y) => (x ?? 0) - (y ?? 0))).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect([...(materialise(await many.load('t1', 'racy')).list as number[])].sort((x, y) => x - y)).toEqual(Array.from({ length: 25 }, (_, i) => i));
  });

  it('compacts every N updates into a snapshot that loads to the same document', async () => {
    const a = editor(store, 't1', 'compacted');
    const states: ReturnType<typeof materialise>[] = [];
    for (let i = 0; i < 9; i++) {
      a.text.insert(a.text.length, `${i},`);
      await a.flushed();
    }
    expect(await rowCounts('t1', 'compacted')).toEqual({ updates: 9, heads: 1 });
    states.push(materialise(await store.load('t1', 'compacted')));

    a.text.delete(0, 2);
    expect(await a.flushed()).toEqual([{ seq: 10, compacted: true }]);
    expect(await rowCounts('t1', 'compacted')).toEqual({ updates: 0, heads: 1 });
    states.push(materialise(await store.load('t1', 'compacted')));
    expect(states[1]?.body).toBe('1,2,3,4,5,6,7,8,');

    // Updates after the snapshot are read on top of it.
    a.text.insert(0, '>');
    await a.flushed();
    expect(materialise(await store.load('t1', 'compacted')).body).toBe('>1,2,3,4,5,6,7,8,');
    const snapshot = await t.core.db.withTenant('t1', (sql) =>
      sql.query<{ head_seq: string | number; snapshot_seq: string | number }>("SELECT head_seq, snapshot_seq FROM docs WHERE doc_id = 'compacted'"),
    );
    expect(snapshot.rows.map((r) => [Number(r.head_seq), Number(r.snapshot_seq)])).toEqual([[11, 10]]);
  });

  it('loads the same state before and after an explicit compaction', async () => {
    const a = editor(store, 't1', 'explicit');
    a.text.insert(0, 'one two three');
    a.text.delete(3, 4);
    a.doc.getArray('list').insert(0, [1, { nested: true }, 'x']);
    await a.flushed();
    const before = await store.load('t1', 'explicit');
    expect(await store.compact('t1', 'explicit')).toBe(true);
    const after = await store.load('t1', 'explicit');
    expect(materialise(after)).toEqual(materialise(before));
    expect(Y.encodeStateVectorFromUpdate(after)).toEqual(Y.encodeStateVectorFromUpdate(before));
    expect(await rowCounts('t1', 'explicit')).toEqual({ updates: 0, heads: 1 });
    expect(await store.compact('t1', 'explicit')).toBe(false);
    expect(await store.compact('t1', 'nothing-here')).toBe(false);
  });

  it('never loses a committed update to a compaction that commits while a load runs', async () => {
    const racing = new DocStore({ db: t.core.db, compactEvery: 3 });
    const committed: number[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 30; i++) {
        const d = new Y.Doc();
        d.getArray('list').push([i]);
        await racing.append('t1', 'busy', Y.encodeStateAsUpdate(d), alice);
        committed.push(i);
      }
      writing = false;
    })();
    const reader = async () => {
      while (writing) {
        const before = [...committed];
        const seen = materialise(await racing.load('t1', 'busy')).list;
        expect(seen).toEqual(expect.arrayContaining(before));
      }
    };
    await Promise.all([writer, reader(), reader(), reader()]);
    expect((materialise(await racing.load('t1', 'busy')).list as number[]).sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it.each([
    ['random bytes', Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)],
    ['no bytes', new Uint8Array()],
    ['a truncated update', truncatedUpdate()],
  ])('refuses %s with INVALID_ARGUMENT and writes nothing', async (_name, bytes) => {
    const err = await rejectionOf(store.append('t1', 'malformed', bytes, alice));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(await rowCounts('t1', 'malformed')).toEqual({ updates: 0, heads: 0 });
  });

  it('refuses an update over the size cap with PAYLOAD_TOO_LARGE and writes nothing', async () => {
    const d = new Y.Doc();
    d.getText('body').insert(0, 'x'.repeat(5000));
    const err = await rejectionOf(store.append('t1', 'big', Y.encodeStateAsUpdate(d), alice));
    expect(err).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { limit: 4096 } });
    expect(await rowCounts('t1', 'big')).toEqual({ updates: 0, heads: 0 });
    expect((await new DocStore({ db: t.core.db }).append('t1', 'big', Y.encodeStateAsUpdate(d), alice)).seq).toBe(1);
  });

  it('stores nothing for an update that changes nothing', async () => {
    expect(await store.append('t1', 'noop', Y.encodeStateAsUpdate(new Y.Doc()), alice)).toEqual({ seq: null, compacted: false });
    expect(await rowCounts('t1', 'noop')).toEqual({ updates: 0, heads: 0 });
  });

  it('rejects a document id that breaks the id rule before any query', async () => {
    for (const call of [store.load('t1', '../etc'), store.append('t1', "x' OR '1'='1", new Uint8Array(), alice), store.compact('t1', '')]) {
      expect(await rejectionOf(call)).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'docId' } });
    }
  });

  it('keeps the same document id of two tenants apart', async () => {
    const a = editor(store, 'tenant-a', 'plan');
    const b = editor(store, 'tenant-b', 'plan');
    a.text.insert(0, 'secret of A');
    b.text.insert(0, 'plan of B');
    await Promise.all([a.flushed(), b.flushed()]);
    expect(materialise(await store.load('tenant-a', 'plan')).body).toBe('secret of A');
    expect(materialise(await store.load('tenant-b', 'plan')).body).toBe('plan of B');
  });

  it("returns nothing of another tenant's document even to a forged query", async () => {
    const victim = editor(store, 'victim', 'minutes');
    victim.text.insert(0, 'board minutes');
    await victim.flushed();
    const seen = await t.core.db.withTenant('attacker', async (sql) => ({
      updates: (await sql.query("SELECT seq FROM doc_updates WHERE tenant_id = 'victim'")).rows,
      heads: (await sql.query("SELECT doc_id FROM docs WHERE tenant_id = 'victim' OR true")).rows,
      compacted: (await sql.query("DELETE FROM doc_updates WHERE tenant_id = 'victim'")).affectedRows,
      rewritten: (await sql.query("UPDATE docs SET snapshot_seq = 0, head_seq = 0 WHERE tenant_id = 'victim'")).affectedRows,
    }));
    expect(seen).toEqual({ updates: [], heads: [], compacted: 0, rewritten: 0 });
    const planted = await rejectionOf(
      t.core.db.withTenant('attacker', (sql) =>
        sql.query("INSERT INTO doc_updates (tenant_id, doc_id, seq, data, actor) VALUES ('victim', 'minutes', 99, '\\x0000', '{}')"),
      ),
    );
    expect(planted.message).toMatch(/row-level security/);
    expect(materialise(await store.load('victim', 'minutes')).body).toBe('board minutes');
  });

  describe('y-protocols sync', () => {
    it('answers step 1 with the step 2 that brings a client to the stored state', async () => {
      const a = editor(store, 't1', 'synced');
      a.text.insert(0, 'stored on the server');
      await a.flushed();

      const client = new Y.Doc();
      client.getText('body').insert(0, 'offline edit ');
      const { reply, step1, stored } = await store.syncReply('t1', 'synced', syncStep1Message(Y.encodeStateVector(client)), alice);
      expect(stored).toBeNull();
      const answer = decodeMessage(reply);
      expect(answer.type).toBe(1);
      Y.applyUpdate(client, answer.payload);
      expect(client.getText('body').toString()).toContain('stored on the server');

      // The server's step 1 tells the client what to send back; its step 2 is stored.
      const serverSv = decodeMessage(step1);
      expect(serverSv.type).toBe(0);
      const back = await store.syncReply('t1', 'synced', syncStep2Message(Y.encodeStateAsUpdate(client, serverSv.payload)), alice);
      expect(back.reply).toBeNull();
      expect(back.stored?.seq).toBeGreaterThan(0);
      expect(materialise(await store.load('t1', 'synced')).body).toBe(client.getText('body').toString());
    });

    it('stores an update message and lets a read-only client finish its handshake but not write', async () => {
      const d = new Y.Doc();
      d.getText('body').insert(0, 'via update message');
      const update = Y.encodeStateAsUpdate(d);
      const res = await store.syncReply('t1', 'sync-update', syncUpdateMessage(update), alice);
      expect(res.stored).toEqual({ update, seq: 1 });

      const upToDate = await store.syncReply('t1', 'sync-update', syncStep2Message(Y.encodeStateAsUpdate(new Y.Doc())), alice, { readOnly: true });
      expect(upToDate).toEqual({ reply: null, step1: null, stored: null });
      d.getText('body').insert(0, '!');
      const err = await rejectionOf(store.syncReply('t1', 'sync-update', syncUpdateMessage(Y.encodeStateAsUpdate(d)), alice, { readOnly: true }));
      expect(err.code).toBe('FORBIDDEN');
      expect(materialise(await store.load('t1', 'sync-update')).body).toBe('via update message');
    });

    it('refuses a malformed sync message or a malformed update inside one', async () => {
      expect((await rejectionOf(store.syncReply('t1', 'bad-sync', Uint8Array.of(9, 0), alice))).code).toBe('INVALID_ARGUMENT');
      expect((await rejectionOf(store.syncReply('t1', 'bad-sync', syncUpdateMessage(Uint8Array.of(5, 5, 5)), alice))).code).toBe('INVALID_ARGUMENT');
      expect(await rowCounts('t1', 'bad-sync')).toEqual({ updates: 0, heads: 0 });
    });
  });
});

function decodeMessage(message: Uint8Array | null): { type: number; payload: Uint8Array } {
  if (!message) throw new Error('expected a message');
  const decoder = decoding.createDecoder(message);
  return { type: decoding.readVarUint(decoder), payload: decoding.readVarUint8Array(decoder) };
}
