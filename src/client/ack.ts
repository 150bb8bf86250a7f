import { AeternaError, ERROR_CODES, type ErrorCode } from '../protocol/index.js';

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Turns a wire error (`{code, message, details?}`) into an AeternaError. A code this client does
 * not know (a newer server) becomes INTERNAL, keeping the original in `details.serverCode`.
 */
export function errorFromWire(wire: unknown, fallback: string): AeternaError {
  if (!isRecord(wire)) return new AeternaError('INTERNAL', fallback);
  const message = typeof wire['message'] === 'string' ? wire['message'] : fallback;
  const details = isRecord(wire['details']) ? wire['details'] : undefined;
  const code = wire['code'];
  if (typeof code === 'string' && KNOWN_CODES.has(code)) return new AeternaError(code as ErrorCode, message, details);
  return new AeternaError('INTERNAL', message, { ...details, serverCode: code });
}

/** Unwraps `{ok: true, data}` or throws the `{ok: false, error}` as an AeternaError. */
export function unwrapAck<T>(event: string, reply: unknown): T {
  // No `data` key is fine: msgpack, like JSON, leaves out an undefined result.
  if (isRecord(reply) && reply['ok'] === true) return reply['data'] as T;
  if (isRecord(reply) && reply['ok'] === false) throw errorFromWire(reply['error'], `${event} failed`);
  throw new AeternaError('INTERNAL', `${event}: the server's reply is not an ack ({ok, data} or {ok: false, error})`);
}

/** Codes worth retrying as they are: the same request may succeed later. */
export function isTransient(err: AeternaError): boolean {
  return err.code === 'UNAVAILABLE' || err.code === 'RATE_LIMITED' || err.code === 'INTERNAL';
}

export { isRecord };
