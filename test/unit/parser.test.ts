import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Packr } from 'msgpackr';
import { Server, type Socket as ServerSocket } from 'socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import { PacketType, type Packet } from 'socket.io-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MsgpackParserError, SOCKET_PATHS, decodePacket, msgpackParser } from '../../src/protocol/index.js';
import { Decoder, Encoder, MAX_PAYLOAD_DEPTH } from '../../src/protocol/msgpack-parser.js';

/** A permissive encoder for crafting frames our own Encoder would never produce. */
const raw = new Packr({ useRecords: false, moreTypes: true });
const frame = (value: unknown) => raw.pack(value);

function roundTrip(packet: Packet): Packet {
  const chunks = new Encoder().encode(packet);
  expect(chunks).toHaveLength(1);
  expect(chunks[0]).toBeInstanceOf(Uint8Array);
  const decoder = new Decoder();
  const seen: Packet[] = [];
  decoder.on('decoded', (p) => seen.push(p));
  decoder.add(chunks[0]);
  expect(seen).toHaveLength(1);
  return seen[0] as Packet;
}

describe('msgpack parser: round trips', () => {
  const binary = Buffer.from([0, 1, 2, 250, 255]);
  const cases: Array<[string, Packet]> = [
    ['CONNECT with auth', { type: PacketType.CONNECT, nsp: '/', data: { token: 'jwt.jwt.jwt' } }],
    ['CONNECT without data', { type: PacketType.CONNECT, nsp: '/admin' }],
    ['CONNECT reply', { type: PacketType.CONNECT, nsp: '/', data: { sid: 'abc', pid: 'p' } }],
    ['DISCONNECT', { type: PacketType.DISCONNECT, nsp: '/' }],
    ['EVENT', { type: PacketType.EVENT, nsp: '/', data: ['memory.add', { layer: 'team', content: 'x' }] }],
    ['EVENT with ack id', { type: PacketType.EVENT, nsp: '/', data: ['ping'], id: 0 }],
    ['EVENT, large id', { type: PacketType.EVENT, nsp: '/', data: ['ping'], id: 2 ** 40 }],
    ['ACK', { type: PacketType.ACK, nsp: '/', data: [{ ok: true, data: { n: 1 } }], id: 7 }],
    ['ACK without args', { type: PacketType.ACK, nsp: '/', data: [], id: 8 }],
    ['CONNECT_ERROR object', { type: PacketType.CONNECT_ERROR, nsp: '/', data: { message: 'no', data: { code: 'UNAUTHENTICATED' } } }],
    ['CONNECT_ERROR string', { type: PacketType.CONNECT_ERROR, nsp: '/', data: 'legacy' }],
    ['BINARY_EVENT', { type: PacketType.BINARY_EVENT, nsp: '/', data: ['doc.update', { data: binary }] }],
    ['BINARY_ACK', { type: PacketType.BINARY_ACK, nsp: '/', data: [binary], id: 3 }],
    [
      'nested data with binary at depth',
      {
        type: PacketType.EVENT,
        nsp: '/',
        data: ['x', { a: [1, -2, 3.5, 'é', true, false, null, { b: { c: [binary, { d: Buffer.from([9, 8]) }] } }], at: new Date(86_400_000) }],
      },
    ],
  ];

  it.each(cases)('%s', (_name, packet) => {
    const decoded = roundTrip(packet);
    expect(decoded).toEqual(packet);
  });

  it('keeps binary as bytes (Buffer in Node), copied out of the frame', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const chunk = new Encoder().encode({ type: PacketType.EVENT, nsp: '/', data: ['b', bytes] })[0] as Buffer;
    const decoded = decodePacket(chunk);
    const got = (decoded.data as unknown[])[1] as Uint8Array;
    expect(Buffer.isBuffer(got)).toBe(true);
    expect([...got]).toEqual([1, 2, 3]);
    chunk.fill(0);
    expect([...got]).toEqual([1, 2, 3]);
  });

  it('drops undefined properties and turns undefined array items into nil, as JSON would', () => {
    const decoded = roundTrip({ type: PacketType.EVENT, nsp: '/', data: ['x', { keep: 1, drop: undefined }, [undefined, 2]] });
    expect(decoded.data).toEqual(['x', { keep: 1 }, [null, 2]]);
    expect(Object.keys((decoded.data as unknown[])[1] as object)).toEqual(['keep']);
  });

  it('writes plain MessagePack maps that any decoder reads (no records, no extensions)', () => {
    const chunk = new Encoder().encode({ type: PacketType.EVENT, nsp: '/', data: ['e', { a: 1 }], id: 5 })[0] as Buffer;
    // fixmap of 4, first key "type" as a fixstr: a plain map, not a msgpackr record (0xd4 0x72 …).
    expect(chunk[0]).toBe(0x84);
    expect(new Packr({ useRecords: false }).unpack(chunk)).toEqual({ type: 2, nsp: '/', data: ['e', { a: 1 }], id: 5 });
  });

  it('accepts ArrayBuffer and other views as input', () => {
    const chunk = new Encoder().encode({ type: PacketType.EVENT, nsp: '/', data: ['v'] })[0] as Buffer;
    const copy = chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength);
    expect(decodePacket(copy).data).toEqual(['v']);
    expect(decodePacket(new DataView(copy)).data).toEqual(['v']);
  });

  it('treats nil id and data from other implementations as absent', () => {
    expect(decodePacket(frame({ type: 0, nsp: '/', data: null }))).toEqual({ type: 0, nsp: '/' });
    expect(decodePacket(frame({ type: 2, nsp: '/', data: ['e'], id: null }))).toEqual({ type: 2, nsp: '/', data: ['e'] });
  });

  it('lets a destroyed or detached listener go', () => {
    const decoder = new Decoder();
    const seen: Packet[] = [];
    const listener = (p: Packet) => seen.push(p);
    decoder.on('decoded', listener);
    const chunk = new Encoder().encode({ type: PacketType.DISCONNECT, nsp: '/' })[0];
    decoder.add(chunk);
    decoder.removeListener('decoded', listener);
    decoder.add(chunk);
    decoder.on('decoded', listener);
    decoder.destroy();
    decoder.add(chunk);
    expect(seen).toHaveLength(1);
  });
});

describe('msgpack parser: malformed frames are refused', () => {
  const deep = (levels: number): unknown => {
    let value: unknown = 'leaf';
    for (let i = 0; i < levels; i++) value = [value];
    return value;
  };
  const bad: Array<[string, unknown]> = [
    ['empty frame', new Uint8Array(0)],
    ['garbage bytes', Buffer.from([0xc1, 0xff, 0x00, 0x13, 0x37])],
    ['truncated map', Buffer.from([0x84, 0xa4, 0x74])],
    ['trailing bytes', Buffer.concat([frame({ type: 1, nsp: '/' }), Buffer.from([0x01])])],
    ['text frame (JSON parser on the msgpack endpoint)', '2["hello"]'],
    ['not a map', frame([2, '/', ['e']])],
    ['a number', frame(42)],
    ['unknown type', frame({ type: 7, nsp: '/' })],
    ['negative type', frame({ type: -1, nsp: '/' })],
    ['fractional type', frame({ type: 2.5, nsp: '/', data: ['e'] })],
    ['type as string', frame({ type: '2', nsp: '/', data: ['e'] })],
    ['missing nsp', frame({ type: 2, data: ['e'] })],
    ['nsp not a string', frame({ type: 2, nsp: 5, data: ['e'] })],
    ['nsp without slash', frame({ type: 2, nsp: 'admin', data: ['e'] })],
    ['negative id', frame({ type: 2, nsp: '/', data: ['e'], id: -1 })],
    ['fractional id', frame({ type: 2, nsp: '/', data: ['e'], id: 1.5 })],
    ['id as string', frame({ type: 2, nsp: '/', data: ['e'], id: '1' })],
    ['id past 2^53', frame({ type: 2, nsp: '/', data: ['e'], id: 2 ** 53 })],
    ['uint64 max id', Buffer.concat([Buffer.from([0x84, 0xa4]), Buffer.from('type'), Buffer.from([0x03, 0xa3]), Buffer.from('nsp'), Buffer.from([0xa1, 0x2f, 0xa4]), Buffer.from('data'), Buffer.from([0x90, 0xa2]), Buffer.from('id'), Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])])],
    ['bigint id (extension)', frame({ type: 2, nsp: '/', data: ['e'], id: 2n ** 70n })],
    ['id on CONNECT', frame({ type: 0, nsp: '/', id: 1 })],
    ['ACK without id', frame({ type: 3, nsp: '/', data: [] })],
    ['EVENT data not an array', frame({ type: 2, nsp: '/', data: { e: 1 } })],
    ['EVENT with no name', frame({ type: 2, nsp: '/', data: [] })],
    ['EVENT name not a string', frame({ type: 2, nsp: '/', data: [1, 2] })],
    ['reserved event name', frame({ type: 2, nsp: '/', data: ['disconnect', 'x'] })],
    ['ACK data not an array', frame({ type: 3, nsp: '/', data: 'x', id: 1 })],
    ['CONNECT data an array', frame({ type: 0, nsp: '/', data: [1] })],
    ['DISCONNECT with data', frame({ type: 1, nsp: '/', data: {} })],
    ['CONNECT_ERROR without data', frame({ type: 4, nsp: '/' })],
    ['unknown field', frame({ type: 2, nsp: '/', data: ['e'], attachments: 1 })],
    ['a Set inside data', frame({ type: 2, nsp: '/', data: ['e', new Set([1])] })],
    ['a RegExp inside data', frame({ type: 2, nsp: '/', data: ['e', /x/] })],
    ['an Error inside data', frame({ type: 2, nsp: '/', data: ['e', new Error('x')] })],
    ['a BigInt inside data', frame({ type: 2, nsp: '/', data: ['e', { n: 10n ** 30n }] })],
    ['a typed array other than bytes', frame({ type: 2, nsp: '/', data: ['e', new Float64Array([1])] })],
    ['NaN', frame({ type: 2, nsp: '/', data: ['e', Number.NaN] })],
    ['Infinity', frame({ type: 2, nsp: '/', data: ['e', { x: Number.POSITIVE_INFINITY }] })],
    ['nesting past the limit', frame({ type: 2, nsp: '/', data: ['e', deep(MAX_PAYLOAD_DEPTH + 1)] })],
  ];

  it.each(bad)('%s', (_name, chunk) => {
    const decoder = new Decoder();
    let emitted = 0;
    decoder.on('decoded', () => emitted++);
    expect(() => decoder.add(chunk)).toThrow(MsgpackParserError);
    expect(emitted).toBe(0);
  });

  it('accepts nesting up to the limit', () => {
    expect(() => decodePacket(frame({ type: 2, nsp: '/', data: ['e', deep(MAX_PAYLOAD_DEPTH - 2)] }))).not.toThrow();
  });

  it('turns a prototype-polluting key into a plain property', () => {
    const packet = decodePacket(hostileFrame());
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf((packet.data as unknown[])[1])).toBe(Object.prototype);
  });
});

/** `{type: 2, nsp: '/', data: ['e', {"__proto__": {polluted: true}}]}` written by hand. */
function hostileFrame(): Buffer {
  const inner = Buffer.concat([Buffer.from([0x81, 0xa9]), Buffer.from('__proto__'), frame({ polluted: true })]);
  return Buffer.concat([
    Buffer.from([0x83, 0xa4]),
    Buffer.from('type'),
    Buffer.from([0x02, 0xa3]),
    Buffer.from('nsp'),
    Buffer.from([0xa1, 0x2f, 0xa4]),
    Buffer.from('data'),
    Buffer.from([0x92, 0xa1, 0x65]),
    inner,
  ]);
}

describe('msgpack parser: socket.io server and client', () => {
  let httpServer: http.Server;
  let ioServer: Server;
  let port: number;
  const clients: ClientSocket[] = [];
  const serverErrors: unknown[] = [];

  beforeAll(async () => {
    httpServer = http.createServer();
    ioServer = new Server(httpServer, { path: SOCKET_PATHS.msgpack, parser: msgpackParser, serveClient: false });
    ioServer.on('connection', (socket: ServerSocket) => {
      socket.on('error', (err) => serverErrors.push(err));
      socket.on('echo', (...args: unknown[]) => {
        const ack = args.pop();
        if (typeof ack === 'function') ack(...args);
      });
      socket.on('sum', (payload: { values: number[] }, ack: (reply: unknown) => void) =>
        ack({ ok: true, data: payload.values.reduce((a, b) => a + b, 0) }),
      );
      socket.on('push', async (payload: { bytes: Uint8Array }) => {
        // Server-initiated emit with an ack from the client, and a room broadcast.
        const reply: unknown = await socket.timeout(5_000).emitWithAck('reverse', payload.bytes);
        socket.emit('reversed', reply);
        await socket.join('room');
        ioServer.to('room').emit('broadcast', { bytes: payload.bytes, n: 1 });
      });
    });
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    port = (httpServer.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await new Promise<void>((resolve) => void ioServer.close(() => resolve()));
  });

  async function client(transport: 'websocket' | 'polling'): Promise<ClientSocket> {
    const socket = io(`http://127.0.0.1:${port}`, {
      path: SOCKET_PATHS.msgpack,
      parser: msgpackParser,
      transports: [transport],
      forceNew: true,
      reconnection: false,
    });
    clients.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    return socket;
  }

  it.each(['websocket', 'polling'] as const)('carries events, acks and binary over %s', async (transport) => {
    const socket = await client(transport);
    const nested = { a: [1, 'two', { three: [3, null, true] }], bytes: Buffer.from([7, 0, 255]), deep: { u8: new Uint8Array([1, 2]) } };
    const echoed: unknown = await socket.timeout(5_000).emitWithAck('echo', nested, 'second');
    expect(echoed).toEqual({ ...nested, deep: { u8: Buffer.from([1, 2]) } });
    expect(await socket.timeout(5_000).emitWithAck('sum', { values: [1, 2, 3.5] })).toEqual({ ok: true, data: 6.5 });

    socket.on('reverse', (bytes: Uint8Array, ack: (b: Uint8Array) => void) => ack(Uint8Array.from(bytes).reverse()));
    const reversed = new Promise<unknown>((resolve) => socket.once('reversed', resolve));
    const broadcast = new Promise<unknown>((resolve) => socket.once('broadcast', resolve));
    socket.emit('push', { bytes: Buffer.from([1, 2, 3]) });
    expect([...((await reversed) as Uint8Array)]).toEqual([3, 2, 1]);
    const got = (await broadcast) as { bytes: Uint8Array; n: number };
    expect([...got.bytes]).toEqual([1, 2, 3]);
    expect(got.n).toBe(1);
  });

  /** A raw engine.io WebSocket: what a buggy or hostile client can put on the wire. */
  async function rawSocket(): Promise<{ ws: WebSocket; messages: unknown[]; closed: Promise<number> }> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${SOCKET_PATHS.msgpack}/?EIO=4&transport=websocket`);
    const messages: unknown[] = [];
    ws.on('message', (data, isBinary) => messages.push(isBinary ? data : data.toString()));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return { ws, messages, closed };
  }

  async function until(check: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('a malformed frame closes only its own connection; the server keeps serving', async () => {
    const bystander = await client('websocket');
    const disconnects: string[] = [];
    ioServer.once('connection', (socket) => socket.on('disconnect', (reason) => disconnects.push(reason)));

    const { ws, messages, closed } = await rawSocket();
    await until(() => messages.length >= 1, 'the engine.io open packet');
    // A valid CONNECT first, so the socket.io socket exists and sees the error.
    ws.send(new Encoder().encode({ type: PacketType.CONNECT, nsp: '/' })[0] as Buffer);
    await until(() => messages.some((m) => Buffer.isBuffer(m) && decodePacket(m).type === PacketType.CONNECT), 'the CONNECT reply');
    ws.send(Buffer.from([0xc1, 0xde, 0xad, 0xbe, 0xef]));
    await closed;
    await until(() => disconnects.length === 1, 'the server-side disconnect');
    expect(serverErrors.some((e) => e instanceof MsgpackParserError)).toBe(true);

    // Garbage before any CONNECT, and a crafted reserved event, on fresh connections.
    for (const payload of [Buffer.from('not msgpack at all'), frame({ type: 2, nsp: '/', data: ['disconnect'] })]) {
      const other = await rawSocket();
      await until(() => other.messages.length >= 1, 'the engine.io open packet');
      other.ws.send(payload);
      await other.closed;
    }

    expect(bystander.connected).toBe(true);
    expect(await bystander.timeout(5_000).emitWithAck('sum', { values: [40, 2] })).toEqual({ ok: true, data: 42 });
    const fresh = await client('polling');
    expect(await fresh.timeout(5_000).emitWithAck('echo', 'still here')).toBe('still here');
  });
});
