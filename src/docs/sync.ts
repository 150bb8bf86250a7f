import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { messageYjsSyncStep1, messageYjsSyncStep2, messageYjsUpdate } from 'y-protocols/sync';
import * as Y from 'yjs';
import { AeternaError } from '../protocol/index.js';

/**
 * One y-protocols sync message (the inner message: y-websocket's outer "sync" type byte is not
 * part of it, the socket event name says that). Decoded without a Y.Doc, because the server
 * answers from stored bytes instead of keeping documents in memory.
 */
export type SyncMessage =
  | { type: 'step1'; stateVector: Uint8Array }
  | { type: 'step2' | 'update'; update: Uint8Array };

function invalid(reason: string): AeternaError {
  return new AeternaError('INVALID_ARGUMENT', `not a y-protocols sync message: ${reason}`);
}

export function readSyncMessage(message: Uint8Array): SyncMessage {
  try {
    const decoder = decoding.createDecoder(message);
    const type = decoding.readVarUint(decoder);
    // A copy, not a view: the payload may be stored and relayed long after the socket's buffer is reused.
    const payload = decoding.readVarUint8Array(decoder).slice();
    if (decoding.hasContent(decoder)) throw invalid('trailing bytes after the message');
    if (type === messageYjsSyncStep1) {
      Y.decodeStateVector(payload);
      return { type: 'step1', stateVector: payload };
    }
    if (type === messageYjsSyncStep2) return { type: 'step2', update: payload };
    if (type === messageYjsUpdate) return { type: 'update', update: payload };
    throw invalid(`unknown message type ${type}`);
  } catch (err) {
    throw err instanceof AeternaError ? err : invalid((err as Error).message);
  }
}

function frame(type: number, payload: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, type);
  encoding.writeVarUint8Array(encoder, payload);
  return encoding.toUint8Array(encoder);
}

export const syncStep1Message = (stateVector: Uint8Array): Uint8Array => frame(messageYjsSyncStep1, stateVector);
export const syncStep2Message = (update: Uint8Array): Uint8Array => frame(messageYjsSyncStep2, update);
export const syncUpdateMessage = (update: Uint8Array): Uint8Array => frame(messageYjsUpdate, update);
