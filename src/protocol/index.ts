export {
  AeternaError,
  ERROR_CODES,
  isAeternaError,
  toWireError,
  type ErrorCode,
  type WireError,
} from './errors.js';
export { describeZodError, parseInput } from './validation.js';
export * from './memory.js';
export * from './realtime.js';
export { Decoder as MsgpackDecoder, Encoder as MsgpackEncoder, MsgpackParserError, decodePacket, msgpackParser } from './msgpack-parser.js';
export * from './graph.js';
export * from './context.js';
export * from './budget.js';
export * from './agents.js';
export * from './meta.js';
