import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AeternaClient, type AeternaClientOptions, type PresenceEnvelope } from '../../src/client/index.js';
import { AeternaError, SOCKET_PATHS, type ResyncRequired } from '../../src/protocol/index.js';
import { tokenFor } from '../support/backends.js';
import { startTestGateway, until, type TestGateway } from '../support/gateway.js';

/** AeternaClient against the real gateway (embedded mode, one node). */
describe('AeternaClient ↔ gateway', () => {
  let g: TestGateway;
  let url: string;
  const clients: AeternaClient[] = [];

  beforeAll(async () => {
    g = await startTestGateway({ AETERNA_RELAY_TICK_MS: '100' });
    url = g.url;
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await g?.close();
  });

  async function connect(tenantId: string, options: Partial<AeternaClientOptions> = {}, userId = 'alice'): Promise<AeternaClient> {
    const token = await tokenFor({ tenantId, userId, roles: ['admin'] });
    const client = await AeternaClient.connect({ url, token, transport: 'websocket', reconnectDelayMs: 50, reconnectDelayMaxMs: 200, ...options });
    clients.push(client);
    return client;
  }

  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it('refuses a bad token with UNAUTHENTICATED, and closes for good when the token expires', async () => {
    const err = await AeternaClient.connect({ url, token: 'garbage', transport: 'websocket' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AeternaError);
    expect((err as AeternaError).code).toBe('UNAUTHENTICATED');

    const shortLived = await tokenFor({ tenantId: 'exp', userId: 'alice', roles: ['viewer'] }, '2s');
    const client = await AeternaClient.connect({ url, token: shortLived, transport: 'websocket' });
    clients.push(client);
    client.on('error', () => undefined);
    const closed = await new Promise<AeternaError | undefined>((resolve) => client.on('closed', resolve));
    expect(closed?.code).toBe('UNAUTHENTICATED');
  });

  it('runs the memory API over the socket with the same results and errors as REST', async () => {
    const client = await connect('client-ops');
    const { memory } = await client.add({ layer: 'team', teamId: 'core', content: 'the client writes' });
    expect(await client.get(memory.id)).toMatchObject({ id: memory.id, content: 'the client writes' });
    const updated = await client.update(memory.id, { version: 1, content: 'the client edits' });
    expect(updated.version).toBe(2);
    const conflict = await client.update(memory.id, { version: 1, content: 'stale' }).catch((e: unknown) => e as AeternaError);
    expect(conflict).toMatchObject({ code: 'CONFLICT', details: { currentVersion: 2 } });
    expect((await client.search({ query: 'the client edits' })).results[0]?.memory.id).toBe(memory.id);
    expect((await client.feedback(memory.id, { type: 'helpful' })).id).toBe(memory.id);
    expect((await client.list({ layer: 'team' })).items.map((m) => m.id)).toEqual([memory.id]);
    expect(await client.delete(memory.id)).toMatchObject({ id: memory.id, deleted: true });
    expect(await client.readEvents(0, 10)).toMatchObject({ head: 4, events: [{ seq: 1 }, { seq: 2 }, { seq: 3 }, { seq: 4 }] });
    const invalid = await client.add({ layer: 'team', content: 'no team' }).catch((e: unknown) => e as AeternaError);
    expect(invalid).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'teamId' } });
  });

  it('delivers every seq once and in order across a dropped connection while writes continue, on msgpack/WebSocket and JSON/long-polling', async () => {
    const writer = await connect('client-stream');
    // A slow reconnect makes sure the writes below land while both are away.
    const away = { reconnectDelayMs: 2_000, reconnectDelayMaxMs: 2_000 };
    const subscribers = [await connect('client-stream', away), await connect('client-stream', { ...away, parser: 'json', transport: 'polling' })];
    const seen = subscribers.map(() => [] as number[]);
    for (const [i, s] of subscribers.entries()) {
      await s.subscribe({ layers: ['team'], scopes: { teamId: 'core' } }, (e) => void seen[i]?.push(e.seq));
    }
    for (let i = 1; i <= 3; i++) await writer.add({ layer: 'team', teamId: 'core', content: `before the drop ${i}` });
    await until(() => seen.every((s) => s.length === 3), 'the first three events');

    // The network drops under both subscribers; the writer keeps going meanwhile.
    const reconnected = subscribers.map((s) => new Promise<void>((resolve) => s.on('connected', () => resolve())));
    for (const s of subscribers) s.socket.io.engine.close();
    for (let i = 4; i <= 12; i++) await writer.add({ layer: 'team', teamId: 'core', content: `during the gap ${i}` });
    expect(subscribers.map((s) => s.connected)).toEqual([false, false]);
    await Promise.all(reconnected);
    for (let i = 13; i <= 15; i++) await writer.add({ layer: 'team', teamId: 'core', content: `after the resume ${i}` });
    await until(() => seen.every((s) => s.length >= 15), 'all fifteen events on both subscribers');
    await new Promise((r) => setTimeout(r, 300));
    for (const s of seen) expect(s).toEqual(range(1, 15));
  });

  it('tells the consumer to reload when its stored position belongs to another epoch', async () => {
    const client = await connect('client-resync');
    await client.add({ layer: 'team', teamId: 'core', content: 'one' });
    await client.add({ layer: 'team', teamId: 'core', content: 'two' });
    const notices: ResyncRequired[] = [];
    const seen: number[] = [];
    const sub = await client.subscribe(
      { layers: ['team'], from: { seq: 1, epoch: 'a-lost-epoch' }, onResync: (n) => void notices.push(n) },
      (e) => void seen.push(e.seq),
    );
    expect(notices).toEqual([expect.objectContaining({ reason: 'epoch_changed', head: 2 })]);
    expect(sub.position()).toEqual({ seq: 2, epoch: notices[0]?.epoch });
    await client.add({ layer: 'team', teamId: 'core', content: 'three' });
    await until(() => seen.length === 1, 'the live event after the resync');
    expect(seen).toEqual([3]);
  });

  it('survives malformed msgpack frames on uWebSockets: only that connection closes', async () => {
    const client = await connect('client-garbage');
    for (const garbage of [Buffer.from([0xc1, 0xde, 0xad]), Buffer.from('{"type":2}'), Buffer.alloc(64, 0xff)]) {
      const ws = new WebSocket(`${url.replace('http', 'ws')}${SOCKET_PATHS.msgpack}/?EIO=4&transport=websocket`);
      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      await new Promise<void>((resolve) => ws.once('message', () => resolve()));
      ws.send(garbage);
      await closed;
    }
    expect(client.connected).toBe(true);
    expect((await client.list({ layer: 'team' })).items).toEqual([]);
  });

  it('shares presence: join, others’ changes as events, re-join after a reconnect, left on close', async () => {
    const alice = await connect('client-presence');
    const bob = await connect('client-presence', {}, 'bob');
    const events: PresenceEnvelope[] = [];
    for (const name of ['presence.joined', 'presence.updated', 'presence.left'] as const) alice.on(name, (e) => void events.push(e));
    expect((await alice.joinSession('s1', { status: 'thinking', activity: 'planning' })).map((m) => m.userId)).toEqual(['alice']);
    expect((await bob.joinSession('s1')).map((m) => m.userId).sort()).toEqual(['alice', 'bob']);
    await bob.setPresence('s1', 'tool-calling', 'search');
    await until(() => events.some((e) => e.type === 'presence.updated'), 'bob’s update');
    expect(events[0]).toMatchObject({ type: 'presence.joined', seq: null, data: { sessionId: 's1', member: { userId: 'bob' } } });
    expect(events.find((e) => e.type === 'presence.updated')?.data.member).toMatchObject({ status: 'tool-calling', activity: 'search' });

    const rejoined = new Promise<string[]>((resolve) => bob.on('presence.members', (_s, members) => resolve(members.map((m) => m.userId).sort())));
    bob.socket.io.engine.close();
    expect(await rejoined).toEqual(['alice', 'bob']);
    bob.close();
    await until(() => events.at(-1)?.type === 'presence.left', 'bob’s departure');
    expect(events.at(-1)?.data.member.userId).toBe('bob');
  });

  it('keeps a shared document in sync across editors, transports and a dropped connection', async () => {
    const a = await connect('client-docs');
    const b = await connect('client-docs', { parser: 'json', transport: 'polling' }, 'bob');
    const docA = await a.openDoc('plan');
    const docB = await b.openDoc('plan');
    expect([docA.writable, docB.writable]).toEqual([true, true]);
    docA.doc.getText('t').insert(0, 'step one');
    await until(() => docB.doc.getText('t').toString() === 'step one', 'B to see A’s edit');
    docB.doc.getText('t').insert(8, ', step two');
    await until(() => docA.doc.getText('t').toString() === 'step one, step two', 'A to see B’s edit');

    docA.awareness.setLocalState({ user: 'alice' });
    await until(() => docB.awareness.getStates().get(docA.doc.clientID)?.['user'] === 'alice', 'A’s awareness on B');

    a.socket.io.engine.close();
    docA.doc.getText('t').insert(0, '# ');
    await until(() => docB.doc.getText('t').toString() === '# step one, step two', 'A’s offline edit on B');

    const late = await connect('client-docs', {}, 'carol');
    expect((await late.openDoc('plan')).doc.getText('t').toString()).toBe('# step one, step two');
    await docA.close();
    await until(() => !docB.awareness.getStates().has(docA.doc.clientID), 'A’s awareness to go with it');
  });
});
