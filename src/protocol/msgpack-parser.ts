import { Packr } from 'msgpackr';
import { PacketType, type Packet } from 'socket.io-parser';

/**
 * A socket.io parser that puts each packet in one MessagePack frame: `{type, nsp, data?, id?}`,
 * the same map layout as socket.io-msgpack-parser and python-socketio's msgpack packets, so
 * clients in other languages can speak it. Binary values travel as MessagePack `bin`, without
 * socket.io's placeholder-and-attachment dance.
 *
 * Server: `new Server(httpServer, { parser: msgpackParser })`; client: `io(url, { parser: msgpackParser })`.
 */

// Options chosen for interoperability and parity with the JSON parser:
// - no records, structured clone or extension types: a plain MessagePack decoder can read every
//   frame, and a peer cannot make us build Sets, RegExps or cyclic graphs;
// - maps decode to plain objects (never Map), 64-bit integers to numbers, as JSON.parse would;
// - undefined object properties are left out and undefined array items become nil, as
//   JSON.stringify does, because non-JS decoders have no `undefined`;
// - decoded `bin` values are copied: a view into the transport's chunk would pin (or, with uWS,
//   outlive) the whole frame.
// `skipValues` is a msgpackr option (1.12 here) that its type declarations leave out.
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  int64AsType: 'number',
  encodeUndefinedAsNil: true,
  copyBuffers: true,
  skipValues: [undefined],
} as ConstructorParameters<typeof Packr>[0] & { skipValues: unknown[] });

/** Deeper nesting than this is refused: no legitimate payload needs it, and walks stay cheap. */
export const MAX_PAYLOAD_DEPTH = 64;

// Event names socket.io handles itself: a peer must not be able to emit them (socket.io-parser
// refuses them for the same reason; a crafted "disconnect" event would run disconnect handlers).
const RESERVED_EVENTS: ReadonlySet<string> = new Set([
  'connect',
  'connect_error',
  'disconnect',
  'disconnecting',
  'newListener',
  'removeListener',
]);

const PACKET_KEYS: ReadonlySet<string> = new Set(['type', 'nsp', 'data', 'id']);

export class MsgpackParserError extends Error {
  constructor(message: string) {
    super(`msgpack parser: ${message}`);
    this.name = 'MsgpackParserError';
  }
}

export class Encoder {
  /** One frame per packet; the returned buffer is never reused by later calls. */
  encode(packet: Packet): Buffer[] {
    const frame: Record<string, unknown> = { type: packet.type, nsp: packet.nsp };
    if (packet.data !== undefined) frame['data'] = packet.data;
    if (packet.id !== undefined) frame['id'] = packet.id;
    return [packr.pack(frame)];
  }
}

type DecodedListener = (packet: Packet) => void;

/**
 * Decodes one frame per `add`. Anything that is not a well-formed packet throws: socket.io's
 * server catches that in `Client.ondata` and closes only that connection; socket.io-client treats
 * it as a "parse error" close and reconnects.
 */
export class Decoder {
  private listeners = new Set<DecodedListener>();

  on(event: 'decoded', listener: DecodedListener): this {
    if (event === 'decoded') this.listeners.add(listener);
    return this;
  }

  off(event: 'decoded', listener: DecodedListener): this {
    if (event === 'decoded') this.listeners.delete(listener);
    return this;
  }

  /** socket.io's server detaches with removeListener, socket.io-client with off. */
  removeListener(event: 'decoded', listener: DecodedListener): this {
    return this.off(event, listener);
  }

  add(chunk: unknown): void {
    const packet = decodePacket(chunk);
    for (const listener of [...this.listeners]) listener(packet);
  }

  destroy(): void {
    this.listeners.clear();
  }
}

/** The `parser` option of socket.io's `Server` and socket.io-client's `io()`. */
export const msgpackParser = { Encoder, Decoder } as const;

export function decodePacket(chunk: unknown): Packet {
  const frame = unpackFrame(toBytes(chunk));
  if (!isPlainObject(frame)) throw new MsgpackParserError('a packet must be a map');
  for (const key of Object.keys(frame)) {
    if (!PACKET_KEYS.has(key)) throw new MsgpackParserError(`unknown packet field "${key.slice(0, 32)}"`);
  }
  const type = packetTypeOf(frame['type']);
  const nsp = frame['nsp'];
  if (typeof nsp !== 'string' || !nsp.startsWith('/')) throw new MsgpackParserError('nsp must be a string starting with "/"');
  // Other implementations (python-socketio) send nil for absent fields.
  const id = checkId(type, frame['id'] ?? undefined);
  const data = frame['data'] ?? undefined;
  checkData(type, data);
  const packet: Packet = { type, nsp };
  if (data !== undefined) packet.data = data;
  if (id !== undefined) packet.id = id;
  return packet;
}

function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  // A text frame means the peer speaks the JSON parser on the msgpack endpoint.
  throw new MsgpackParserError(`expected a binary frame, got ${typeof chunk === 'string' ? 'text' : typeof chunk}`);
}

function unpackFrame(bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) throw new MsgpackParserError('empty frame');
  try {
    return packr.unpack(bytes);
  } catch (err) {
    // msgpackr's messages can quote frame content; keep them short for logs.
    const reason = err instanceof Error ? err.message.slice(0, 120) : 'undecodable';
    throw new MsgpackParserError(`invalid MessagePack: ${reason}`);
  }
}

function packetTypeOf(value: unknown): PacketType {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < PacketType.CONNECT || value > PacketType.BINARY_ACK) {
    throw new MsgpackParserError('type must be a socket.io packet type (0-6)');
  }
  return value as PacketType;
}

const carriesId = (type: PacketType) =>
  type === PacketType.EVENT || type === PacketType.BINARY_EVENT || type === PacketType.ACK || type === PacketType.BINARY_ACK;
const isAck = (type: PacketType) => type === PacketType.ACK || type === PacketType.BINARY_ACK;

function checkId(type: PacketType, id: unknown): number | undefined {
  if (id === undefined) {
    if (isAck(type)) throw new MsgpackParserError('an ACK needs an id');
    return undefined;
  }
  if (!carriesId(type)) throw new MsgpackParserError('only EVENT and ACK packets carry an id');
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    throw new MsgpackParserError('id must be a non-negative safe integer');
  }
  return id;
}

function checkData(type: PacketType, data: unknown): void {
  switch (type) {
    case PacketType.CONNECT:
      if (data !== undefined && !isPlainObject(data)) throw new MsgpackParserError('CONNECT data must be a map');
      break;
    case PacketType.DISCONNECT:
      if (data !== undefined) throw new MsgpackParserError('DISCONNECT carries no data');
      break;
    case PacketType.CONNECT_ERROR:
      if (typeof data !== 'string' && !isPlainObject(data)) throw new MsgpackParserError('CONNECT_ERROR data must be a map or a string');
      break;
    case PacketType.EVENT:
    case PacketType.BINARY_EVENT: {
      if (!Array.isArray(data) || data.length === 0) throw new MsgpackParserError('EVENT data must be a non-empty array');
      const name: unknown = data[0];
      if (typeof name !== 'string' || RESERVED_EVENTS.has(name)) throw new MsgpackParserError('EVENT name must be a string and not a reserved name');
      break;
    }
    case PacketType.ACK:
    case PacketType.BINARY_ACK:
      if (!Array.isArray(data)) throw new MsgpackParserError('ACK data must be an array');
      break;
  }
  checkPlainData(data);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Only what JSON and MessagePack both mean the same thing by, plus bytes and timestamps, may reach
 * handlers: a NaN, BigInt, Set or Error would pass socket.io and then surprise code (and zod
 * schemas) written for JSON input.
 */
function checkPlainData(root: unknown): void {
  const stack: Array<{ value: unknown; depth: number }> = [{ value: root, depth: 0 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { value, depth } = item;
    if (value === null || value === undefined || typeof value === 'string' || typeof value === 'boolean') continue;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new MsgpackParserError('numbers must be finite');
      continue;
    }
    // Buffer in Node, plain Uint8Array in browsers.
    if (value instanceof Uint8Array) continue;
    if (value instanceof Date) {
      if (Number.isNaN(value.getTime())) throw new MsgpackParserError('invalid timestamp');
      continue;
    }
    const children = Array.isArray(value) ? value : isPlainObject(value) ? Object.values(value) : undefined;
    if (children === undefined) throw new MsgpackParserError(`unsupported value of type ${describe(value)}`);
    if (depth >= MAX_PAYLOAD_DEPTH) throw new MsgpackParserError(`payload nested deeper than ${MAX_PAYLOAD_DEPTH}`);
    for (const child of children) stack.push({ value: child, depth: depth + 1 });
  }
}

function describe(value: unknown): string {
  if (typeof value !== 'object' || value === null) return typeof value;
  return (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
}
